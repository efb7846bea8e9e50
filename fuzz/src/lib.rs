//! Fuzz targets for ptq4's loaders; the harness functions live in `harness.rs`, shared with
//! the regression test `tests/fuzz_regress.rs`.

pub mod harness;
