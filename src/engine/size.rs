//! Bytes of layer weights held in memory: f32 weights of a graph against the packed integer
//! weights of an [`IntModel`] (4-bit channels as nibbles, 8 per `u32`; wider channels as `i8`;
//! both tensors of dual layers), plus per-channel scale (f32) and zero point (i32) of each
//! tensor, plus the f32 bias. Activations and buffers are not counted.

use crate::engine::exec::int_model::{IntModel, StepKind};
use crate::graph::{Graph, Op};

/// Weight memory of a model, by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightBytes {
    /// Weights (f32) or weight codes (packed).
    pub codes: usize,
    /// Per-channel quantizers: scale + zero point, 8 bytes per channel and tensor.
    pub quantizers: usize,
    /// Biases, f32.
    pub bias: usize,
}

impl WeightBytes {
    pub fn total(&self) -> usize {
        self.codes + self.quantizers + self.bias
    }
}

/// f32 weights and biases of the conv/linear layers of `g` (prepared: one bias per output
/// channel of every layer, as the integer model stores it).
pub fn fp32_weight_bytes(g: &Graph) -> WeightBytes {
    let mut b = WeightBytes::default();
    for n in &g.nodes {
        let cout = match &n.op {
            Op::Conv2d(c) => c.out_channels,
            Op::Linear(l) => l.out_features,
            _ => continue,
        };
        b.codes += g.param_opt(&n.name, "weight").map_or(0, |t| t.numel() * 4);
        b.bias += cout * 4;
    }
    b
}

/// Packed integer weights of `m`.
pub fn int_weight_bytes(m: &IntModel) -> WeightBytes {
    let mut b = WeightBytes::default();
    for s in &m.steps {
        if let StepKind::Layer(l) = &s.kind {
            for w in std::iter::once(&l.w).chain(&l.w2) {
                b.codes += w.code_bytes();
                b.quantizers += w.cout * 8;
            }
            b.bias += l.w.cout * 4;
        }
    }
    b
}
