//! ACIQ analytical clipping (Banner et al. 2019 §4 "Analytical Clipping for Integer
//! Quantization", eqs. for the Laplace and Gaussian priors; docs/METHOD.md §2).
//!
//! Clipping to a window of width 2α and quantizing with 2^M bins has expected squared error
//! (per unit scale: b = 1 for Laplace, σ = 1 for Gauss; α in those units)
//! ```text
//! Laplace:  E(α) = 2·e^(−α) + α²/(3·4^M)
//! Gauss:    E(α) = (α²+1)·erfc(α/√2) − √(2/π)·α·e^(−α²/2) + α²/(3·4^M)
//! ```
//! Both are strictly convex in α (E'' = 2e^(−α) + 2/(3·4^M), resp. 2·erfc(α/√2) + 2/(3·4^M)),
//! so α* is the unique root of
//! ```text
//! Laplace:  E'(α) = −2·e^(−α) + 2α/(3·4^M)
//! Gauss:    E'(α) = 2α·erfc(α/√2) − 2·√(2/π)·e^(−α²/2) + 2α/(3·4^M)
//! ```
//! found by bracketing and bisection to f64 precision; M may be fractional. Results: Laplace
//! 2.83, 3.89, 5.03, 9.89 and Gauss 1.71, 2.15, 2.55, 3.92 for M = 2, 3, 4, 8.
//!
//! Windows ([`aciq_window`]), with b = mean absolute deviation and σ = standard deviation of
//! the pre-activation channel:
//! - fused ReLU/ReLU6 (half range): α = α*(M+1)·scale, window [0, max(μ,0) + α], ReLU6 caps
//!   hi at 6;
//! - otherwise (signed): α = α*(M)·scale, lo = max(min, μ − α), hi = lo + 2α.
//!
//! The window is never capped at the observed max. For M = 0 [`aciq_window`] computes the
//! window the same way (α*(0), resp. α*(1)); [`aciq_params`] collapses such a channel to the
//! mean of its post-activation values instead (see `scheme`).
//!
//! Prior choice ([`choose_prior`]): `Laplace` (default), `Gauss`, or `Auto` = per tensor,
//! the prior whose windows give the lower total squared error on the collected histograms
//! (count-weighted sum over the channels passed; ties go to Laplace). Statistics without
//! histograms (data-free) resolve `Auto` to Laplace, the default (docs/METHOD.md §2); the
//! caller records the resolved prior in the plan.

use serde::{Deserialize, Serialize};

use super::datafree::{activation_moments, clamp_moments, Moments};
use super::mmse::mse_on_histogram;
use super::scheme::QParams;
use super::special::erfc;
use super::stats::ChannelStats;
use crate::error::{Error, Result};
use crate::graph::Activation;

/// A distribution model with a closed-form clipping error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prior {
    Laplace,
    Gauss,
}

/// The user's choice of prior.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorChoice {
    #[default]
    Laplace,
    Gauss,
    Auto,
}

/// Expected squared error at clip α (unit scale) with `bits` bits (module docs).
pub fn expected_error(prior: Prior, alpha: f64, bits: f64) -> f64 {
    let noise = alpha * alpha / (3.0 * 4f64.powf(bits));
    match prior {
        Prior::Laplace => 2.0 * (-alpha).exp() + noise,
        Prior::Gauss => {
            let tail = (alpha * alpha + 1.0) * erfc(alpha / std::f64::consts::SQRT_2);
            let pdf = (2.0 / std::f64::consts::PI).sqrt() * alpha * (-alpha * alpha / 2.0).exp();
            tail - pdf + noise
        }
    }
}

fn derivative(prior: Prior, alpha: f64, bits: f64) -> f64 {
    let noise = 2.0 * alpha / (3.0 * 4f64.powf(bits));
    match prior {
        Prior::Laplace => -2.0 * (-alpha).exp() + noise,
        Prior::Gauss => {
            2.0 * alpha * erfc(alpha / std::f64::consts::SQRT_2)
                - 2.0 * (2.0 / std::f64::consts::PI).sqrt() * (-alpha * alpha / 2.0).exp()
                + noise
        }
    }
}

