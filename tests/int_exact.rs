//! Integer execution of `deploy` plans: the integer kernels (CPU and GPU) and the exact
//! simulation (CPU and GPU) agree code for code, and both equal an exact i64 oracle.

mod common;
#[path = "int_exact/fixtures.rs"]
mod fixtures;
#[path = "int_exact/gpu.rs"]
mod gpu;
#[path = "int_exact/gpu_sim.rs"]
mod gpu_sim;

use proptest::prelude::*;
use ptq4::engine::cpu::int::{self, PackedWeights};
use ptq4::engine::exec::exact_cpu;
use ptq4::engine::exec::int_model::{Exec, IntModel};
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
        // Every instruction set of this CPU, in parallel and on one thread, agrees.
        for (i, isa) in int::Isa::available().into_iter().enumerate() {
            let other = int::conv2d_acc_with(isa, i % 2 == 1, &x, &packed, &c).unwrap();
            prop_assert_eq!(&other, &got, "{:?}", isa);
        }
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

    /// The SIMD depthwise kernels (pair and quad rows, register blocks, scalar channel tails) and
    /// the im2col runs, on every instruction set, in bands (parallel) and whole images.
    #[test]
    fn random_wide_conv_int_equals_oracle((c, [n, h, w], seed, xbits) in wide_conv_strategy()) {
        let mut seed = seed;
        let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
        let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
        // Up to 4-bit weights (depthwise: the VNNI quad kernel) or up to 8 (pairs).
        let wide = lcg(&mut seed).is_multiple_of(2);
        let (codes, params) = rand_weights(c.out_channels, k, wide, &mut seed);
        let packed = PackedWeights::new(&codes, &params).unwrap();
        let want = oracle_conv(&x, &codes, &params, &c);
        for isa in int::Isa::available() {
            for par in [false, true] {
                let got = int::conv2d_acc_with(isa, par, &x, &packed, &c).unwrap();
                let got: Vec<i64> = got.iter().map(|&v| v as i64).collect();
                prop_assert_eq!(&got, &want, "{:?} par {}", isa, par);
            }
        }
    }

    #[test]
    fn random_linear_int_equals_sim(n in 1usize..5, f in 1usize..40, o in 1usize..9, seed in any::<u64>(), xbits in 1u8..9) {
        let mut seed = seed;
        let x = rand_input(&[n, f], xbits, &mut seed);
        let (codes, params) = rand_weights(o, f, true, &mut seed);
        let packed = PackedWeights::new(&codes, &params).unwrap();
        let got = int::linear_acc(&x, &packed).unwrap();
        for (i, isa) in int::Isa::available().into_iter().enumerate() {
            let other = int::linear_acc_with(isa, i % 2 == 0, &x, &packed).unwrap();
            prop_assert_eq!(&other, &got, "{:?}", isa);
        }
        let simv = exact_cpu::linear_acc(&x, &codes, &params).unwrap();
        for i in 0..n {
            for r in 0..o {
                let want: i64 = (0..f)
                    .map(|j| (codes[r * f + j] as i64 - params[r].zero_point as i64)
                        * (x.codes[i * f + j] as i64 - x.params.zero_point as i64))
                    .sum();
                prop_assert_eq!(got[i * o + r] as i64, want);
                prop_assert_eq!(simv[i * o + r], want as f32);
            }
        }
    }
}

#[test]
fn random_deploy_plan_int_equals_sim_on_small_graph() {
    for seed0 in 0..6u64 {
        let mut seed = seed0;
        let raw = small_graph(&mut seed);
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            bit_alloc: if seed0 % 2 == 0 {
                BitAlloc::W
            } else {
                BitAlloc::None
            },
            dual: (seed0 % 3) as usize,
            bias_correction: seed0 % 3 != 0,
            ..QuantConfig::default()
        };
        let (_, m) = deploy_model(&raw, &cfg);
        let x = Tensor {
            shape: vec![2, 3, 10, 12],
            data: rand_t(&[2 * 3 * 10 * 12], &mut seed).data,
        };
        let a = m.forward(&x, Exec::Int).unwrap();
        let b = m.forward(&x, Exec::Sim).unwrap();
        assert_eq!(a.shape, vec![2, 5]);
        assert_eq!(a.data, b.data, "seed {seed0}");
        // Every instruction set, on the batch (image-parallel) and on one image (kernels
        // in parallel).
        for isa in int::Isa::available() {
            assert_eq!(m.forward_int(&x, isa).unwrap().data, b.data, "{isa:?}");
            let x1 = Tensor {
                shape: vec![1, 3, 10, 12],
                data: x.data[..3 * 10 * 12].to_vec(),
            };
            let one = m.forward_int(&x1, isa).unwrap();
            assert_eq!(one.data[..], b.data[..5], "{isa:?} one image");
        }
        assert!(a.data.iter().all(|v| v.is_finite()));
    }
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
    let b = m.forward(&x, Exec::Sim).unwrap();
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
