//! The one requantization rule shared by every integer path (CPU integer kernels, the exact
//! simulation, and — replicated op for op in `shaders/conv_int.wgsl` — the GPU epilogue).
//!
//! For output channel c of a conv/linear layer with input scale s_x:
//! ```text
//! m[c]      = s_w[c] · s_x                               (f32, computed once on the host)
//! acc_real  = m[c] · f32(acc) + bias[c]                   (single:  one ×, then one +)
//! acc_real  = (m1[c] · f32(acc1) + m2[c] · f32(acc2)) + bias[c]   (dual tensors)
//! y         = act(acc_real)                               (ReLU: max(·,0); ReLU6: clamp(·,0,6))
//! q         = QParams::quantize(y)                        (the output point's quantizer)
//! ```
//! `f32(acc)` is the correctly rounded conversion of the exact integer accumulator (exact
//! while |acc| < 2^24). Every operation is a single correctly rounded IEEE f32 op, evaluated
//! in exactly this order and never contracted into an FMA (Rust does not contract; the WGSL
//! twin hides the product from the compiler's fusion with a bit-level identity). The logits
//! layer returns `y` without quantization. Elementwise ops between quantized tensors
//! dequantize, compute in f32 and requantize with the same [`QParams::quantize`]:
//! residual add `y = a.dequantize(qa) + b.dequantize(qb)` (left to right), global average
//! pooling `y = (s · f32(Σ(q − z))) / f32(H·W)` (the integer sum is exact and order-free).

use crate::graph::Activation;
use crate::quant::QParams;

/// The per-channel multipliers and bias of one layer's epilogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Epilogue {
    /// s_w[c] · s_x per output channel.
    pub mult: Vec<f32>,
    /// s_w2[c] · s_x of the second tensor of a dual layer.
    pub mult2: Option<Vec<f32>>,
    pub bias: Vec<f32>,
    pub act: Activation,
    /// The output quantizer; `None` for the logits (f32 output).
    pub out: Option<QParams>,
}

impl Epilogue {
    /// Builds the multipliers from per-channel weight scales and the input scale.
    pub fn new(
        w_scales: &[f32],
        w2_scales: Option<&[f32]>,
        s_x: f32,
        bias: &[f32],
        act: Activation,
        out: Option<QParams>,
    ) -> Self {
        Epilogue {
            mult: w_scales.iter().map(|&s| s * s_x).collect(),
            mult2: w2_scales.map(|s2| s2.iter().map(|&s| s * s_x).collect()),
            bias: bias.to_vec(),
            act,
            out,
        }
    }

    /// `act(acc_real)` of channel `c` from the accumulator value(s) as f32.
    #[inline]
    pub fn real(&self, c: usize, acc: f32, acc2: f32) -> f32 {
        let y = match &self.mult2 {
            None => self.mult[c] * acc + self.bias[c],
            Some(m2) => (self.mult[c] * acc + m2[c] * acc2) + self.bias[c],
        };
        self.act.apply(y)
    }

    /// The output code of channel `c` (panics never: without an output quantizer the code
    /// is that of a 0-bit quantizer, 0; callers use [`Epilogue::real`] for the logits).
    #[inline]
    pub fn code(&self, c: usize, acc: f32, acc2: f32) -> u8 {
        let y = self.real(c, acc, acc2);
        self.out.map_or(0, |q| q.quantize(y))
    }
}

/// Residual add of codes: dequantize each, add in f32 left to right, requantize.
#[inline]
pub fn add_codes(ins: impl IntoIterator<Item = (QParams, u8)>, out: &QParams) -> u8 {
    let mut it = ins.into_iter();
    let first = it.next().map_or(0.0, |(p, q)| p.dequantize(q));
    out.quantize(it.fold(first, |y, (p, q)| y + p.dequantize(q)))
}

/// Global average pooling of one plane given its exact integer sum Σ(q − z).
#[inline]
pub fn gap_code(p: &QParams, centered_sum: i64, count: usize, out: &QParams) -> u8 {
    out.quantize(gap_real(p, centered_sum, count))
}

/// The f32 mean of a plane from its exact centred code sum.
#[inline]
pub fn gap_real(p: &QParams, centered_sum: i64, count: usize) -> f32 {
    (p.scale * centered_sum as f32) / count as f32
}
