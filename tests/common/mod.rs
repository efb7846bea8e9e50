//! Shared test helpers: fetched models and data, and the GPU test device, with loud skips.
#![allow(dead_code)]

use ptq4::engine::gpu::GpuContext;

use std::path::PathBuf;

/// The cached path of a fetchable item, fetching it if needed. Without a registry this
/// skips (returns None, printing why) unless `PTQ4_REQUIRE_DATA=1`, as in CI.
pub fn fetched(name: &str) -> Option<PathBuf> {
    match ptq4::io::fetch::fetch_one(name, false) {
        Ok(p) => Some(p),
        Err(e) => {
            if std::env::var("PTQ4_REQUIRE_DATA").as_deref() == Ok("1") {
                panic!("PTQ4_REQUIRE_DATA=1 but {name} could not be fetched: {e}");
            }
            eprintln!("SKIP: {name} not available ({e}); set PTQ4_REQUIRE_DATA=1 to fail instead");
            None
        }
    }
}

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
