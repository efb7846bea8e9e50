//! The GPU executors (integer kernels, exact simulation) against the CPU ones, one layer at
//! a time and on whole deploy plans: one suite, instantiated per executor ([`gpu_suite!`]).

use proptest::prelude::*;
use ptq4::engine::cpu::int::{self, PackedWeights, QTensor};
use ptq4::engine::exec::exact_cpu;
use ptq4::engine::exec::int_model::Exec;
use ptq4::engine::requant::Epilogue;
use ptq4::graph::{Activation, Conv2d};
use ptq4::quant::QParams;
use ptq4::tensor::Tensor;

use super::common::{self, gpu};
use super::fixtures::*;

use ptq4::engine::device::GpuContext;
use ptq4::engine::exec::exact_gpu::layer_exact;
use ptq4::engine::exec::int_gpu::layer_int;
use ptq4::engine::exec::int_model::IntLayer;
use ptq4::engine::exec::int_model::IntOutput;
use ptq4::quant::plan::{LayerInfo, LayerQuant};

/// A random integer layer (optionally dual, optionally the logits layer) on input scale `sx`.
pub(super) fn rand_layer(
    c: Option<Conv2d>,
    cout: usize,
    k: usize,
    dual: bool,
    logits: bool,
    sx: f32,
    seed: &mut u64,
) -> IntLayer {
    let w = rand_weights(cout, k, true, seed);
    make_layer(c, w, dual, logits, sx, seed)
}

/// An integer layer of weights `(codes, params)`, with a random 4-bit second tensor when
/// `dual`, random bias and output quantizer (none when `logits`).
pub(super) fn make_layer(
    c: Option<Conv2d>,
    (codes, params): (Vec<u8>, Vec<QParams>),
    dual: bool,
    logits: bool,
    sx: f32,
    seed: &mut u64,
) -> IntLayer {
    let (cout, k) = (params.len(), codes.len() / params.len());
    let second = dual.then(|| {
        let (c2, p2) = rand_weights(cout, k, false, seed);
        (p2, c2)
    });
    let bias: Vec<f32> = (0..cout).map(|_| unif(seed)).collect();
    let act = c.as_ref().map_or(Activation::Relu, |c| c.act);
    let out = (!logits).then(|| {
        QParams::from_range(
            -unif(seed).abs() * 2.0,
            unif(seed).abs() * 4.0 + 0.1,
            1 + (lcg(seed) % 8) as u8,
        )
        .unwrap()
    });
    let s1: Vec<f32> = params.iter().map(|p| p.scale).collect();
    let s2: Option<Vec<f32>> = second
        .as_ref()
        .map(|(p2, _)| p2.iter().map(|p| p.scale).collect());
    let ep = Epilogue::new(&s1, s2.as_deref(), sx, &bias, act, out);
    let w = PackedWeights::new(&codes, &params).unwrap();
    let w2 = second
        .as_ref()
        .map(|(p2, c2)| PackedWeights::new(c2, p2).unwrap());
    let plan = LayerQuant {
        node: "l".into(),
        params,
        codes,
        second,
        bias,
        info: LayerInfo {
            node: "l".into(),
            kept_8bit: false,
            clip: "test".into(),
            bias_corrected: false,
            dual,
            sqnr_db: 0.0,
        },
    };
    IntLayer {
        conv: c,
        w,
        w2,
        ep,
        plan,
    }
}

/// CPU reference outputs of a layer through the shared epilogue, from the integer kernels'
/// or the exact simulation's accumulators.
pub(super) fn cpu_layer(x: &QTensor, l: &IntLayer, exec: Exec) -> IntOutput {
    let to_f = |v: Vec<i32>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
    let second = l.plan.second.as_ref();
    let (acc, acc2) = match (exec, &l.conv) {
        (Exec::Int, Some(c)) => (
            to_f(int::conv2d_acc(x, &l.w, c).unwrap()),
            l.w2.as_ref()
                .map(|w2| to_f(int::conv2d_acc(x, w2, c).unwrap())),
        ),
        (Exec::Int, None) => (
            to_f(int::linear_acc(x, &l.w).unwrap()),
            l.w2.as_ref()
                .map(|w2| to_f(int::linear_acc(x, w2).unwrap())),
        ),
        (Exec::Exact, Some(c)) => (
            exact_cpu::conv2d_acc(x, &l.plan.codes, &l.plan.params, c).unwrap(),
            second.map(|(p2, c2)| exact_cpu::conv2d_acc(x, c2, p2, c).unwrap()),
        ),
        (Exec::Exact, None) => (
            exact_cpu::linear_acc(x, &l.plan.codes, &l.plan.params).unwrap(),
            second.map(|(p2, c2)| exact_cpu::linear_acc(x, c2, p2).unwrap()),
        ),
    };
    let n = x.shape[0];
    let co = l.w.cout;
    let plane = acc.len() / (n * co);
    let shape = match &l.conv {
        Some(c) => {
            let (oh, ow) = int::conv_out_hw(c, x.shape[2], x.shape[3]).unwrap();
            vec![n, co, oh, ow]
        }
        None => vec![n, co],
    };
    let vals = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| (i / plane % co, a, acc2.as_ref().map_or(0.0, |v| v[i])));
    match l.ep.out {
        Some(q) => IntOutput::Codes(QTensor {
            shape,
            codes: vals.map(|(c, a, b)| l.ep.code(c, a, b)).collect(),
            params: q,
        }),
        None => IntOutput::Logits(Tensor {
            shape,
            data: vals.map(|(c, a, b)| l.ep.real(c, a, b)).collect(),
        }),
    }
}

