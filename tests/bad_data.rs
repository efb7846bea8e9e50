//! Hostile and broken image data (issue 9): every input below is refused with an error that
//! names the file (or, for bad preprocessing metadata, the model), without a panic, a hang
//! or a large allocation. Files are crafted by the tests; the geometry helpers are
//! property-tested over all `u32` inputs with a fixed seed.

mod common;

use std::io::Write;
use std::path::Path;

use image::{Rgb, RgbImage};
use proptest::prelude::*;
use ptq4::calib::CalibInputs;
use ptq4::engine::Forward;
use ptq4::eval::{evaluate, EvalOptions};
use ptq4::graph::{Graph, Preprocess};
use ptq4::io::dataset::Dataset;
use ptq4::io::preprocess::{
    center_crop_offset, decode, preprocess, region_box, resize_shorter_dims, Region,
};
use ptq4::limits::MAX_RESIZED_PIXELS;
use ptq4::{Result, Tensor};

/// EfficientNet-Lite0's preprocessing (224 from 256).
fn lite0() -> Preprocess {
    Preprocess::efficientnet(224)
}

fn rgb(path: &Path, w: u32, h: u32) {
    RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]))
        .save(path)
        .unwrap();
}

/// CRC-32 (IEEE) as PNG chunks need it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG signature and IHDR chunk for an 8-bit grey `w × h` image; with `rest`, also a
/// one-row IDAT and IEND, so the header parses and only the size is wrong.
fn png_header(w: u32, h: u32, rest: bool) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    if rest {
        // zlib stream of one stored block holding row 0: filter byte 0, pixel 0.
        let idat = [
            0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0, 0, 0x00, 0x02, 0x00, 0x01,
        ];
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
    }
    out
}

/// The error of loading the single image of `dir` with `pre`, which must name `file`.
fn load_error(dir: &Path, pre: &Preprocess, file: &str) -> String {
    let ds = Dataset::open(dir).unwrap();
    let msg = ds.load_batch(0..ds.len(), pre, 1).unwrap_err().to_string();
    assert!(msg.contains(file), "{msg}");
    msg
}

#[test]
fn huge_png_header_refused_before_decoding() {
    let d = tempfile::tempdir().unwrap();
    // Header only: 1 × 16777216 and nothing else.
    std::fs::write(d.path().join("tall.png"), png_header(1, 1 << 24, false)).unwrap();
    load_error(d.path(), &lite0(), "tall.png");
    // The same header with data after it parses, and is refused for its size alone.
    std::fs::write(d.path().join("tall.png"), png_header(1, 1 << 24, true)).unwrap();
    let msg = load_error(d.path(), &lite0(), "tall.png");
    assert!(msg.contains("1×16777216 is too large"), "{msg}");
    // Its header is valid: a small image with the same bytes otherwise decodes.
    std::fs::write(d.path().join("tall.png"), png_header(1, 1, true)).unwrap();
    let img = decode(&d.path().join("tall.png")).unwrap();
    assert_eq!((img.width(), img.height()), (1, 1));
}

#[test]
fn strips_refused_before_resizing() {
    let d = tempfile::tempdir().unwrap();
    // 20000 × 1: over the side limit, refused from the header.
    rgb(&d.path().join("strip.png"), 20_000, 1);
    let msg = load_error(d.path(), &lite0(), "strip.png");
    assert!(msg.contains("20000×1 is too large"), "{msg}");
    // 8000 × 2 decodes (16 kpx) but would resize to 1024000 × 256.
    std::fs::remove_file(d.path().join("strip.png")).unwrap();
    rgb(&d.path().join("wide.png"), 8_000, 2);
    let msg = load_error(d.path(), &lite0(), "wide.png");
    assert!(msg.contains("1024000×256"), "{msg}");
    assert!(msg.contains("aspect ratio"), "{msg}");
    // Within the bound, the same aspect ratio at a smaller resize passes.
    let small = Preprocess {
        size: 2,
        resize: 2,
        ..lite0()
    };
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(
        ds.load_batch(0..1, &small, 12).unwrap().0.shape,
        [1, 3, 2, 2]
    );
}

