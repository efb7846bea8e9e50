//! The closed op set of the IR. Parameters live in the graph's parameter map, named
//! `<node>.<param>`: convolutions and linear layers have `weight` and optionally `bias`;
//! BatchNorm has `weight` (γ), `bias` (β), `running_mean`, `running_var`.

use serde::{Deserialize, Serialize};

/// An activation fused into the op that produces it (set by `passes::fuse_activation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// An element-wise function of one tensor (ONNX Sigmoid, HardSigmoid, HardSwish, LeakyRelu,
/// a Clip other than ReLU/ReLU6, and SiLU = x·sigmoid(x), folded from `Mul(x, Sigmoid(x))`
/// at import).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case")]
pub enum Unary {
    Sigmoid,
    /// max(0, min(1, alpha·x + beta)).
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// x · max(0, min(1, x/6 + 1/2)).
    HardSwish,
    /// x for x ≥ 0, alpha·x otherwise.
    LeakyRelu {
        alpha: f32,
    },
    /// min(max(x, min), max).
    Clip {
        min: f32,
        max: f32,
    },
    /// x · sigmoid(x).
    Silu,
}

impl Unary {
    /// The function in f32 (the FP32 CPU path, the `paper` simulation and the host-built
    /// tables of the integer paths all call this).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        match self {
            Unary::Sigmoid => sigmoid(x),
            Unary::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            Unary::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Unary::Clip { min, max } => x.max(min).min(max),
            Unary::Silu => x * sigmoid(x),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Unary::Sigmoid => "sigmoid",
            Unary::HardSigmoid { .. } => "hard_sigmoid",
            Unary::HardSwish => "hard_swish",
            Unary::LeakyRelu { .. } => "leaky_relu",
            Unary::Clip { .. } => "clip",
            Unary::Silu => "silu",
        }
    }
}

/// 2-D convolution. Weight layout `[out, in/groups, kh, kw]`. Padding is explicit per side
/// (`[top, left, bottom, right]`) so TF "SAME" padding is exact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: [usize; 4],
    pub groups: usize,
    pub bias: bool,
    #[serde(default)]
    pub act: Activation,
}

impl Conv2d {
    /// Depthwise: one input channel per group and as many groups as channels.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.in_channels == self.out_channels
    }

    /// Output spatial size for an input of `h × w`; `None` if the window does not fit.
    pub fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let oh = window_out(
            h,
            self.kernel[0],
            self.stride[0],
            self.dilation[0],
            self.padding[0].checked_add(self.padding[2])?,
        )?;
        let ow = window_out(
            w,
            self.kernel[1],
            self.stride[1],
            self.dilation[1],
            self.padding[1].checked_add(self.padding[3])?,
        )?;
        Some((oh, ow))
    }

    /// Shape of the weight tensor.
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }
}

/// Max or average pooling window. Average pooling divides by the number of in-bounds
/// elements (padding is not counted), as TF "SAME" pooling does, or with
/// `count_include_pad` by the whole kernel area kh·kw for every window (ONNX's
/// `count_include_pad = 1`: onnxruntime and the ONNX reference divide by kh·kw even where a
/// `ceil_mode` window hangs past the padded input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    /// Average pooling: divide by kh·kw, not by the in-bounds count (ignored by max pooling).
    #[serde(default)]
    pub count_include_pad: bool,
}

impl Pool {
    /// The divisor of an average window with `in_bounds` input taps (the rule above).
    #[inline]
    pub fn divisor(&self, in_bounds: usize) -> usize {
        if self.count_include_pad {
            self.kernel[0] * self.kernel[1]
        } else {
            in_bounds
        }
    }

    pub fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let oh = window_out(
            h,
            self.kernel[0],
            self.stride[0],
            1,
            self.padding[0].checked_add(self.padding[2])?,
        )?;
        let ow = window_out(
            w,
            self.kernel[1],
            self.stride[1],
            1,
            self.padding[1].checked_add(self.padding[3])?,
        )?;
        Some((oh, ow))
    }
}

