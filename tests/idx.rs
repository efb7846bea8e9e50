//! IDX files (Fashion-MNIST's format): the reader on good and malformed files, IDX data sets
//! through `Dataset`, and `ptq4 eval --data` on IDX files end to end (the same logits as the
//! same images as PNG files).

mod common;

use std::io::Write;
use std::path::Path;

use assert_cmd::Command;
use ptq4::graph::{Op, Preprocess};
use ptq4::io::dataset::{Dataset, Labels};
use ptq4::io::idx::{self, IdxImages};

/// IDX bytes: type 0x08, `dims`, then `data`.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` images of `rows × cols` (pixel value `(31·i + 7·k) mod 256`) and labels `i mod 10`.
fn synthetic(n: usize, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    let px: Vec<u8> = (0..n)
        .flat_map(|i| (0..rows * cols).map(move |k| ((31 * i + 7 * k) % 256) as u8))
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let dims = [n as u32, rows as u32, cols as u32];
    (idx_bytes(&dims, &px), idx_bytes(&[n as u32], &labels))
}

/// Writes `<split>-images-idx3-ubyte[.gz]` and the labels file into `dir`.
fn write_split(dir: &Path, split: &str, n: usize, gz: bool) {
    let (img, lab) = synthetic(n, 5, 4);
    let (img, lab, ext) = if gz {
        (gzip(&img), gzip(&lab), ".gz")
    } else {
        (img, lab, "")
    };
    std::fs::write(dir.join(format!("{split}-images-idx3-ubyte{ext}")), img).unwrap();
    std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte{ext}")), lab).unwrap();
}

#[test]
fn parses_plain_and_gzip() {
    let (img, _) = synthetic(3, 5, 4);
    let plain = idx::parse(&img).unwrap();
    assert_eq!(plain.dims, [3, 5, 4]);
    assert_eq!(plain.data.len(), 60);
    assert_eq!(plain.data[21], 31 + 7, "image 1, pixel 1");
    assert_eq!(idx::parse(&gzip(&img)).unwrap(), plain);
    let labels = idx::parse(&idx_bytes(&[4], &[9, 0, 3, 1])).unwrap();
    assert_eq!((labels.dims, labels.data), (vec![4], vec![9, 0, 3, 1]));
}

#[test]
fn malformed_files_are_errors() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "too short"),
        ("bad magic", vec![1, 0, 8, 1, 0, 0, 0, 0], "bad magic"),
        ("float type", vec![0, 0, 0x0d, 1, 0, 0, 0, 0], "0x0d"),
        ("no dims", vec![0, 0, 8, 0], "no dimensions"),
        (
            "header cut",
            vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0],
            "truncated header",
        ),
        ("data cut", idx_bytes(&[2, 3, 3], &[0; 17]), "truncated"),
        ("trailing", idx_bytes(&[2], &[0; 3]), "trailing bytes"),
        (
            "overflow",
            idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]),
            "exceed",
        ),
        (
            "over the limit",
            idx_bytes(&[1 << 16, 1 << 16], &[]),
            "exceed",
        ),
        ("bad gzip", vec![0x1f, 0x8b, 8, 0, 1, 2, 3], "gzip"),
        (
            "gzip cut",
            gzip(&idx_bytes(&[8], &[1; 8]))[..12].to_vec(),
            "gzip",
        ),
        ("gzip of garbage", gzip(b"hello world"), "bad magic"),
    ];
    for (what, bytes, needle) in cases {
        let msg = idx::parse(&bytes).unwrap_err();
        assert!(msg.contains(needle), "{what}: {msg}");
    }
    let (img, lab) = synthetic(3, 2, 2);
    let pair = |a: &[u8], b: &[u8]| IdxImages::new(idx::parse(a).unwrap(), idx::parse(b).unwrap());
    let msg = pair(&img, &idx_bytes(&[2], &[0, 1])).unwrap_err();
    assert!(msg.contains("3 images but 2 labels"), "{msg}");
    let msg = pair(&lab, &lab).unwrap_err();
    assert!(msg.contains("3 dimensions"), "{msg}");
    let msg = pair(&img, &img).unwrap_err();
    assert!(msg.contains("1 dimension"), "{msg}");
    let msg = pair(&idx_bytes(&[2, 0, 3], &[]), &idx_bytes(&[2], &[0, 1])).unwrap_err();
    assert!(msg.contains("0×3"), "{msg}");
}

#[test]
fn file_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("x-images-idx3-ubyte");
    let (img, _) = synthetic(4, 2, 2);
    std::fs::write(&images, &img).unwrap();
    let msg = Dataset::open(&images).unwrap_err().to_string();
    assert!(msg.contains("no labels file"), "{msg}");
    let labels = d.path().join("x-labels-idx1-ubyte.gz");
    std::fs::write(&labels, gzip(&idx_bytes(&[5], &[0; 5]))).unwrap();
    let msg = Dataset::open(&images).unwrap_err().to_string();
    assert!(msg.contains("4 images but 5 labels"), "{msg}");
    assert!(msg.contains("x-labels-idx1-ubyte.gz"), "{msg}");
    std::fs::write(&images, &img[..img.len() - 1]).unwrap();
    let msg = Dataset::open(&images).unwrap_err().to_string();
    assert!(
        msg.contains("x-images-idx3-ubyte") && msg.contains("truncated"),
        "{msg}"
    );
}

