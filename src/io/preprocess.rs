//! Image preprocessing: one decoded image → one `C × size × size` f32 view in CHW order.
//!
//! For a view with region `R` (a sub-rectangle of the image) and mirror flag `m`:
//!
//! 1. take `R` out of the image (8-bit RGB, or 8-bit grey when `channels == 1`; a grey image
//!    feeding an RGB model has its value replicated to the three channels);
//! 2. resize so the shorter side is `resize` and the longer `⌊resize · long / short⌋`
//!    (torchvision's rule), bilinear with `image::imageops` `Triangle` (antialiased when
//!    shrinking, as PIL's bilinear), rounded back to 8 bits;
//! 3. centre-crop `size × size` at offset `round((len − size) / 2)`, ties to even (Python's
//!    `round`, as torchvision);
//! 4. `x[c, y, x] = (pixel[c] − mean[c]) / std[c]`; with `m`, column `x` reads column
//!    `size − 1 − x`, i.e. the view is the exact horizontal mirror of the unmirrored one.
//!
//! Views: `1` is the whole image; `12` ([`VIEWS_12`]) is the whole image, the four corner
//! crops and the centre crop, each spanning [`CROP_FRACTION`] of the width and of the height,
//! each followed by its mirror: whole, whole·m, TL, TL·m, TR, TR·m, BL, BL·m, BR, BR·m,
//! centre, centre·m.
//!
//! Images are untrusted: the `MAX_*` limits below bound the memory and time one image may
//! cost; an image over a limit is refused, naming the file, before it is decoded (header
//! dimensions) or resized (target size).

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageFormat, Limits, Pixel};

use crate::error::{Error, Result};
use crate::graph::Preprocess;

use crate::limits::{MAX_DECODE_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_RESIZED_PIXELS};

/// Fraction of each side a corner or centre crop spans.
pub const CROP_FRACTION: f64 = 0.8;

/// The part of the image a view starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Whole,
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
    Centre,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub region: Region,
    pub mirror: bool,
}

const fn v(region: Region, mirror: bool) -> View {
    View { region, mirror }
}

/// The single standard view.
pub const VIEWS_1: [View; 1] = [v(Region::Whole, false)];

/// The 12 views, in the order a batch holds them.
pub const VIEWS_12: [View; 12] = [
    v(Region::Whole, false),
    v(Region::Whole, true),
    v(Region::TopLeft, false),
    v(Region::TopLeft, true),
    v(Region::TopRight, false),
    v(Region::TopRight, true),
    v(Region::BottomLeft, false),
    v(Region::BottomLeft, true),
    v(Region::BottomRight, false),
    v(Region::BottomRight, true),
    v(Region::Centre, false),
    v(Region::Centre, true),
];

/// The views for `--views n` (1 or 12).
pub fn views(n: usize) -> Result<&'static [View]> {
    match n {
        1 => Ok(&VIEWS_1),
        12 => Ok(&VIEWS_12),
        _ => Err(Error::Dataset(format!("views must be 1 or 12, got {n}"))),
    }
}

/// `(x, y, w, h)` of `region` in a `width × height` image. Crops span
/// `max(1, round(CROP_FRACTION · side))` of a non-empty side (0 of an empty one); the
/// centre crop starts at `⌊(side − crop) / 2⌋`. The box always lies inside the image.
pub fn region_box(region: Region, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let crop = |s: u32| ((CROP_FRACTION * s as f64).round() as u32).clamp(s.min(1), s);
    let (cw, ch) = (crop(width), crop(height));
    let (rx, by) = (width - cw, height - ch);
    match region {
        Region::Whole => (0, 0, width, height),
        Region::TopLeft => (0, 0, cw, ch),
        Region::TopRight => (rx, 0, cw, ch),
        Region::BottomLeft => (0, by, cw, ch),
        Region::BottomRight => (rx, by, cw, ch),
        Region::Centre => (rx / 2, by / 2, cw, ch),
    }
}

/// Size after resizing the shorter side of `width × height` to `resize`: the longer side
/// is `⌊resize · long / short⌋`, saturated at `u32::MAX` (also when `short` is 0), so
/// callers compare the result with [`MAX_RESIZED_PIXELS`] instead of overflowing.
pub fn resize_shorter_dims(width: u32, height: u32, resize: u32) -> (u32, u32) {
    let scaled =
        |long: u32, short: u32| match (resize as u64 * long as u64).checked_div(short as u64) {
            Some(v) => u32::try_from(v).unwrap_or(u32::MAX),
            None if resize == 0 || long == 0 => 0,
            None => u32::MAX,
        };
    if width <= height {
        (resize, scaled(height, width))
    } else {
        (scaled(width, height), resize)
    }
}

