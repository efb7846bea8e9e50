//! The exact simulation on the GPU where it differs from the integer kernels: accumulations
//! past the f32-exact bound (chunked), and Lite0's logits against the CPU integer kernels.

use proptest::prelude::*;
use ptq4::engine::cpu::int::QTensor;
use ptq4::engine::exec::int_model::{Exec, IntModel, StepKind};
use ptq4::graph::{Activation, Conv2d, Graph};
use ptq4::quant::QParams;

use super::common;
use super::common::gpu;
use super::fixtures::*;
use super::gpu::{check_layer, make_layer};

/// A random code in the top 96 of 256: far from a small zero point, so that sums of K in
/// the hundreds of products exceed 2^24 (where a plain f32 sum would round).
fn high_code(seed: &mut u64) -> u8 {
    160 + (lcg(seed) % 96) as u8
}

/// 8-bit weights with small zero points and high codes.
fn wide_weights(cout: usize, k: usize, seed: &mut u64) -> (Vec<u8>, Vec<QParams>) {
    let params: Vec<QParams> = (0..cout)
        .map(|_| QParams::from_range(-0.02 - unif(seed).abs() * 0.02, 1.0, 8).unwrap())
        .collect();
    let codes = (0..cout * k).map(|_| high_code(seed)).collect();
    (codes, params)
}

/// An 8-bit input with a small zero point and high codes.
fn wide_input(shape: &[usize], seed: &mut u64) -> QTensor {
    let n = shape.iter().product();
    QTensor {
        shape: shape.to_vec(),
        codes: (0..n).map(|_| high_code(seed)).collect(),
        params: QParams::from_range(-0.05, 3.0, 8).unwrap(),
    }
}

proptest! {
    #![proptest_config(common::proptest_config(16))]

    /// Layers whose K·max|w|·max|x| exceeds 2^24: the chunked exact accumulation (a dual
    /// layer's 4-bit second tensor stays within the bound and takes the f32 kernels).
    #[test]
    fn chunked_conv_gpu_exact_equals_cpu(cin in 70usize..120, cout in 1usize..6, groups in 1usize..3, (s, pad) in (1usize..3, 0usize..2), (h, w) in (2usize..6, 2usize..6), seed in any::<u64>(), dual in any::<bool>(), logits in any::<bool>()) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let mut seed = seed;
        let c = Conv2d {
            in_channels: cin * groups,
            out_channels: cout * groups,
            kernel: [3, 3],
            stride: [s, s],
            dilation: [1, 1],
            padding: [pad; 4],
            groups,
            bias: true,
            // Not ReLU6: its clamp would hide the accumulator's low bits.
            act: [Activation::None, Activation::Relu][(seed % 2) as usize],
        };
        let (h, w) = (h + 2 - 2 * pad, w + 2 - 2 * pad);
        let x = wide_input(&[1 + (seed / 2 % 2) as usize, c.in_channels, h, w], &mut seed);
        let wts = wide_weights(c.out_channels, cin * 9, &mut seed);
        prop_assert!(!ptq4::engine::exact::exact_in_f32(&wts.0, &wts.1, &x.params));
        let l = make_layer(Some(c), wts, dual, logits, x.params.scale, &mut seed);
        check_layer(ctx, &x, &l, Exec::Exact)?;
    }

    #[test]
    fn chunked_linear_gpu_exact_equals_cpu(n in 1usize..4, f in 600usize..3000, o in 1usize..12, seed in any::<u64>(), dual in any::<bool>(), logits in any::<bool>()) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let mut seed = seed;
        let x = wide_input(&[n, f], &mut seed);
        let wts = wide_weights(o, f, &mut seed);
        prop_assert!(!ptq4::engine::exact::exact_in_f32(&wts.0, &wts.1, &x.params));
        let l = make_layer(None, wts, dual, logits, x.params.scale, &mut seed);
        check_layer(ctx, &x, &l, Exec::Exact)?;
    }
}

/// Names of the layers whose accumulation exceeds the f32-exact bound (chunked on the GPU,
/// f64 on the CPU).
fn chunked_layers(m: &IntModel) -> Vec<String> {
    let mut params = std::collections::HashMap::from([(Graph::INPUT.to_string(), m.input)]);
    let mut out = Vec::new();
    for s in &m.steps {
        let x = params[&s.inputs[0]];
        if let StepKind::Layer(l) = &s.kind {
            let t = std::iter::once((&l.plan.codes, &l.plan.params))
                .chain(l.plan.second.as_ref().map(|(p, c)| (c, p)));
            if t.into_iter()
                .any(|(c, p)| !ptq4::engine::exact::exact_in_f32(c, p, &x))
            {
                out.push(s.name.clone());
            }
        }
        let produced = if matches!(s.kind, StepKind::Flatten) {
            Some(x)
        } else {
            s.out
        };
        if let Some(p) = produced {
            params.insert(s.name.clone(), p);
        }
    }
    out
}

/// The Lite0 deploy W4A4 model (data-free) on the 20 labelled images: the GPU simulation's
/// logits are the CPU integer kernels' logits, bit for bit.
#[test]
fn lite0_deploy_w4a4_gpu_exact_equals_cpu_int() {
    let Some(ctx) = gpu() else { return };
    let Some((m, x, _)) = lite0() else { return };
    let chunked = chunked_layers(&m);
    assert!(
        !chunked.is_empty(),
        "the 8-bit classifier exceeds the f32 bound"
    );
    let a = m.forward(&x, Exec::Int).unwrap();
    let dev = m.upload_for(ctx, Exec::Exact).unwrap();
    let t = std::time::Instant::now();
    let b = dev.forward(ctx, &x, Exec::Exact).unwrap();
    let (ha, hb) = (
        ptq4::eval::metrics::logits_sha256(&a.data),
        ptq4::eval::metrics::logits_sha256(&b.data),
    );
    eprintln!(
        "lite0 deploy W4A4 GPU sim on {}: {:?}; chunked layers {chunked:?}; logits sha256 {hb}",
        ctx.adapter_name(),
        t.elapsed()
    );
    assert_eq!(ha, hb);
    assert_eq!(a.data, b.data);
}
