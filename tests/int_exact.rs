//! Integer execution of `deploy` plans: the integer kernels (CPU and GPU) and the exact
//! simulation (CPU and GPU) agree code for code, and both equal an exact i64 oracle. Suites
//! are written once and instantiated per CPU instruction set ([`isa_suite!`], skipping
//! loudly where this CPU lacks one) and per GPU executor (`gpu.rs`); whole deploy plans run
//! on every target ([`Target`]).

mod common;
#[path = "int_exact/fixtures.rs"]
mod fixtures;
#[path = "int_exact/gpu.rs"]
mod gpu;
#[path = "int_exact/gpu_exact.rs"]
mod gpu_exact;
#[path = "int_exact/pool_ops.rs"]
mod pool_ops;
#[path = "int_exact/tiles.rs"]
mod tiles;

use proptest::prelude::*;
use ptq4::engine::cpu::int::{self, PackedWeights};
use ptq4::engine::device::GpuContext;
use ptq4::engine::exec::exact_cpu;
use ptq4::engine::exec::int_model::{Exec, IntModel, StepKind};
use ptq4::engine::requant::Epilogue;
use ptq4::graph::{passes, Op};
use ptq4::quant::config::{quant_points, BitAlloc, Protocol, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::quant::QParams;
use ptq4::tensor::Tensor;

use fixtures::*;

proptest! {
    #![proptest_config(common::proptest_config(64))]

    #[test]
    fn random_conv_int_equals_sim_and_oracle((c, [n, h, w], seed, xbits) in conv_strategy()) {
        let mut seed = seed;
        let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
        let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
        let (codes, params) = rand_weights(c.out_channels, k, true, &mut seed);
        let packed = PackedWeights::new(&codes, &params).unwrap();
        let got = int::conv2d_acc(&x, &packed, &c).unwrap();
        let simv = exact_cpu::conv2d_acc(&x, &codes, &params, &c).unwrap();
        let want = oracle_conv(&x, &codes, &params, &c);
        for ((&a, &s), &o) in got.iter().zip(&simv).zip(&want) {
            prop_assert_eq!(a as i64, o);
            prop_assert_eq!(s, o as f32);
        }
        // The shared epilogue on both accumulators gives the same codes.
        let bias: Vec<f32> = (0..c.out_channels).map(|_| unif(&mut seed)).collect();
        let out = QParams::from_range(-1.0, 2.0, 4).unwrap();
        let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
        let ep = Epilogue::new(&scales, None, x.params.scale, &bias, c.act, Some(out));
        let plane = got.len() / (n * c.out_channels);
        for (i, (&a, &s)) in got.iter().zip(&simv).enumerate() {
            let ch = i / plane % c.out_channels;
            prop_assert_eq!(ep.code(ch, a as f32, 0.0), ep.code(ch, s, 0.0));
        }
    }

    #[test]
    fn random_linear_int_equals_sim(n in 1usize..5, f in 1usize..40, o in 1usize..9, seed in any::<u64>(), xbits in 1u8..9) {
        let mut seed = seed;
        let x = rand_input(&[n, f], xbits, &mut seed);
        let (codes, params) = rand_weights(o, f, true, &mut seed);
        let packed = PackedWeights::new(&codes, &params).unwrap();
        let got = int::linear_acc(&x, &packed).unwrap();
        let simv = exact_cpu::linear_acc(&x, &codes, &params).unwrap();
        prop_assert_eq!((got.len(), simv.len()), (n * o, n * o));
        for ((&a, &s), &want) in got.iter().zip(&simv).zip(&oracle_linear(&x, &codes, &params)) {
            prop_assert_eq!(a as i64, want);
            prop_assert_eq!(s, want as f32);
        }
    }
}

/// The integer kernels built for one instruction set (`int::Isa`), in bands (parallel) and
/// whole images, against the exact oracle: written once, instantiated per set below.
macro_rules! isa_suite {
    ($($name:ident => $isa:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            /// This suite's instruction set, or `None` (skip) where this CPU lacks it.
            fn isa() -> Option<int::Isa> {
                common::isa_or_skip($isa, &int::Isa::available())
            }

            proptest! {
                #![proptest_config(common::proptest_config(64))]

                #[test]
                fn random_conv_int_equals_oracle((c, [n, h, w], seed, xbits) in conv_strategy()) {
                    let Some(isa) = isa() else { return Ok(()) };
                    let mut seed = seed;
                    let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
                    let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
                    let (codes, params) = rand_weights(c.out_channels, k, true, &mut seed);
                    let packed = PackedWeights::new(&codes, &params).unwrap();
                    let want = oracle_conv(&x, &codes, &params, &c);
                    for par in [false, true] {
                        let got = int::conv2d_acc_with(isa, par, &x, &packed, &c).unwrap();
                        let got: Vec<i64> = got.iter().map(|&v| v as i64).collect();
                        prop_assert_eq!(&got, &want, "par {}", par);
                    }
                }

            /// The SIMD depthwise kernels (pair and quad rows, register blocks, scalar channel tails)
            /// and the im2col runs.
            #[test]
            fn random_wide_conv_int_equals_oracle((c, [n, h, w], seed, xbits) in wide_conv_strategy()) {
                let Some(isa) = isa() else { return Ok(()) };
                let mut seed = seed;
                let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
                let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
                // Up to 4-bit weights (depthwise: the VNNI quad kernel) or up to 8 (pairs).
                let wide = lcg(&mut seed).is_multiple_of(2);
                let (codes, params) = rand_weights(c.out_channels, k, wide, &mut seed);
                let packed = PackedWeights::new(&codes, &params).unwrap();
                let want = oracle_conv(&x, &codes, &params, &c);
                for par in [false, true] {
                    let got = int::conv2d_acc_with(isa, par, &x, &packed, &c).unwrap();
                    let got: Vec<i64> = got.iter().map(|&v| v as i64).collect();
                    prop_assert_eq!(&got, &want, "par {}", par);
                }
            }

                #[test]
                fn random_linear_int_equals_oracle(n in 1usize..5, f in 1usize..40, o in 1usize..9, seed in any::<u64>(), xbits in 1u8..9) {
                    let Some(isa) = isa() else { return Ok(()) };
                    let mut seed = seed;
                    let x = rand_input(&[n, f], xbits, &mut seed);
                    let (codes, params) = rand_weights(o, f, true, &mut seed);
                    let packed = PackedWeights::new(&codes, &params).unwrap();
                    let want = oracle_linear(&x, &codes, &params);
                    for par in [false, true] {
                        let got = int::linear_acc_with(isa, par, &x, &packed).unwrap();
                        let got: Vec<i64> = got.iter().map(|&v| v as i64).collect();
                        prop_assert_eq!(&got, &want, "par {}", par);
                    }
                }
            }

            #[test]
            fn random_deploy_plan_equals_cpu_sim_on_small_graph() {
                if let Some(isa) = isa() {
                    deploy_plans_equal_cpu_sim(Target::CpuIsa(isa));
                }
            }
        }
    )*};
}