fn grey(size: usize) -> Preprocess {
    Preprocess {
        size,
        resize: size,
        mean: [10.0; 3],
        std: [2.0; 3],
        channels: 1,
    }
}

#[test]
fn dataset_reads_pixels_and_labels() {
    let d = tempfile::tempdir().unwrap();
    write_split(d.path(), "t10k", 12, true);
    let ds = Dataset::open(&d.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((ds.len(), &ds.labels), (12, &Labels::Idx));
    // 5 rows × 4 columns, no resize: the values are the pixels, normalised.
    let pre = Preprocess {
        size: 4,
        resize: 4,
        ..grey(4)
    };
    let (t, l) = ds.load_batch(9..11, &pre, 1).unwrap();
    assert_eq!(t.shape, [2, 1, 4, 4]);
    assert_eq!(l, vec![Some(9), Some(0)]);
    // Centre crop of 5 rows to 4: offset round(0.5) = 0 (ties to even).
    for (s, i) in [(0, 9), (1, 10)] {
        for y in 0..4 {
            for x in 0..4 {
                let p = ((31 * i + 7 * (y * 4 + x)) % 256) as f32;
                assert_eq!(t.data[s * 16 + y * 4 + x], (p - 10.0) / 2.0, "{i} {y} {x}");
            }
        }
    }
    assert!(ds.load_batch(11..13, &pre, 1).is_err());
    assert_eq!(ds.clone().limit(3).len(), 3);
}

#[test]
fn folders_open_the_test_split() {
    let d = tempfile::tempdir().unwrap();
    write_split(d.path(), "train", 7, true);
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.len(), 7, "the only images file");
    write_split(d.path(), "t10k", 3, false);
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.len(), 3, "the t10k split of several");
    assert!(ds.root.ends_with("t10k-images-idx3-ubyte"));
    write_split(d.path(), "extra", 2, true);
    assert_eq!(Dataset::open(d.path()).unwrap().len(), 3);
    write_split(d.path(), "t10k-b", 2, true);
    let msg = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(msg.contains("several IDX images files"), "{msg}");
}

/// `small_classifier` with a 1 × 8 × 8 grey input.
fn grey_classifier() -> ptq4::graph::Graph {
    let mut g = common::small_classifier("grey", 10);
    let mut seed = 11;
    g.input_shape = vec![1, 8, 8];
    g.params
        .insert("c1.weight".into(), common::rand(&[4, 1, 3, 3], &mut seed));
    g.nodes[0].op = Op::Conv2d(common::conv(1, 4, 3, 1, 1));
    g.preprocess = Preprocess {
        mean: [72.93; 3],
        std: [90.015; 3],
        ..grey(8)
    };
    g
}

/// `ptq4 eval` on IDX files gives the logits of the same images as PNG files.
#[test]
fn eval_on_idx_matches_png_files() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("grey.safetensors");
    ptq4::io::model::save_graph(&grey_classifier(), &model).unwrap();
    let n = 30;
    let (img, lab) = synthetic(n, 8, 8);
    let idx_dir = d.path().join("idx");
    std::fs::create_dir(&idx_dir).unwrap();
    std::fs::write(idx_dir.join("t10k-images-idx3-ubyte.gz"), gzip(&img)).unwrap();
    std::fs::write(idx_dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&lab)).unwrap();
    let png_dir = d.path().join("png");
    std::fs::create_dir(&png_dir).unwrap();
    let px = idx::parse(&img).unwrap().data;
    for i in 0..n {
        let im = image::GrayImage::from_raw(8, 8, px[i * 64..(i + 1) * 64].to_vec()).unwrap();
        im.save(png_dir.join(format!("img_{i:03}_{}.png", i % 10)))
            .unwrap();
    }
    let eval = |data: &Path| -> serde_json::Value {
        let out = Command::cargo_bin("ptq4")
            .unwrap()
            .env("PTQ4_HOME", d.path().join("home"))
            .args([
                "eval",
                "--backend",
                "cpu",
                "--batch",
                "7",
                "--json",
                "--model",
            ])
            .arg(&model)
            .arg("--data")
            .arg(data)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let a = eval(&idx_dir);
    let b = eval(&png_dir);
    assert_eq!(a["n"], n);
    assert!(a["logits_sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert_eq!(a["logits_sha256"], b["logits_sha256"]);
    assert_eq!(a["top1"], b["top1"]);
    assert_eq!(a["predictions"], b["predictions"]);
}
