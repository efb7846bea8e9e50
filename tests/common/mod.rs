//! Shared helpers for GPU tests: the test device, or a loud reason why there is none.

#![allow(dead_code)]

use ptq4::engine::gpu::GpuContext;

/// Whether CI demands a GPU adapter (`REQUIRE_GPU=1`).
pub fn gpu_required() -> bool {
    std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU context for tests. Without an adapter: prints why and returns `None` (the
/// test then skips), or panics when `REQUIRE_GPU=1`.
pub fn test_context() -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) if gpu_required() => panic!("REQUIRE_GPU=1 but no GPU context: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no GPU context ({e}); set REQUIRE_GPU=1 to make this fail");
            None
        }
    }
}
