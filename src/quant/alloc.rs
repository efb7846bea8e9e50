//! Per-channel bit allocation (Banner et al. 2019 §5, "Per-channel bit allocation";
//! docs/METHOD.md §3).
//!
//! Minimising the noise Σ α_i²/(3·B_i²) subject to Σ B_i = C·2^M̄ (B_i = 2^(M_i) bins) gives
//! ```text
//! B_i* = α_i^(2/3) / Σ_j α_j^(2/3) · C·2^t        M_i = clamp(round(log2 B_i*), 0, 8)
//! ```
//! starting with t = M̄. Rounding and clamping break the budget, so the target is retargeted
//! up to 10 times, `t += (M̄ − mean(M_i)) / 2`, until |mean(M_i) − M̄| ≤ 0.01. The enforced
//! constraint is the mean bit-width per tensor, not the total number of bins.
//!
//! Choices left open, made here:
//! - Of all allocations tried (the first and up to 10 retargets) the one whose mean is
//!   closest to M̄ is returned (the first such on ties), with its achieved mean.
//! - mean(M_i) is a step function of t (steps of 1/C), so the halved step can oscillate over
//!   a step narrower than itself, and with a large Jensen gap ten halvings may not reach the
//!   tolerance. Once targets on both sides of M̄ are known, a retarget that leaves that
//!   bracket is replaced by the bracket's midpoint; and if the 10 retargets end outside the
//!   tolerance, the search goes on (deviation, documented) for up to 40 more rounds: bisection
//!   of the bracket, or the plain step while there is none, until |mean − M̄| ≤ 0.01 or the
//!   bracket is narrower than 1e-9 (no such allocation exists, e.g. 3 channels and M̄ = 2.5).
//!   Where the plain retargeting converges this changes nothing (docs/METHOD.md §3).
//! - `round` is round-half-to-even, as everywhere.
//! - A channel with α_i = 0 gets 0 bits (it is constant). If every α_i is 0, every channel
//!   gets clamp(round(M̄), 0, 8) bits: nothing to trade between channels.
//! - α_i is whatever spread the caller passes: by default (docs/METHOD.md §3) the channel's
//!   standard deviation (for weights, of the output channel's weights); for activations with
//!   ACIQ the caller then clips each channel with the α* of its own M_i.
//!
//! Larger α_i never gets fewer bits: M_i is monotone in α_i for a fixed target.

use serde::{Deserialize, Serialize};

use super::scheme::weight_rows;
use crate::error::{Error, Result};

/// Most bits a channel may get.
pub const MAX_CHANNEL_BITS: u8 = 8;
/// Retargeting rounds after the first allocation.
pub const RETARGETS: usize = 10;
/// Bisection rounds allowed after the plain retargets (see the module docs).
pub const EXTRA_ROUNDS: usize = 40;
/// Accepted distance between the achieved mean bit-width and the target.
pub const MEAN_TOLERANCE: f64 = 0.01;

/// Result of [`allocate_bits`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Bits per channel, each in [0, 8].
    pub bits: Vec<u8>,
    /// mean(bits), the achieved budget.
    pub mean: f64,
    /// The internal target t that produced `bits`.
    pub target: f64,
    /// Allocations computed (1 + retargets used).
    pub rounds: usize,
}

fn assign(weights: &[f64], sum: f64, target: f64) -> (Vec<u8>, f64) {
    let c = weights.len() as f64;
    let bits: Vec<u8> = weights
        .iter()
        .map(|&w| {
            let b = w / sum * c * target.exp2();
            if b <= 0.0 {
                0
            } else {
                b.log2()
                    .round_ties_even()
                    .clamp(0.0, MAX_CHANNEL_BITS as f64) as u8
            }
        })
        .collect();
    let mean = bits.iter().map(|&b| b as f64).sum::<f64>() / c;
    (bits, mean)
}