/// The optimal clip α* as a multiple of b (Laplace) or σ (Gauss) for `bits` ≥ 0 (fractional
/// allowed); NaN for NaN or negative bits.
pub fn alpha_star(prior: Prior, bits: f64) -> f64 {
    if bits.is_nan() || bits < 0.0 {
        return f64::NAN;
    }
    // E'(0) < 0 and E' is increasing: bracket the root, then bisect.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while derivative(prior, hi, bits) <= 0.0 {
        lo = hi;
        hi *= 2.0;
        if hi > 1e6 {
            return f64::NAN;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if derivative(prior, mid, bits) <= 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The ACIQ clip window (lo, hi) of one channel (module docs). `act` is the activation fused
/// after this tensor: `Relu`/`Relu6` select the half-range rule.
pub fn aciq_window(
    stats: &ChannelStats,
    bits: u8,
    prior: Prior,
    act: Activation,
) -> Result<(f64, f64)> {
    let scale = match prior {
        Prior::Laplace => stats.mad,
        Prior::Gauss => stats.std,
    };
    if !(scale.is_finite() && scale >= 0.0 && stats.mean.is_finite() && stats.min.is_finite()) {
        return Err(Error::Quant(format!(
            "ACIQ needs finite statistics, got mean {} scale {} min {}",
            stats.mean, scale, stats.min
        )));
    }
    let bits = bits as f64;
    Ok(match act {
        Activation::None => {
            let alpha = alpha_star(prior, bits) * scale;
            let lo = stats.min.max(stats.mean - alpha);
            (lo, lo + 2.0 * alpha)
        }
        Activation::Relu | Activation::Relu6 => {
            let alpha = alpha_star(prior, bits + 1.0) * scale;
            let hi = stats.mean.max(0.0) + alpha;
            let hi = if act == Activation::Relu6 {
                hi.min(6.0)
            } else {
                hi
            };
            (0.0, hi)
        }
    })
}

/// Quantizers for channels clipped with ACIQ, each at its own bit-width (per-channel mode;
/// pass the one tensor-level entry for per-tensor mode). A 0-bit channel becomes the constant
/// E[act(X)] with X ~ N(mean, std²) (exact for a constant channel, e.g. a dead one).
pub fn aciq_params(
    channels: &[ChannelStats],
    bits: &[u8],
    prior: Prior,
    act: Activation,
) -> Result<Vec<QParams>> {
    aciq_params_bounded(
        channels,
        bits,
        prior,
        act,
        &vec![f64::INFINITY; channels.len()],
    )
}

/// [`aciq_params`] for a ReLU whose channels never exceed `upper` (an equalized ReLU6's
/// per-channel bounds, `Graph::act_max`; per tensor: the largest): each window's top is
/// capped there, as ReLU6's is at 6, and a 0-bit channel is E[clamp(X, 0, upper)].
pub fn aciq_params_bounded(
    channels: &[ChannelStats],
    bits: &[u8],
    prior: Prior,
    act: Activation,
    upper: &[f64],
) -> Result<Vec<QParams>> {
    if channels.len() != bits.len() || channels.len() != upper.len() {
        return Err(Error::Quant(format!(
            "{} bit-widths and {} bounds for {} channels",
            bits.len(),
            upper.len(),
            channels.len()
        )));
    }
    channels
        .iter()
        .zip(bits)
        .zip(upper)
        .map(|((st, &b), &up)| {
            let (lo, hi) = aciq_window(st, b, prior, act)?;
            if b == 0 {
                let m = Moments {
                    mean: st.mean,
                    var: st.std * st.std,
                };
                let m = match act {
                    Activation::Relu if up.is_finite() => clamp_moments(m, 0.0, up),
                    _ => activation_moments(m, act),
                };
                return Ok(QParams::constant(m.mean as f32));
            }
            QParams::from_range(lo as f32, hi.min(up) as f32, b)
        })
        .collect()
}

/// Total squared error (count × MSE summed over channels) of the prior's windows on the
/// channels' histograms; `None` if a channel has no histogram.
pub fn histogram_error(
    channels: &[ChannelStats],
    bits: &[u8],
    prior: Prior,
    act: Activation,
) -> Result<Option<f64>> {
    if channels.len() != bits.len() {
        return Err(Error::Quant(format!(
            "{} bit-widths for {} channels",
            bits.len(),
            channels.len()
        )));
    }
    let mut total = 0.0;
    for (st, &b) in channels.iter().zip(bits) {
        let Some(hist) = st.hist.as_ref() else {
            return Ok(None);
        };
        let w = aciq_window(st, b, prior, act)?;
        total += hist.total() as f64 * mse_on_histogram(hist, w, b, act)?;
    }
    Ok(Some(total))
}

/// Resolves a [`PriorChoice`] for one tensor: pass its channels (per-channel mode) or the
/// one tensor-level statistics (per-tensor mode) with their bit-widths.
pub fn choose_prior(
    choice: PriorChoice,
    channels: &[ChannelStats],
    bits: &[u8],
    act: Activation,
) -> Result<Prior> {
    match choice {
        PriorChoice::Laplace => Ok(Prior::Laplace),
        PriorChoice::Gauss => Ok(Prior::Gauss),
        PriorChoice::Auto => {
            let lap = histogram_error(channels, bits, Prior::Laplace, act)?;
            let gau = histogram_error(channels, bits, Prior::Gauss, act)?;
            Ok(match (lap, gau) {
                (Some(l), Some(g)) if g < l => Prior::Gauss,
                _ => Prior::Laplace,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bit_channels_keep_their_post_activation_mean() {
        let dead = ChannelStats {
            count: 4,
            mean: 1.5,
            std: 0.0,
            mad: 0.0,
            min: 1.5,
            max: 1.5,
            hist: None,
        };
        let neg = ChannelStats {
            mean: -2.0,
            min: -2.0,
            max: -2.0,
            ..dead.clone()
        };
        let p = aciq_params(&[dead, neg], &[0, 0], Prior::Laplace, Activation::Relu).unwrap();
        assert_eq!(p[0].fake_quant(0.0), 1.5);
        assert_eq!(p[1].fake_quant(7.0), 0.0);
    }

    #[test]
    fn alpha_star_is_the_minimiser() {
        for prior in [Prior::Laplace, Prior::Gauss] {
            for bits in [1.0, 2.5, 4.0, 7.3] {
                let a = alpha_star(prior, bits);
                let e = expected_error(prior, a, bits);
                assert!(e <= expected_error(prior, a * 1.001, bits));
                assert!(e <= expected_error(prior, a * 0.999, bits));
            }
        }
        assert!(alpha_star(Prior::Laplace, -1.0).is_nan());
    }
}
