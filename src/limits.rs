//! Limits on sizes read from untrusted model files and images, checked before anything is
//! allocated. Every named limit of the crate lives here.
//! Each is far above any CNN this tool targets (EfficientNet-Lite4: 13 M parameters,
//! 300×300 inputs) and far below what would exhaust a workstation's memory.

use crate::error::{Error, Result};

/// Largest model file read (bytes): 4 GiB, 80× EfficientNet-Lite4's FP32 file.
pub const MAX_MODEL_FILE_BYTES: u64 = 4 << 30;
/// Largest tensor or per-sample activation (elements): 2^28 f32 = 1 GiB.
pub const MAX_ELEMENTS: usize = 1 << 28;
/// Largest spatial side (input height/width, preprocess size and resize, kernel, padding).
pub const MAX_SPATIAL: usize = 16_384;
/// Most channels, features or classes of one layer.
pub const MAX_CHANNELS: usize = 1 << 20;
/// Most nodes in a graph: 100× EfficientNet-Lite4's few hundred.
pub const MAX_NODES: usize = 100_000;

/// Longest image side decoded: above any camera sensor (~12,000 px) and far above ImageNet.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Pixels decoded per image: 64 Mpx lets 48 MP photos through at 192 MB as 8-bit RGB.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;
/// Bytes the decoder may allocate: 64 Mpx at 8 bytes (16-bit RGBA PNG).
pub const MAX_DECODE_BYTES: u64 = 8 * MAX_IMAGE_PIXELS;
/// Pixels of one view after the resize: 4 Mpx (~80 MB with the resize's f32 RGBA
/// intermediate), i.e. an aspect ratio up to 64:1 at `resize` 256.
pub const MAX_RESIZED_PIXELS: u64 = 1 << 22;
/// The number of elements of `shape`, or an error naming `what` when the product
/// overflows or exceeds [`MAX_ELEMENTS`].
pub fn checked_numel(shape: &[usize], what: &str) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            Error::Graph(format!(
                "{what}: shape {shape:?} has more than {MAX_ELEMENTS} elements"
            ))
        })?;
    Ok(n)
}

/// Checks that `v` lies in `1..=max`, naming `what`.
pub fn check_size(v: usize, max: usize, what: &str) -> Result<()> {
    if v == 0 || v > max {
        return Err(Error::Graph(format!("{what} is {v}; must be 1..={max}")));
    }
    Ok(())
}