/// Offset of a centre crop of `size` in `len`: `round((len − size) / 2)`, ties to even.
pub fn center_crop_offset(len: u32, size: u32) -> u32 {
    let d = len.saturating_sub(size);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Decodes an image file (format from its content, else its extension); errors name the
/// file. Only regular, non-empty files are opened (a FIFO would block); a JPEG must reach
/// its end-of-image marker ([`super::jpeg`]: the decoder accepts truncated scans); the
/// header's dimensions are checked against [`check_dimensions`] before any pixel is
/// decoded.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let err = |msg: String| Error::Image {
        path: path.to_path_buf(),
        msg,
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(err("empty file (0 bytes)".into()));
    }
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format() == Some(ImageFormat::Jpeg) {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let complete = super::jpeg::reaches_eoi(std::io::BufReader::new(file))
            .map_err(|e| Error::io(path, e))?;
        if !complete {
            return Err(err(
                "truncated: the JPEG data ends before its end-of-image marker".into(),
            ));
        }
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits.clone());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| err(format!("cannot read the header: {e}")))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w, h).map_err(err)?;
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits
        .reserve(decoder.total_bytes())
        .and_then(|()| decoder.set_limits(limits))
        .map_err(|e| err(e.to_string()))?;
    DynamicImage::from_decoder(decoder).map_err(|e| err(format!("corrupt or truncated: {e}")))
}

/// Refuses an empty image, or one over [`MAX_IMAGE_SIDE`] or [`MAX_IMAGE_PIXELS`].
pub fn check_dimensions(width: u32, height: u32) -> std::result::Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("empty image ({width}×{height})"));
    }
    if width.max(height) > MAX_IMAGE_SIDE || width as u64 * height as u64 > MAX_IMAGE_PIXELS {
        return Err(format!(
            "{width}×{height} is too large: ptq4 decodes at most {MAX_IMAGE_SIDE} px a side \
             and {MAX_IMAGE_PIXELS} px in all; downscale the image"
        ));
    }
    Ok(())
}

/// One view of `img` as `channels × size × size` floats (CHW), following the module docs.
pub fn preprocess_view(img: &DynamicImage, pre: &Preprocess, view: View) -> Result<Vec<f32>> {
    preprocess_views(img, pre, &[view])
}

/// Several views of `img`, concatenated in the order given (the colour conversion is done
/// once).
pub fn preprocess_views(img: &DynamicImage, pre: &Preprocess, views: &[View]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(views.len() * pre.channels * pre.size * pre.size);
    match pre.channels {
        3 => {
            let rgb = img.to_rgb8();
            for v in views {
                out.extend(view_pixels(&rgb, pre, *v)?);
            }
        }
        1 => {
            let grey = img.to_luma8();
            for v in views {
                out.extend(view_pixels(&grey, pre, *v)?);
            }
        }
        c => {
            return Err(Error::Dataset(format!(
                "preprocessing supports 1 or 3 channels, the model wants {c}"
            )))
        }
    }
    Ok(out)
}

/// The standard (whole image, unmirrored) view.
pub fn preprocess(img: &DynamicImage, pre: &Preprocess) -> Result<Vec<f32>> {
    preprocess_view(img, pre, VIEWS_1[0])
}

fn view_pixels<P>(img: &ImageBuffer<P, Vec<u8>>, pre: &Preprocess, view: View) -> Result<Vec<f32>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let (w, h) = img.dimensions();
    check_dimensions(w, h).map_err(Error::Dataset)?;
    pre.validate("the model")?;
    let (size, resize) = (to_u32(pre.size)?, to_u32(pre.resize)?);
    let (x, y, cw, ch) = region_box(view.region, w, h);
    let sub = imageops::crop_imm(img, x, y, cw, ch);
    let (nw, nh) = resize_shorter_dims(cw, ch, resize);
    if nw as u64 * nh as u64 > MAX_RESIZED_PIXELS || nw < size || nh < size {
        return Err(Error::Dataset(format!(
            "resizing the {cw}×{ch} view's shorter side to {resize} makes it {nw}×{nh}, over \
             the {MAX_RESIZED_PIXELS} px ptq4 allows (aspect ratio too extreme); crop the image"
        )));
    }
    let resized = imageops::resize(&*sub, nw, nh, FilterType::Triangle);
    let (ox, oy) = (center_crop_offset(nw, size), center_crop_offset(nh, size));
    let (s, c) = (pre.size, pre.channels);
    let mut out = vec![0.0f32; c * s * s];
    for yy in 0..s {
        for xx in 0..s {
            let sx = if view.mirror { s - 1 - xx } else { xx };
            let px = resized.get_pixel(ox + sx as u32, oy + yy as u32);
            for (ci, &val) in px.channels().iter().enumerate().take(c) {
                out[(ci * s + yy) * s + xx] = (val as f32 - pre.mean[ci]) / pre.std[ci];
            }
        }
    }
    Ok(out)
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Dataset(format!("image size {n} too large")))
}