isa_suite!(vnni => int::Isa::Vnni, avx2 => int::Isa::Avx2, portable => int::Isa::Portable);

/// Where a deploy model runs.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The CPU integer kernels, dispatched (`forward(x, Exec::Int)`).
    Cpu,
    /// The CPU integer kernels built for one instruction set.
    CpuIsa(int::Isa),
    /// A GPU executor.
    Gpu(Exec),
}

/// Random deploy plans of the small graphs (every Lite0 op kind; pooling, concat, softmax
/// after linear or GAP logits; bit allocation, dual weights and bias correction varied) on
/// `target`, against the CPU exact simulation: a batch of 3 (image-parallel) and one image
/// (kernels in parallel); on the GPU simulation also with a binding limit so small that the
/// batch runs one image per chunk. Skips without a GPU.
fn deploy_plans_equal_cpu_sim(target: Target) {
    let ctx = match target {
        Target::Gpu(_) => match common::gpu() {
            Some(ctx) => Some(ctx),
            None => return,
        },
        _ => None,
    };
    // Binding limits just over one image's largest value (f32) of each graph.
    let tiny = matches!(target, Target::Gpu(Exec::Exact))
        .then(|| [1536, 4096].map(|b| GpuContext::new().unwrap().with_max_binding_bytes(b)));
    let graphs: [fn(&mut u64) -> ptq4::graph::Graph; 3] = [small_graph, pool_graph, gap_head_graph];
    for (seed0, make) in (0..6u64).flat_map(|s| graphs.map(|g| (s, g))) {
        let mut seed = seed0;
        let raw = make(&mut seed);
        let name = raw.name.clone();
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            bit_alloc: [BitAlloc::W, BitAlloc::None][seed0 as usize % 2],
            dual: (seed0 % 3) as usize,
            bias_correction: seed0 % 3 != 0,
            ..QuantConfig::default()
        };
        let (_, m) = deploy_model(&raw, &cfg);
        assert_eq!(m.softmax, name != "small");
        // Deploy max pools share their input's quantizer (codes taken as they are).
        for mp in m
            .steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::MaxPool(_)))
        {
            let input = m.steps.iter().find(|s| s.name == mp.inputs[0]).unwrap();
            assert_eq!(mp.out, input.out, "{name}: max pool {}", mp.name);
        }
        let last = &m.steps.last().unwrap().kind;
        assert_eq!(
            matches!(last, StepKind::GlobalAvgPool),
            name == "gap-head",
            "{name}: the logits step"
        );
        let x = Tensor {
            shape: vec![3, 3, 10, 12],
            data: rand_t(&[3 * 3 * 10 * 12], &mut seed).data,
        };
        let x1 = Tensor {
            shape: vec![1, 3, 10, 12],
            data: x.data[..3 * 10 * 12].to_vec(),
        };
        let run = |x: &Tensor| match (target, ctx) {
            (Target::Cpu, _) => m.forward(x, Exec::Int).unwrap(),
            (Target::CpuIsa(isa), _) => m.forward_int(x, isa).unwrap(),
            (Target::Gpu(exec), Some(ctx)) => m.forward_gpu(ctx, x, exec).unwrap(),
            (Target::Gpu(_), None) => unreachable!(),
        };
        let want = m.forward(&x, Exec::Exact).unwrap();
        let got = run(&x);
        assert_eq!(got.shape, vec![3, 5]);
        assert!(got.data.iter().all(|v| v.is_finite()));
        assert_eq!(got.data, want.data, "{target:?} {name} seed {seed0}");
        assert_eq!(
            run(&x1).data[..],
            want.data[..5],
            "{target:?} {name} seed {seed0}, one image"
        );
        if let Some(tiny) = &tiny {
            let tiny = &tiny[usize::from(name != "small")];
            let c = m.forward_gpu(tiny, &x, Exec::Exact).unwrap();
            assert_eq!(
                c.data, want.data,
                "{name} seed {seed0}, one image per chunk"
            );
        }
    }
}