/// Allocates bits to channels with spreads `alpha` for a mean budget of `mean_bits`.
pub fn allocate_bits(alpha: &[f64], mean_bits: f64) -> Result<Allocation> {
    if alpha.is_empty() {
        return Err(Error::Quant("bit allocation over no channels".into()));
    }
    if !(0.0..=MAX_CHANNEL_BITS as f64).contains(&mean_bits) {
        return Err(Error::Quant(format!(
            "mean bit budget {mean_bits} outside [0, {MAX_CHANNEL_BITS}]"
        )));
    }
    if let Some(i) = alpha.iter().position(|a| !(a.is_finite() && *a >= 0.0)) {
        return Err(Error::Quant(format!(
            "channel {i}: spread {} must be finite and >= 0",
            alpha[i]
        )));
    }
    let weights: Vec<f64> = alpha.iter().map(|a| a.powf(2.0 / 3.0)).collect();
    let sum: f64 = weights.iter().sum();
    if sum == 0.0 {
        let b = mean_bits.round_ties_even() as u8;
        return Ok(Allocation {
            bits: vec![b; alpha.len()],
            mean: b as f64,
            target: mean_bits,
            rounds: 1,
        });
    }
    let mut target = mean_bits;
    let (bits, mean) = assign(&weights, sum, target);
    let mut best = Allocation {
        bits,
        mean,
        target,
        rounds: 1,
    };
    let mut last_mean = mean;
    // Largest target known to give too few bits, smallest known to give too many.
    let (mut below, mut above) = (f64::NEG_INFINITY, f64::INFINITY);
    for round in 2..=RETARGETS + 1 + EXTRA_ROUNDS {
        if (last_mean - mean_bits).abs() <= MEAN_TOLERANCE {
            break;
        }
        if last_mean < mean_bits {
            below = below.max(target);
        } else {
            above = above.min(target);
        }
        let bracketed = below.is_finite() && above.is_finite();
        if bracketed && above - below < 1e-9 {
            break; // no allocation with a mean within the tolerance exists
        }
        let step = target + (mean_bits - last_mean) / 2.0;
        target = if round <= RETARGETS + 1 && !(bracketed && (step <= below || step >= above)) {
            step
        } else if bracketed {
            0.5 * (below + above)
        } else {
            step
        };
        let (bits, mean) = assign(&weights, sum, target);
        last_mean = mean;
        best.rounds = round;
        if (mean - mean_bits).abs() < (best.mean - mean_bits).abs() {
            best = Allocation {
                bits,
                mean,
                target,
                rounds: round,
            };
        }
    }
    Ok(best)
}

/// The default spread for weights (docs/METHOD.md §3): the population standard deviation of
/// each output channel's weights (axis 0), in f64.
pub fn weight_spreads(w: &[f32], out_channels: usize) -> Result<Vec<f64>> {
    Ok(weight_rows(w, out_channels)?
        .map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            var.sqrt()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_spreads_get_the_budget() {
        let a = allocate_bits(&[1.0; 10], 4.0).unwrap();
        assert_eq!(a.bits, vec![4; 10]);
        assert_eq!(a.rounds, 1);
        let s = weight_spreads(&[1.0, 3.0, 5.0, 5.0], 2).unwrap();
        assert_eq!(s, vec![1.0, 0.0]);
    }

    #[test]
    fn constant_channels_get_zero_bits() {
        let a = allocate_bits(&[0.0, 1.0, 1.0, 1.0], 3.0).unwrap();
        assert_eq!(a.bits[0], 0);
        assert_eq!(allocate_bits(&[0.0; 3], 4.0).unwrap().bits, vec![4; 3]);
        assert!(allocate_bits(&[1.0, f64::NAN], 4.0).is_err());
    }

    #[test]
    fn unreachable_budget_ends_at_the_closest_mean() {
        let a = allocate_bits(&[1.0, 2.0, 3.0], 2.5).unwrap();
        assert!((a.mean - 2.5).abs() < 0.2, "{a:?}");
        assert!(a.rounds <= 1 + RETARGETS + EXTRA_ROUNDS);
    }
}
