//! Numeric budgets of the tests: one type, [`Tol`], whose constructors name what each
//! budget bounds and derive it from that (a rounding-error analysis, or the precision of a
//! printed table). Budgets tighter than any such derivation (set from measurements, or the
//! issue's stated budgets) are named for what they bound and say so.
//!
//! A value passes when `|got − want| ≤ abs + rel·mag` or when the two f32 values lie at most
//! `ulps` units in the last place apart; `mag` is what the budget scales with (`Σ|terms|`
//! of a sum, the largest output, `R²` of a squared error…), supplied by the caller. Exact
//! results (integers, copies, single correctly rounded steps) are compared bit for bit with
//! `assert_eq!` on the bits, not through a budget.

/// `f32::EPSILON = 2⁻²³ = 2u`, twice the unit roundoff `u` of f32.
pub const EPS_F32: f64 = f32::EPSILON as f64;

/// An elementwise budget; build it with the named constructors below.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    /// Absolute slack.
    pub abs: f64,
    /// Slack relative to the caller's magnitude.
    pub rel: f64,
    /// f32 units in the last place that may separate two values.
    pub ulps: u32,
}

impl Tol {
    /// Only an absolute slack.
    pub const fn abs(abs: f64) -> Tol {
        Tol {
            abs,
            rel: 0.0,
            ulps: 0,
        }
    }

    /// Only a relative slack.
    pub const fn rel(rel: f64) -> Tol {
        Tol {
            abs: 0.0,
            rel,
            ulps: 0,
        }
    }

    /// An f32 sum of `terms` products in any order of depth ≤ `terms`, against the same sum
    /// in another order: `|ŝ − s| ≤ γ_terms·Σ|x·w|` with `γ_n = n·u/(1 − n·u) ≤ n·2u` (Higham,
    /// Accuracy and Stability, Lemma 3.1), plus one rounding each for a bias and an
    /// activation, plus `terms·2⁻¹²⁶` for subnormal products a GPU may flush to zero.
    pub fn f32_dot(terms: usize) -> Tol {
        Tol {
            abs: terms as f64 * f64::from(f32::MIN_POSITIVE),
            rel: (terms as f64 + 2.0) * EPS_F32,
            ulps: 0,
        }
    }

    /// A length-`n` f32 reduction against the f64 oracle, in any blocking or FMA order: each
    /// rounding of a partial sum errs by ≤ `u·Σ|terms|` and the `n` of them add like a random
    /// walk, `√n·u·Σ|terms|`; `2ε = 4u` leaves 4σ of head-room, and the smallest normal f32
    /// absorbs underflow. ReLU and ReLU6 are 1-Lipschitz, so a fused activation keeps it.
    pub fn f32_walk(n: usize) -> Tol {
        Tol {
            abs: f64::from(f32::MIN_POSITIVE),
            rel: 2.0 * EPS_F32 * (n.max(1) as f64).sqrt(),
            ulps: 0,
        }
    }

    /// `k` f32 roundings of values of magnitude ≤ `mag`: each errs by ≤ `u·mag`, and
    /// `k·ε = 2k·u` is twice that worst case.
    pub const fn f32_roundings(k: u32) -> Tol {
        Tol::rel(k as f64 * EPS_F32)
    }

    /// An exact sum rounded once to f32 by two different routes (f64 accumulation, and
    /// compensated f32): they differ only at a near-tie, and then by one ulp.
    pub const NEAR_TIE: Tol = Tol {
        abs: 0.0,
        rel: 0.0,
        ulps: 1,
    };

    /// Share of outputs that may sit at such a near-tie: one in 2000. A difference of
    /// summation order instead of a near-tie moves most outputs.
    pub const NEAR_TIE_FRACTION: f64 = 5e-4;

    /// One quantization step `step` between two dequantized values: a code moves by at most
    /// one where its input lies within f32 rounding of a decision boundary; the 1e-4 of a
    /// step covers the f32 rounding of the dequantized values themselves.
    pub fn quant_step(step: f32) -> Tol {
        Tol::abs(f64::from(step) * 1.0001)
    }

    /// A table entry printed to `decimals` (neither all rounded nor all truncated): within
    /// one unit of the last decimal.
    pub const fn printed(decimals: usize) -> Tol {
        Tol::abs([1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6][decimals])
    }

