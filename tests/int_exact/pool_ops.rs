//! Max pooling, average pooling, concatenation and standalone activations on codes, one op
//! at a time, against a
//! naive oracle on every executor (CPU integer kernels, CPU exact simulation, and both GPU
//! executors when an adapter exists). The op's output codes come back through a 1×1
//! identity logits layer (weights 1 with scale 1 on the diagonal, bias 0), whose logits are
//! exactly `out.dequantize(code)`.

use proptest::prelude::*;
use ptq4::engine::cpu::int::layer::CpuLayer;
use ptq4::engine::cpu::int::PackedWeights;
use ptq4::engine::exec::int_model::{Exec, IntLayer, IntModel, Step, StepKind};
use ptq4::engine::requant::Epilogue;
use ptq4::graph::{Activation, Pool};

use ptq4::quant::plan::{LayerInfo, LayerQuant};
use ptq4::quant::QParams;
use ptq4::tensor::Tensor;

use super::common::{self, gpu};
use super::fixtures::*;

/// The 1×1 identity logits layer on `c` channels of input scale `sx`.
fn identity(c: usize, sx: f32) -> IntLayer {
    let params = vec![
        QParams {
            scale: 1.0,
            zero_point: 0,
            bits: 4,
        };
        c
    ];
    let codes: Vec<u8> = (0..c * c).map(|i| u8::from(i / c == i % c)).collect();
    let bias = vec![0.0; c];
    let ep = Epilogue::new(&vec![1.0; c], None, sx, &bias, Activation::None, None);
    IntLayer {
        conv: Some(conv(c, c, 1, 1, 1, [0; 4])),
        w: PackedWeights::new(&codes, &params).unwrap(),
        w2: None,
        ep,
        plan: LayerQuant {
            node: "id".into(),
            params,
            codes,
            second: None,
            bias,
            info: LayerInfo {
                node: "id".into(),
                kept_8bit: false,
                clip: "test".into(),
                bias_corrected: false,
                dual: false,
                sqnr_db: 0.0,
            },
        },
    }
}

/// `input → op (inputs `ins`, output quantizer `out`) → identity logits`.
fn model(x: QParams, shape: [usize; 3], kind: StepKind, ins: &[&str], out: QParams) -> IntModel {
    let c = match kind {
        StepKind::Concat => shape[0] * ins.len(),
        _ => shape[0],
    };
    let id = identity(c, out.scale);
    let cpu = vec![None, Some(CpuLayer::new(&id.as_conv(), &id.w, None))];
    IntModel {
        input: x,
        input_shape: shape.to_vec(),
        steps: vec![
            Step {
                name: "op".into(),
                inputs: ins.iter().map(|s| s.to_string()).collect(),
                kind,
                out: Some(out),
            },
            Step {
                name: "id".into(),
                inputs: vec!["op".into()],
                kind: StepKind::Layer(Box::new(id)),
                out: None,
            },
        ],
        output: "id".into(),
        softmax: false,
        cpu,
    }
}

/// A random quantizer, or `x` itself (codes copied) half of the time.
fn out_params(x: QParams, seed: &mut u64) -> QParams {
    if lcg(seed).is_multiple_of(2) {
        return x;
    }
    QParams::from_range(
        -unif(seed).abs() * 2.0,
        unif(seed).abs() * 4.0 + 0.1,
        1 + (lcg(seed) % 8) as u8,
    )
    .unwrap()
}

/// Runs `m` on the codes of `x` on every executor and checks the logits against the
/// oracle's codes `want` (NCHW) of quantizer `out`.
fn check(m: &IntModel, x: &ptq4::engine::cpu::int::QTensor, want: &[u8], out: QParams) {
    let xf = Tensor {
        shape: x.shape.clone(),
        data: x.codes.iter().map(|&q| x.params.dequantize(q)).collect(),
    };
    let want: Vec<f32> = want.iter().map(|&q| out.dequantize(q)).collect();
    let mut runs = vec![
        ("cpu int", m.forward(&xf, Exec::Int).unwrap()),
        ("cpu exact", m.forward(&xf, Exec::Exact).unwrap()),
    ];
    if let Some(ctx) = gpu() {
        runs.push(("gpu int", m.forward_gpu(ctx, &xf, Exec::Int).unwrap()));
        runs.push(("gpu exact", m.forward_gpu(ctx, &xf, Exec::Exact).unwrap()));
    }
    for (what, got) in runs {
        assert_eq!(got.data, want, "{what}");
    }
}