/// Fully connected layer. Weight layout `[out, in]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    #[serde(default)]
    pub act: Activation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Conv2d(Conv2d),
    BatchNorm {
        eps: f32,
        /// A ReLU/ReLU6 fused into a standalone BatchNorm (`passes::fuse_activation`).
        #[serde(default)]
        act: Activation,
    },
    Relu,
    Relu6,
    MaxPool(Pool),
    AvgPool(Pool),
    GlobalAvgPool,
    Add,
    /// Concatenation along the channel axis.
    Concat,
    Flatten,
    Linear(Linear),
    Softmax,
    /// Elementwise product of a feature map (input 0) and either a map of the same shape or
    /// a per-sample channel gate of `C` values (`[C, 1, 1]` or `[C]`, broadcast over H×W).
    Mul,
    /// ShuffleNet channel shuffle: `[C, H, W]` viewed as `[groups, C/groups, H, W]`,
    /// transposed to `[C/groups, groups, H, W]` ([`shuffle_source`]).
    ChannelShuffle {
        groups: usize,
    },
    /// An element-wise function of one tensor ([`Unary`]).
    Unary(Unary),
    /// Local response normalization across channels (ONNX `LRN`): y = x · (bias +
    /// alpha/size · Σ x²)^(−beta), the sum over the `size` channels around c
    /// ([`lrn_window`]).
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
}

/// The input channel that output channel `o` of a channel shuffle of `channels` channels in
/// `groups` groups reads: output `j·groups + i` is input `i·(channels/groups) + j`.
#[inline]
pub fn shuffle_source(channels: usize, groups: usize, o: usize) -> usize {
    let per = channels / groups.max(1);
    (o % groups.max(1)) * per + o / groups.max(1)
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::MaxPool(_) => "max_pool",
            Op::AvgPool(_) => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::Flatten => "flatten",
            Op::Linear(_) => "linear",
            Op::Softmax => "softmax",
            Op::Mul => "mul",
            Op::ChannelShuffle { .. } => "channel_shuffle",
            Op::Unary(u) => u.name(),
            Op::Lrn { .. } => "lrn",
        }
    }

    /// Names of the parameters this op reads (without the node prefix).
    pub fn param_names(&self) -> &'static [&'static str] {
        match self {
            Op::Conv2d(c) if c.bias => &["weight", "bias"],
            Op::Linear(l) if l.bias => &["weight", "bias"],
            Op::Conv2d(_) | Op::Linear(_) => &["weight"],
            Op::BatchNorm { .. } => &["weight", "bias", "running_mean", "running_var"],
            _ => &[],
        }
    }

    /// The weight shape of a conv (`[out, in / groups, kh, kw]`) or linear (`[out, in]`)
    /// layer; `None` for other ops.
    pub fn weight_shape(&self) -> Option<Vec<usize>> {
        match self {
            Op::Conv2d(c) => Some(c.weight_shape()),
            Op::Linear(l) => Some(vec![l.out_features, l.in_features]),
            _ => None,
        }
    }
}

/// The channels `lo..hi` summed by LRN of window `size` at channel `c` of `channels`:
/// c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉, clipped to the tensor (ONNX's definition).
#[inline]
pub fn lrn_window(c: usize, channels: usize, size: usize) -> (usize, usize) {
    let before = (size.max(1) - 1) / 2;
    let after = size.max(1) - 1 - before;
    (c.saturating_sub(before), (c + after + 1).min(channels))
}

/// Output length of a sliding window; `None` when the (dilated) window exceeds the padded
/// input, when the stride is 0 or when the sizes overflow.
pub fn window_out(
    len: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad_total: usize,
) -> Option<usize> {
    let span = dilation.checked_mul(k.max(1) - 1)?.checked_add(1)?;
    let padded = len.checked_add(pad_total)?;
    if padded < span || stride == 0 {
        return None;
    }
    Some((padded - span) / stride + 1)
}

/// TF "SAME" padding for one axis: `(before, after)`. total = max((ceil(in/s)−1)·s + (k−1)·d + 1 − in, 0);
/// floor(total/2) goes before, the rest after (stride 2 on an even size: 0 before, 1 after).
/// Zero sizes are taken as 1 (no padding from them) rather than underflowing.
pub fn same_padding(len: usize, k: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let stride = stride.max(1);
    let out = len.div_ceil(stride);
    let span = dilation * (k.max(1) - 1) + 1;
    let total = (out.saturating_sub(1) * stride + span).saturating_sub(len);
    (total / 2, total - total / 2)
}
