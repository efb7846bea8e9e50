//! GPU vs CPU parity, one module per kernel family (`<k>_…` tests). A problem (a shape
//! strategy hitting the tails: lengths not multiples of the workgroup size, one channel,
//! constant channels, large values), a reference (the CPU twin), a check (exact for
//! integers, [`common::tol::Tol`] budgets for floats). Outputs start as a NaN/0xDEADBEEF
//! sentinel, so an unwritten element fails. Without an adapter every test prints why and
//! passes, unless `REQUIRE_GPU=1`.

mod common;
#[path = "gpu_parity/conv.rs"]
mod conv;
#[path = "gpu_parity/conv_tiles.rs"]
mod conv_tiles;
#[path = "gpu_parity/eltwise.rs"]
mod eltwise;
#[path = "gpu_parity/quant.rs"]
mod quant;
#[path = "gpu_parity/stats.rs"]
mod stats;

pub use common::gpu as ctx;
pub use common::proptest_runner as runner;
pub use common::tol::Tol;

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