/// Naive pooling oracle on NCHW codes: every tap dequantized (max: the f32 max, then
/// quantized; a window entirely in padding is −∞, code 0), or the i64 sum of the centred
/// in-bounds codes through the shared mean rule with their count.
fn oracle_pool(x: &ptq4::engine::cpu::int::QTensor, p: &Pool, max: bool, out: QParams) -> Vec<u8> {
    let [n, c, h, w] = x.shape[..] else { panic!() };
    let (oh, ow) = p.out_hw(h, w).unwrap();
    let mut codes = Vec::new();
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut m, mut s, mut cnt) = (f32::NEG_INFINITY, 0i64, 0usize);
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let iy = (oy * p.stride[0] + ky) as i64 - p.padding[0] as i64;
                        let ix = (ox * p.stride[1] + kx) as i64 - p.padding[1] as i64;
                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                            continue;
                        }
                        let q = x.codes[(plane * h + iy as usize) * w + ix as usize];
                        m = m.max(x.params.dequantize(q));
                        s += q as i64 - x.params.zero_point as i64;
                        cnt += 1;
                    }
                }
                codes.push(if max {
                    out.quantize(m)
                } else {
                    out.quantize((x.params.scale * s as f32) * (1.0 / cnt.max(1) as f32))
                });
            }
        }
    }
    codes
}

proptest! {
    #![proptest_config(common::proptest_config(48))]

    /// Max and average pooling: windows 1..4 (non-square), strides 1..3, paddings below
    /// the window on each side, 1..13 channels (GPU words part-filled), 1..3 images.
    #[test]
    fn random_pool_equals_oracle(
        max in any::<bool>(),
        (kh, kw, sh, sw) in (1usize..5, 1usize..5, 1usize..4, 1usize..4),
        pad in prop::array::uniform4(0usize..4),
        (n, c, h, w) in (1usize..3, 1usize..13, 1usize..9, 1usize..9),
        (seed, bits) in (any::<u64>(), 1u8..9),
    ) {
        let padding = [pad[0] % kh, pad[1] % kw, pad[2] % kh, pad[3] % kw];
        let (h, w) = (h.max(kh), w.max(kw));
        let p = Pool { kernel: [kh, kw], stride: [sh, sw], padding, count_include_pad: false, };
        let mut seed = seed;
        let x = rand_input(&[n, c, h, w], bits, &mut seed);
        let out = out_params(x.params, &mut seed);
        let kind = if max { StepKind::MaxPool(p.clone()) } else { StepKind::AvgPool(p.clone()) };
        let m = model(x.params, [c, h, w], kind, &["input"], out);
        check(&m, &x, &oracle_pool(&x, &p, max, out), out);
    }

    /// Concatenation of the input with itself 1..4 times along channels (1..11 channels
    /// each, so inputs start mid-word on the GPU), codes copied or requantized.
    #[test]
    fn random_concat_equals_oracle(
        k in 1usize..4,
        (n, c, h, w) in (1usize..3, 1usize..11, 1usize..6, 1usize..6),
        (seed, bits) in (any::<u64>(), 1u8..9),
    ) {
        let mut seed = seed;
        let x = rand_input(&[n, c, h, w], bits, &mut seed);
        let out = out_params(x.params, &mut seed);
        let ins = vec!["input"; k];
        let m = model(x.params, [c, h, w], StepKind::Concat, &ins, out);
        let want: Vec<u8> = x
            .codes
            .chunks(c * h * w)
            .flat_map(|img| std::iter::repeat_n(img, k).flatten())
            .map(|&q| out.quantize(x.params.dequantize(q)))
            .collect();
        check(&m, &x, &want, out);
    }
}

proptest! {
    #![proptest_config(common::proptest_config(32))]

    /// A standalone ReLU or ReLU6: every code dequantized, activated and quantized.
    #[test]
    fn random_activation_equals_oracle(
        relu6 in any::<bool>(),
        (n, c, h, w) in (1usize..3, 1usize..11, 1usize..6, 1usize..6),
        (seed, bits) in (any::<u64>(), 1u8..9),
    ) {
        let mut seed = seed;
        let x = rand_input(&[n, c, h, w], bits, &mut seed);
        let out = out_params(x.params, &mut seed);
        let act = if relu6 { Activation::Relu6 } else { Activation::Relu };
        let m = model(x.params, [c, h, w], StepKind::Act(act), &["input"], out);
        let want: Vec<u8> = x
            .codes
            .iter()
            .map(|&q| out.quantize(act.apply(x.params.dequantize(q))))
            .collect();
        check(&m, &x, &want, out);
    }
}