/// The GPU executor `exec` on one layer.
pub(super) fn gpu_layer(ctx: &GpuContext, x: &QTensor, l: &IntLayer, exec: Exec) -> IntOutput {
    match exec {
        Exec::Int => layer_int(ctx, x, l).unwrap(),
        Exec::Exact => layer_exact(ctx, x, l).unwrap(),
    }
}

/// GPU `exec` == CPU `exec` on one layer, and the CPU's integer kernels == its simulation.
pub(super) fn check_layer(
    ctx: &GpuContext,
    x: &QTensor,
    l: &IntLayer,
    exec: Exec,
) -> Result<(), TestCaseError> {
    let want = cpu_layer(x, l, exec);
    prop_assert_eq!(&cpu_layer(x, l, Exec::Exact), &cpu_layer(x, l, Exec::Int));
    prop_assert_eq!(gpu_layer(ctx, x, l, exec), want);
    Ok(())
}

/// A random conv layer on the GPU executor `exec`: every conv kind (1×1, k×k, strided,
/// dilated, padded, grouped, depthwise), single or dual, codes or logits. The integer
/// kernels run no depthwise logits layer; groups = 1 convs widen past one word of channels.
#[allow(clippy::too_many_arguments)]
fn random_conv(
    ctx: &GpuContext,
    exec: Exec,
    mut c: Conv2d,
    [n, h, w]: [usize; 3],
    mut seed: u64,
    xbits: u8,
    dual: bool,
    logits: bool,
    cin_extra: usize,
) -> Result<(), TestCaseError> {
    let int = exec == Exec::Int;
    if c.groups == 1 {
        c.in_channels += cin_extra;
    }
    let logits = logits && !(int && c.is_depthwise());
    let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
    let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
    let l = rand_layer(
        Some(c.clone()),
        c.out_channels,
        k,
        dual,
        logits,
        x.params.scale,
        &mut seed,
    );
    check_layer(ctx, &x, &l, exec)
}

/// The per-layer suite, written once and instantiated per GPU executor below; skips loudly
/// without an adapter.
macro_rules! gpu_suite {
    ($($name:ident => $exec:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(common::proptest_config(32))]

                #[test]
                fn random_conv_gpu_equals_cpu((c, nhw, seed, xbits) in conv_strategy(), dual in any::<bool>(), logits in any::<bool>(), cin_extra in 0usize..12) {
                    let Some(ctx) = gpu() else { return Ok(()) };
                    random_conv(ctx, $exec, c, nhw, seed, xbits, dual, logits, cin_extra)?;
                }

                #[test]
                fn random_linear_gpu_equals_cpu(n in 1usize..4, f in 1usize..40, o in 1usize..12, seed in any::<u64>(), xbits in 1u8..9, dual in any::<bool>(), logits in any::<bool>()) {
                    let Some(ctx) = gpu() else { return Ok(()) };
                    let mut seed = seed;
                    let x = rand_input(&[n, f], xbits, &mut seed);
                    let l = rand_layer(None, o, f, dual, logits, x.params.scale, &mut seed);
                    check_layer(ctx, &x, &l, $exec)?;
                }
            }

            #[test]
            fn random_deploy_plan_gpu_equals_cpu_on_small_graph() {
                super::super::deploy_plans_equal_cpu_sim(super::super::Target::Gpu($exec));
            }
        }
    )*};
}

gpu_suite!(int_kernels => Exec::Int, sim => Exec::Exact);

#[test]
fn lite0_deploy_w4a4_gpu_equals_cpu() {
    let Some(ctx) = gpu() else { return };
    let Some((m, x, _)) = lite0() else { return };
    let a = m.forward(&x, Exec::Exact).unwrap();
    let t = std::time::Instant::now();
    let dev = m.upload(ctx).unwrap();
    let b = dev.forward(ctx, &x, Exec::Int).unwrap();
    eprintln!(
        "lite0 deploy W4A4 on {} ({:?}): {:?}",
        ctx.adapter_name(),
        ctx.backend(),
        t.elapsed()
    );
    assert_eq!(
        ptq4::eval::metrics::logits_sha256(&a.data),
        ptq4::eval::metrics::logits_sha256(&b.data)
    );
    assert_eq!(a.data, b.data);
    // Resident weights serve another batch (the first 3 images) with the same results.
    let x3 = Tensor {
        shape: vec![3, 3, 224, 224],
        data: x.data[..3 * 3 * 224 * 224].to_vec(),
    };
    let b3 = dev.forward(ctx, &x3, Exec::Int).unwrap();
    assert_eq!(b3.data, a.data[..3 * 1000]);
    // The same resident model runs the exact simulation too (its weights upload on first use).
    assert_eq!(dev.forward(ctx, &x3, Exec::Exact).unwrap().data, b3.data);
}