#[test]
fn zero_sized_images_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("empty.png"), b"").unwrap();
    let msg = load_error(d.path(), &lite0(), "empty.png");
    assert!(msg.contains("empty file"), "{msg}");
    std::fs::write(d.path().join("empty.png"), png_header(0, 5, true)).unwrap();
    load_error(d.path(), &lite0(), "empty.png");
    // An in-memory image without pixels.
    let msg = preprocess(&image::DynamicImage::new_rgb8(0, 3), &lite0())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("empty image"), "{msg}");
}

#[test]
fn truncated_and_corrupt_images_named() {
    let d = tempfile::tempdir().unwrap();
    let jpg = d.path().join("cut.jpg");
    RgbImage::from_fn(300, 200, |x, y| {
        Rgb([((x * 7) ^ (y * 3)) as u8, (y * 5) as u8, x as u8])
    })
    .save(&jpg)
    .unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    assert!(decode(&jpg).is_ok());
    // The decoder itself accepts most of these cuts (a grey tail), so each must be caught.
    for keep in [
        bytes.len() / 10,
        bytes.len() / 2,
        bytes.len() * 9 / 10,
        bytes.len() - 2,
    ] {
        std::fs::write(&jpg, &bytes[..keep]).unwrap();
        let msg = load_error(d.path(), &lite0(), "cut.jpg");
        assert!(msg.contains("truncated"), "{keep} bytes: {msg}");
    }
    // Bytes after the end-of-image marker are ignored.
    let mut trailer = bytes.clone();
    trailer.extend_from_slice(b"trailer");
    std::fs::write(&jpg, &trailer).unwrap();
    assert!(decode(&jpg).is_ok());
    std::fs::remove_file(&jpg).unwrap();
    let png = d.path().join("cut.png");
    rgb(&png, 64, 48);
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..bytes.len() - 40]).unwrap();
    load_error(d.path(), &lite0(), "cut.png");
    let mut garbage = std::fs::File::create(&png).unwrap();
    garbage.write_all(&[0xAB; 300]).unwrap();
    load_error(d.path(), &lite0(), "cut.png");
}

#[cfg(unix)]
#[test]
fn symlink_loops_listed_once_and_broken_links_named() {
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().unwrap();
    // Flat folder with a link to itself.
    rgb(&d.path().join("a_1.png"), 4, 4);
    symlink(d.path(), d.path().join("loop")).unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.len(), 1);
    // ImageFolder with a class linking back to the root and a class linking to another.
    let f = tempfile::tempdir().unwrap();
    std::fs::create_dir(f.path().join("0")).unwrap();
    rgb(&f.path().join("0/x.png"), 4, 4);
    symlink(f.path(), f.path().join("0/up")).unwrap();
    symlink(f.path().join("0"), f.path().join("1")).unwrap();
    let ds = Dataset::open(f.path()).unwrap();
    assert_eq!(ds.len(), 1, "{:?}", ds.items);
    // A link to nothing is listed, then named when loaded.
    symlink(d.path().join("gone"), d.path().join("b_2.png")).unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.len(), 2);
    let msg = ds.load_batch(0..2, &lite0(), 1).unwrap_err().to_string();
    assert!(msg.contains("b_2.png"), "{msg}");
}

/// A model with `classes` zero logits.
struct Fixed {
    pre: Preprocess,
    classes: usize,
}

impl Forward for Fixed {
    fn name(&self) -> &str {
        "fixed-net"
    }
    fn preprocess(&self) -> &Preprocess {
        &self.pre
    }
    fn forward(&self, x: Tensor) -> Result<Tensor> {
        Ok(Tensor::zeros(&[x.shape[0], self.classes]))
    }
    fn describe(&self) -> String {
        "test".into()
    }
}

#[test]
fn labels_outside_the_classes_named() {
    let d = tempfile::tempdir().unwrap();
    for name in ["a_3.png", "b_9.png", "c_10.png"] {
        rgb(&d.path().join(name), 6, 6);
    }
    let ds = Dataset::open(d.path()).unwrap();
    let pre = Preprocess {
        size: 4,
        resize: 4,
        ..lite0()
    };
    let opts = EvalOptions {
        batch: 2,
        views: 12,
        ..EvalOptions::default()
    };
    let ten = Fixed {
        pre: pre.clone(),
        classes: 10,
    };
    let msg = evaluate(&ten, None, &ds, &opts).unwrap_err().to_string();
    assert!(msg.contains("c_10.png"), "{msg}");
    assert!(msg.contains("label 10"), "{msg}");
    assert!(msg.contains("10 classes"), "{msg}");
    // Only the images evaluated count: the first two are classes of the model.
    let two = EvalOptions {
        limit: Some(24),
        ..opts.clone()
    };
    assert_eq!(evaluate(&ten, None, &ds, &two).unwrap().n, 24);
    let eleven = Fixed { pre, classes: 11 };
    assert_eq!(evaluate(&eleven, None, &ds, &opts).unwrap().n, 36);
}