    /// A value correctly rounded to `decimals`: within half a unit of the last decimal.
    pub const fn rounded(decimals: usize) -> Tol {
        Tol::abs([0.5, 0.05, 5e-3, 5e-4, 5e-5, 5e-6, 5e-7][decimals])
    }

    /// f64 results of a few operations on values of order 1–10, or of short f64 sums in
    /// another association (parallel partials): a few ε₆₄ ≈ 2.2e-16 each, far inside 1e-12
    /// absolute plus 1e-12 of `|want|`.
    pub const F64_ARITH: Tol = Tol {
        abs: 1e-12,
        rel: 1e-12,
        ulps: 0,
    };

    /// A closed form of data-free statistics (a Laplace prior's mean absolute deviation
    /// `σ/√2`): one f64 square root and one division on values below 1, `≤ 2ε₆₄ ≈ 4.4e-16`;
    /// budget 1e-15 absolute.
    pub const F64_CLOSED_FORM: Tol = Tol::abs(1e-15);

    /// Share of fake-quantized codes of one point that may move by a step between two
    /// backends (inputs differing by f32 rounding near a decision boundary): 1 %, against an
    /// expected rate of ~1e-5.
    pub const QUANT_FLIP_FRACTION: f64 = 0.01;

    /// The budget for BatchNorm folding, relative to the largest logit: folding
    /// changes outputs by f32 rounding only. Also the budget of whole-network logits in
    /// another f32 summation order (PyTorch, the GPU), measured at 1.0e-6 and 1.1e-6.
    pub const BN_FOLD: Tol = Tol::rel(1e-4);

    /// The small four-layer test graph on the GPU vs the CPU, relative to a node's largest
    /// CPU magnitude: each output is an f32 sum of K ≤ 54 products in another order,
    /// `γ_K = K·2⁻²⁴ ≈ 3.2e-6` of `Σ|w·x|` (a few times max|y|), compounded over four layers.
    pub const SMALL_GRAPH: Tol = Tol::rel(2e-5);

    /// `plane_stats` f32 sums of n ≤ 3000 values (≤ 12 per invocation, then an 8-level tree)
    /// against the f64 twin: `(12 + 8)·2⁻²⁴·Σ|term| ≈ 1.2e-6` of `Σ|term|`; budget 1e-5.
    pub const PLANE_SUMS: Tol = Tol::rel(1e-5);

    /// Quantizer scales from device vs CPU statistics of the same data, relative to the
    /// scale (the budget; Lite0 measured at 3.5e-6 over 3 photos).
    pub const CALIB_SCALE: Tol = Tol::rel(1e-5);

    /// Device calibration moments (f32 per-plane sums, the mean rounded to f32) vs the CPU's
    /// f64 ones on integer-valued data, relative to the larger magnitude (floored at 1e-12).
    pub const DEVICE_MOMENTS: Tol = Tol::rel(1e-6);

    /// A 27-term f32 conv of values in [−1, 1] (chunked bindings) against the f64 oracle:
    /// 1e-5 absolute, an older budget tighter than [`Tol::f32_dot`] for these sizes (≈ 1e-4),
    /// kept because it holds.
    pub const SMALL_CONV_ABS: Tol = Tol::abs(1e-5);

    /// The bound `abs + rel·mag`.
    pub fn bound(&self, mag: f64) -> f64 {
        self.abs + self.rel * mag
    }

    /// Whether `got` is within budget of `want` (equal values, infinities included, pass).
    pub fn admits(&self, got: f64, want: f64, mag: f64) -> bool {
        got == want || (got - want).abs() <= self.bound(mag)
    }

    /// [`Tol::admits`] for f32 values, or within `ulps` units in the last place.
    pub fn admits_f32(&self, got: f32, want: f32, mag: f64) -> bool {
        (self.ulps > 0 && ulps(got, want) <= self.ulps)
            || self.admits(f64::from(got), f64::from(want), mag)
    }

    /// Asserts [`Tol::admits_f32`] elementwise, with `mag(i)` the magnitude of element `i`
    /// (NaN sentinels of unwritten outputs fail).
    #[track_caller]
    pub fn assert_all(&self, what: &str, got: &[f32], want: &[f32], mag: impl Fn(usize) -> f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                self.admits_f32(g, w, mag(i)),
                "{what}[{i}]: got {g}, want {w}, |Δ| {} > {}",
                (f64::from(g) - f64::from(w)).abs(),
                self.bound(mag(i))
            );
        }
    }
}

/// Units in the last place between two f32 of the same sign.
pub fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}
