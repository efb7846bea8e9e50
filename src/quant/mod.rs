//! Quantization math, pure and host-only (no device code): it takes host slices or statistics
//! structs and returns plain structs. docs/METHOD.md describes the method; each module cites
//! the paper's section and documents the choices the papers leave open.
//!
//! | module | what | source |
//! |---|---|---|
//! | [`scheme`] | uniform asymmetric quantizer: `QParams`, quantize / dequantize / fake-quant, per-tensor and per-channel min-max, 0-bit constants, signed code view | docs/METHOD.md §1 |
//! | [`stats`] | streaming two-pass calibration statistics: moments, mean absolute deviation, histograms; the CPU reference of the device reductions | docs/METHOD.md §2, §5 |
//! | [`aciq`] | α* for Laplace/Gauss priors (any M), half-range and signed clip windows, `auto` prior | Banner et al. §4 |
//! | [`alloc`] | per-channel bit allocation B_i ∝ α_i^(2/3), mean-bit retargeting | Banner et al. §5 |
//! | [`bias`] | bias correction as a channel-scale factor and a mean shift, deployed via the bias | Banner et al. §6 |
//! | [`mmse`] | MMSE clip search on histograms (activations) and raw values (weight kernels) | Choukroun et al. §3 |
//! | [`dual`] | W ≈ s₁Q₁ + s₂Q₂, relative error, the K worst layers | Choukroun et al. §3.3 |
//! | [`gptq`] | Hessians and mean patches of layer inputs, second-order (GPTQ) rounding to the plan's quantizers, input-aware bias correction | Frantar et al. 2022; docs/METHOD.md §13 |
//! | [`equalize`] | cross-layer equalization of conv → conv chains (depthwise, grouped), ReLU6 kept exact as per-channel bounds | Nagel et al. 2019; docs/METHOD.md §14 |
//! | [`pack`] | the three 4-bit layouts: bytes (low nibble first), the file's channel codes, the kernels' nibble words | ONNX INT4 |
//! | [`datafree`] | statistics from BatchNorm and moment propagation | docs/METHOD.md §6 |
//!
//! A planner combines them per layer, e.g. for a conv output with fused ReLU in the `paper`
//! protocol: `stats::StatsAccumulator` → `TensorStats` → `alloc::allocate_bits` over the
//! channels' spreads → `aciq::aciq_window(channel, bits_c, prior, Activation::Relu)` →
//! `scheme::QParams::from_range`; for weights `scheme::minmax_weights_per_channel` (or
//! `mmse::mmse_weights`) → `bias::bias_correction` → `bias::corrected_params` +
//! `bias::bias_shift`; `pack::pack_u4` for storage.

pub mod aciq;
pub mod alloc;
pub mod bias;
pub mod config;
pub mod datafree;
pub mod dual;
pub mod equalize;
pub mod gptq;
pub mod mmse;
pub mod pack;
pub mod plan;
pub mod scheme;
mod special;
pub mod stats;

pub use aciq::{
    aciq_params, aciq_window, alpha_star, choose_prior, expected_error, Prior, PriorChoice,
};
pub use alloc::{allocate_bits, weight_spreads, Allocation};
pub use bias::{
    apply_bias_correction, bias_correction, bias_shift, corrected_params, BiasCorrection,
};
pub use datafree::{stats_from_batchnorm, stats_from_moments, Moments};
pub use dual::{dual_quantize, relative_error, worst_k, DualQuant};
pub use mmse::{
    mmse_histogram, mmse_values, mmse_weights, mse_on_histogram, mse_on_values, ClipSearch,
};
pub use pack::{pack_u4, unpack_u4};
pub use scheme::{QParams, SCALE_FLOOR};
pub use stats::{ChannelStats, Histogram, StatsAccumulator, StatsConfig, TensorStats};
