//! GPU vs CPU parity, one module per kernel family (`<k>_…` tests). A problem (a shape
//! strategy hitting the tails: lengths not multiples of the workgroup size, one channel,
//! constant channels, large values), a reference (the CPU twin), a check (exact for
//! integers, named tolerances for floats). Outputs start as a NaN/0xDEADBEEF sentinel, so
//! an unwritten element fails. Without an adapter every test prints why and passes,
//! unless `REQUIRE_GPU=1`.

mod common;
#[path = "gpu_parity/conv.rs"]
mod conv;
#[path = "gpu_parity/eltwise.rs"]
mod eltwise;
#[path = "gpu_parity/quant.rs"]
mod quant;
#[path = "gpu_parity/stats.rs"]
mod stats;

use std::sync::OnceLock;

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use ptq4::engine::device::GpuContext;

/// One context for the whole test binary (device creation on lavapipe is slow).
pub fn ctx() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(common::test_context).as_ref()
}

/// A deterministic proptest runner with `cases` cases.
pub fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

/// f32 unit roundoff doubled: `f32::EPSILON = 2⁻²³ = 2u`.
pub const EPS: f64 = f32::EPSILON as f64;

/// Error bound of an f32 sum of `terms` products evaluated in any order of depth at most
/// `terms`: `|ŝ − s| ≤ γ_terms · Σ|x_i·w_i|` with `γ_n = n·u/(1 − n·u) ≤ n·2u` for n·u < ½
/// (Higham, Accuracy and Stability, Lemma 3.1), plus one rounding for a bias and one for
/// the activation, and `terms · 2⁻¹²⁶` for subnormal products a GPU may flush to zero.
pub fn dot_tolerance(terms: usize, abs_sum: f64) -> f64 {
    (terms as f64 + 2.0) * EPS * abs_sum + terms as f64 * f64::from(f32::MIN_POSITIVE)
}

#[test]
fn adapter_is_vulkan_when_required() {
    if !common::gpu_required() {
        eprintln!("SKIPPED: REQUIRE_GPU is not 1; the backend is only asserted in CI");
        return;
    }
    let ctx = ctx().expect("test_context panics when REQUIRE_GPU=1 and none exists");
    assert_eq!(
        ctx.backend(),
        wgpu::Backend::Vulkan,
        "adapter {} is not Vulkan: check VK_DRIVER_FILES / WGPU_BACKEND",
        ctx.adapter_name()
    );
}
