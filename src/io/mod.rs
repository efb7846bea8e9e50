//! Files in and out: the model file (safetensors + JSON metadata; `qfile`, the quantized
//! model's layout in it), the legacy torch pickle reader, image datasets (folders or IDX files)
//! and preprocessing, and fetching models and data from package registries.

pub mod dataset;
pub mod fetch;
pub mod idx;
pub mod import;
pub mod jpeg;
pub mod model;
pub mod onnx;
pub mod pickle;
pub mod preprocess;
pub mod qfile;