fn graph(pre: Preprocess) -> Graph {
    Graph {
        name: "broken-net".into(),
        input_shape: vec![3, pre.size, pre.size],
        nodes: vec![],
        output: Graph::INPUT.into(),
        params: Default::default(),
        preprocess: pre,
    }
}

#[test]
fn bad_preprocessing_blames_the_model() {
    let d = tempfile::tempdir().unwrap();
    rgb(&d.path().join("fine.png"), 8, 8);
    let ds = Dataset::open(d.path()).unwrap();
    let bad = [
        Preprocess {
            resize: 100,
            ..lite0()
        },
        Preprocess { size: 0, ..lite0() },
        Preprocess {
            channels: 4,
            ..lite0()
        },
        Preprocess {
            std: [128.0, 0.0, 128.0],
            ..lite0()
        },
        Preprocess {
            mean: [f32::NAN; 3],
            ..lite0()
        },
        Preprocess {
            resize: 1 << 20,
            ..lite0()
        },
    ];
    for pre in bad {
        let g = graph(pre.clone());
        let msg = CalibInputs::new(&g, &ds, 1, 1, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("broken-net"), "{msg}");
        assert!(!msg.contains("fine.png"), "{msg}");
        let model = Fixed {
            pre: pre.clone(),
            classes: 10,
        };
        let msg = evaluate(&model, None, &ds, &EvalOptions::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("fixed-net"), "{msg}");
        assert!(!msg.contains("fine.png"), "{msg}");
        let msg = ds.load_batch(0..1, &pre, 1).unwrap_err().to_string();
        assert!(msg.contains("preprocessing metadata"), "{msg}");
        assert!(!msg.contains("fine.png"), "{msg}");
    }
    assert!(lite0().validate("lite0").is_ok());
}

/// `u32`s weighted towards the edges (0, 1, tiny, huge).
fn side() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(u32::MAX),
        0u32..8,
        (u32::MAX - 8)..=u32::MAX,
        any::<u32>(),
    ]
}

const REGIONS: [Region; 6] = [
    Region::Whole,
    Region::TopLeft,
    Region::TopRight,
    Region::BottomLeft,
    Region::BottomRight,
    Region::Centre,
];

proptest! {
    #![proptest_config(common::proptest_config_seeded(512, 0x6261_645f_6461_7461))]

    #[test]
    fn region_box_inside_the_image(w in side(), h in side(), r in 0usize..6) {
        let (x, y, cw, ch) = region_box(REGIONS[r], w, h);
        prop_assert!(x as u64 + cw as u64 <= w as u64);
        prop_assert!(y as u64 + ch as u64 <= h as u64);
        prop_assert_eq!(cw == 0, w == 0);
        prop_assert_eq!(ch == 0, h == 0);
    }

    #[test]
    fn resize_dims_exact_or_saturated(w in side(), h in side(), resize in side()) {
        let (nw, nh) = resize_shorter_dims(w, h, resize);
        let (short, long, nshort, nlong) = if w <= h { (w, h, nw, nh) } else { (h, w, nh, nw) };
        prop_assert_eq!(nshort, resize);
        if short > 0 {
            let want = resize as u64 * long as u64 / short as u64;
            prop_assert_eq!(nlong as u64, want.min(u32::MAX as u64));
        } else if resize > 0 && long > 0 {
            prop_assert_eq!(nlong, u32::MAX);
        }
        // Anything the limit lets through is a real size.
        if nw as u64 * nh as u64 <= MAX_RESIZED_PIXELS && short > 0 {
            prop_assert!(nlong >= nshort);
        }
    }

    #[test]
    fn centre_crop_inside(len in side(), size in side()) {
        let o = center_crop_offset(len, size);
        if size <= len {
            prop_assert!(o as u64 + size as u64 <= len as u64);
        } else {
            prop_assert_eq!(o, 0);
        }
    }
}