#[test]
fn random_deploy_plan_int_equals_sim_on_small_graph() {
    deploy_plans_equal_cpu_sim(Target::Cpu);
}

#[test]
fn unsupported_plans_name_the_layer() {
    let mut seed = 7;
    let raw = small_graph(&mut seed);
    let mut g = raw.clone();
    passes::prepare(&mut g).unwrap();
    let cfg = QuantConfig {
        protocol: Protocol::Paper,
        ..QuantConfig::default()
    };
    let pts = quant_points(&g, &cfg);
    let cal = ptq4::calib::data_free(&raw, &g, &pts).unwrap();
    let plan = make_plan(&g, &cfg, &pts, &cal.stats, &cal.means, &cal.source).unwrap();
    let e = IntModel::new(&g, &plan).unwrap_err().to_string();
    assert!(e.contains("input") || e.contains("c1"), "{e}");
}

/// The Lite0 deploy W4A4 model (data-free) and the 20 labelled images.
#[test]
fn lite0_deploy_w4a4_int_equals_sim_cpu() {
    let Some((m, x, labels)) = lite0() else {
        return;
    };
    let t = std::time::Instant::now();
    let a = m.forward(&x, Exec::Int).unwrap();
    let ti = t.elapsed();
    let t = std::time::Instant::now();
    let b = m.forward(&x, Exec::Exact).unwrap();
    let ts = t.elapsed();
    let (ha, hb) = (
        ptq4::eval::metrics::logits_sha256(&a.data),
        ptq4::eval::metrics::logits_sha256(&b.data),
    );
    let top1 = ptq4::eval::metrics::accuracy(&a.data, 1000, &labels, 1);
    let top5 = ptq4::eval::metrics::accuracy(&a.data, 1000, &labels, 5);
    eprintln!(
        "lite0 deploy W4A4 data-free, 20 images: int {ti:?} sim {ts:?}; top-1 {top1:?} top-5 {top5:?}; logits sha256 {ha}"
    );
    assert_eq!(a.shape, vec![20, 1000]);
    assert_eq!(ha, hb);
    assert_eq!(a.data, b.data);
}

#[test]
fn lite0_weight_bytes_fp32_w8_w4() {
    let Some(model) = common::fetched("efficientnet-lite0") else {
        return;
    };
    let raw = ptq4::io::model::load_graph(&model).unwrap();
    let mut g = raw.clone();
    passes::prepare(&mut g).unwrap();
    let fp32 = ptq4::engine::size::fp32_weight_bytes(&g);
    let bytes = |wbits: u8, bit_alloc: BitAlloc| {
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            wbits,
            bit_alloc,
            ..QuantConfig::default()
        };
        ptq4::engine::size::int_weight_bytes(&deploy_model(&raw, &cfg).1)
    };
    let (w8, w4, w4a) = (
        bytes(8, BitAlloc::None),
        bytes(4, BitAlloc::None),
        bytes(4, BitAlloc::Wa),
    );
    eprintln!(
        "lite0 weight bytes: fp32 {fp32:?} = {}; W8 {w8:?} = {}; W4 {w4:?} = {}; W4 + bit allocation {w4a:?} = {}",
        fp32.total(), w8.total(), w4.total(), w4a.total()
    );
    // W8: one byte per weight. W4: rows of ceil(k/8) words, except the layers kept at 8 bits.
    let kept = QuantConfig::default().kept_layers(&g);
    let mut want4 = 0;
    for n in &g.nodes {
        let (cout, per) = match &n.op {
            Op::Conv2d(c) => (
                c.out_channels,
                c.in_channels / c.groups * c.kernel[0] * c.kernel[1],
            ),
            Op::Linear(l) => (l.out_features, l.in_features),
            _ => continue,
        };
        want4 += if kept.contains(&n.name) {
            cout * per
        } else {
            cout * per.div_ceil(8) * 4
        };
    }
    assert_eq!(w8.codes, fp32.codes / 4);
    assert_eq!(w4.codes, want4);
    assert_eq!(w8.quantizers, w4.quantizers);
    assert!(w4.total() < w8.total() && w8.total() * 3 < fp32.total());
}
