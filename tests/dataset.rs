//! Image datasets: label parsing (file names, ImageFolder), ordering, preprocessing exactness
//! on small synthetic images, the 12 views and grey → RGB.

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use ptq4::graph::Preprocess;
use ptq4::io::dataset::{file_label, Dataset, Labels};
use ptq4::io::preprocess::{
    center_crop_offset, region_box, resize_shorter_dims, views, Region, View, VIEWS_12,
};

fn rgb(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    RgbImage::from_fn(w, h, |x, y| Rgb(f(x, y)))
        .save(path)
        .unwrap();
}

fn touch_png(path: &Path) {
    rgb(path, 2, 2, |_, _| [1, 2, 3]);
}

/// Identity normalisation: outputs are raw 0..255 pixel values.
fn raw(size: usize, resize: usize) -> Preprocess {
    Preprocess {
        size,
        resize,
        mean: [0.0; 3],
        std: [1.0; 3],
        channels: 3,
    }
}

#[test]
fn file_name_labels() {
    assert_eq!(file_label(Path::new("a/imagenet_03_990.jpg")), Some(990));
    assert_eq!(file_label(Path::new("x_0.png")), Some(0));
    assert_eq!(file_label(Path::new("motorcycle_left.png")), None);
    assert_eq!(file_label(Path::new("camera.png")), None);
    assert_eq!(file_label(Path::new("neg_-1.png")), None);
}

#[test]
fn flat_labelled_sorted_and_filtered() {
    let d = tempfile::tempdir().unwrap();
    for n in ["b_7.png", "a_10.PNG", "c_3.jpg", ".hidden_1.png"] {
        touch_png(&d.path().join(n));
    }
    std::fs::write(d.path().join("README.txt"), "not an image").unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.labels, Labels::FileNames);
    assert!(ds.is_labelled());
    let names: Vec<_> = ds
        .items
        .iter()
        .map(|i| i.path.file_name().unwrap())
        .collect();
    assert_eq!(names, ["a_10.PNG", "b_7.png", "c_3.jpg"]);
    let labels: Vec<_> = ds.items.iter().map(|i| i.label).collect();
    assert_eq!(labels, [Some(10), Some(7), Some(3)]);
    let first_two = ds.limit(2);
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two.items[1].label, Some(7));
}

#[test]
fn one_unlabelled_name_makes_the_folder_unlabelled() {
    let d = tempfile::tempdir().unwrap();
    for n in ["coffee.png", "motorcycle_left.png", "shot_4.png"] {
        touch_png(&d.path().join(n));
    }
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.labels, Labels::Unlabelled);
    assert!(ds.items.iter().all(|i| i.label.is_none()));
    assert_eq!(ds.len(), 3);
}

#[test]
fn image_folder_numeric_and_named_classes() {
    let d = tempfile::tempdir().unwrap();
    for (dir, file) in [("10", "z.png"), ("3", "a.png"), ("3", "sub/b.png")] {
        let p = d.path().join(dir).join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        touch_png(&p);
    }
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.labels, Labels::Folders { classes: vec![] });
    let got: Vec<_> = ds
        .items
        .iter()
        .map(|i| (i.path.strip_prefix(d.path()).unwrap().to_owned(), i.label))
        .collect();
    let want = [("10/z.png", 10), ("3/a.png", 3), ("3/sub/b.png", 3)];
    assert_eq!(got.len(), 3);
    for ((p, l), (wp, wl)) in got.iter().zip(want) {
        assert_eq!((p.as_path(), *l), (Path::new(wp), Some(wl)));
    }

    let e = tempfile::tempdir().unwrap();
    for (dir, file) in [("dog", "1.png"), ("cat", "2.jpg"), ("cat", "1.png")] {
        std::fs::create_dir_all(e.path().join(dir)).unwrap();
        touch_png(&e.path().join(dir).join(file));
    }
    let ds = Dataset::open(e.path()).unwrap();
    assert_eq!(
        ds.labels,
        Labels::Folders {
            classes: vec!["cat".into(), "dog".into()]
        }
    );
    let labels: Vec<_> = ds.items.iter().map(|i| i.label).collect();
    assert_eq!(labels, [Some(0), Some(0), Some(1)]);
    assert!(ds.items[0].path.ends_with("cat/1.png"));
}

#[test]
fn bad_layouts_are_errors_naming_the_folder() {
    let d = tempfile::tempdir().unwrap();
    let msg = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(msg.contains(&d.path().display().to_string()), "{msg}");

    touch_png(&d.path().join("x_1.png"));
    std::fs::create_dir(d.path().join("7")).unwrap();
    touch_png(&d.path().join("7/y.png"));
    let msg = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(msg.contains("mixes"), "{msg}");
}

#[test]
fn geometry_rules() {
    assert_eq!(resize_shorter_dims(512, 512, 256), (256, 256));
    assert_eq!(resize_shorter_dims(640, 480, 256), (341, 256));
    assert_eq!(resize_shorter_dims(480, 640, 256), (256, 341));
    // round((len − size) / 2), ties to even, as Python.
    assert_eq!(center_crop_offset(14, 10), 2);
    assert_eq!(center_crop_offset(15, 10), 2);
    assert_eq!(center_crop_offset(17, 10), 4);
    assert_eq!(center_crop_offset(292, 260), 16);
    assert_eq!(region_box(Region::Whole, 20, 10), (0, 0, 20, 10));
    assert_eq!(region_box(Region::BottomRight, 20, 10), (4, 2, 16, 8));
    assert_eq!(region_box(Region::Centre, 20, 10), (2, 1, 16, 8));
    assert_eq!(views(12).unwrap().len(), 12);
    assert_eq!(views(1).unwrap().len(), 1);
    assert!(views(5).is_err());
}

#[test]
fn constant_image_gives_the_constant_normalised_value() {
    let d = tempfile::tempdir().unwrap();
    rgb(&d.path().join("c_1.png"), 37, 23, |_, _| [10, 127, 255]);
    let ds = Dataset::open(d.path()).unwrap();
    let pre = Preprocess::efficientnet(16);
    let (t, labels) = ds.load_batch(0..12, &pre, 12).unwrap();
    assert_eq!(t.shape, [12, 3, 16, 16]);
    assert_eq!(labels, vec![Some(1); 12]);
    let want = [(10.0 - 127.0) / 128.0, 0.0, (255.0 - 127.0) / 128.0];
    for (i, v) in t.data.iter().enumerate() {
        let c = (i / 256) % 3;
        assert_eq!(*v, want[c], "element {i}");
    }
}

#[test]
fn two_colour_image_crop_lands_where_expected() {
    // 20×10, left half 0, right half 200; shorter side already 10 (no resampling), so the
    // centre crop of 10 starts at column 5: columns 0..5 dark, 5..10 bright.
    let d = tempfile::tempdir().unwrap();
    rgb(&d.path().join("two.png"), 20, 10, |x, _| {
        if x < 10 {
            [0, 0, 0]
        } else {
            [200, 100, 50]
        }
    });
    let ds = Dataset::open(d.path()).unwrap();
    let (t, labels) = ds.load_batch(0..2, &raw(10, 10), 12).unwrap();
    assert_eq!(labels, [None, None]);
    for c in 0..3 {
        let bright = [200.0, 100.0, 50.0][c];
        for y in 0..10 {
            for x in 0..10 {
                let plain = t.data[((c) * 10 + y) * 10 + x];
                let mirrored = t.data[((3 + c) * 10 + y) * 10 + x];
                assert_eq!(plain, if x < 5 { 0.0 } else { bright }, "c{c} y{y} x{x}");
                assert_eq!(mirrored, if x < 5 { bright } else { 0.0 }, "c{c} y{y} x{x}");
            }
        }
    }
}

#[test]
fn twelve_views_regions_and_mirrors() {
    // Pixel value x + 10·y in every channel; crops are 16×16 and size = resize = 16, so each
    // crop view is an exact window of the image.
    let d = tempfile::tempdir().unwrap();
    let f = |x: u32, y: u32| [(x + 10 * y) as u8; 3];
    rgb(&d.path().join("g_0.png"), 20, 20, f);
    rgb(&d.path().join("h_1.png"), 20, 20, |x, y| f(19 - x, y));
    let ds = Dataset::open(d.path()).unwrap();
    let (t, labels) = ds.load_batch(0..24, &raw(16, 16), 12).unwrap();
    assert_eq!(t.shape, [24, 3, 16, 16]);
    let mut want_labels = vec![Some(0); 12];
    want_labels.extend(vec![Some(1); 12]);
    assert_eq!(labels, want_labels);

    let at = |v: usize, y: usize, x: usize| t.item(v)[y * 16 + x];
    let regions = [
        (Region::TopLeft, 0, 0),
        (Region::TopRight, 4, 0),
        (Region::BottomLeft, 0, 4),
        (Region::BottomRight, 4, 4),
        (Region::Centre, 2, 2),
    ];
    assert_eq!(
        VIEWS_12[0],
        View {
            region: Region::Whole,
            mirror: false
        }
    );
    for (k, (region, ox, oy)) in regions.iter().enumerate() {
        let v = 2 + 2 * k;
        let mirror = View {
            region: *region,
            mirror: true,
        };
        assert_eq!(
            [VIEWS_12[v], VIEWS_12[v + 1]],
            [
                View {
                    mirror: false,
                    ..mirror
                },
                mirror
            ]
        );
        for y in 0..16 {
            for x in 0..16 {
                assert_eq!(at(v, y, x), ((x + ox) + 10 * (y + oy)) as f32, "view {v}");
            }
        }
    }
    for v in (0..24).step_by(2) {
        for c in 0..3 {
            for y in 0..16 {
                for x in 0..16 {
                    let a = t.item(v)[(c * 16 + y) * 16 + x];
                    let b = t.item(v + 1)[(c * 16 + y) * 16 + 15 - x];
                    assert_eq!(a, b, "view {} is not the mirror of {v}", v + 1);
                }
            }
        }
    }
    assert_ne!(t.item(0), t.item(2), "whole and top-left views differ");

    // A sub-range is the same samples, in the same order.
    let (part, part_labels) = ds.load_batch(5..14, &raw(16, 16), 12).unwrap();
    assert_eq!(part.shape[0], 9);
    assert_eq!(part.data, t.data[5 * 768..14 * 768]);
    assert_eq!(part_labels, want_labels[5..14]);
    assert_eq!(ds.batches(10, 12), [0..10, 10..20, 20..24]);
}

#[test]
fn grey_images_replicate_to_rgb_and_stay_grey_for_grey_models() {
    let d = tempfile::tempdir().unwrap();
    GrayImage::from_pixel(12, 9, Luma([77]))
        .save(d.path().join("grey.png"))
        .unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    let pre = Preprocess {
        mean: [1.0, 2.0, 3.0],
        std: [2.0, 4.0, 8.0],
        ..raw(8, 8)
    };
    let (t, _) = ds.load_batch(0..1, &pre, 1).unwrap();
    assert_eq!(t.shape, [1, 3, 8, 8]);
    for c in 0..3 {
        let want = (77.0 - pre.mean[c]) / pre.std[c];
        assert!(t.data[c * 64..(c + 1) * 64].iter().all(|v| *v == want));
    }
    let grey = Preprocess {
        channels: 1,
        ..pre.clone()
    };
    let (t, _) = ds.load_batch(0..1, &grey, 1).unwrap();
    assert_eq!(t.shape, [1, 1, 8, 8]);
    assert!(t.data.iter().all(|v| *v == 38.0));
}

#[test]
fn jpeg_decodes_and_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    rgb(&d.path().join("a_0.JPG"), 32, 24, |x, _| {
        [x as u8 * 8, 50, 90]
    });
    std::fs::write(d.path().join("b_1.png"), b"not a png").unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    let pre = raw(8, 10);
    let (t, l) = ds.load_batch(0..1, &pre, 1).unwrap();
    assert_eq!(
        (t.shape.as_slice(), l),
        ([1, 3, 8, 8].as_slice(), vec![Some(0)])
    );
    let msg = ds.load_batch(0..2, &pre, 1).unwrap_err().to_string();
    assert!(msg.contains("b_1.png"), "{msg}");
    let msg = ds.load_batch(0..3, &pre, 1).unwrap_err().to_string();
    assert!(msg.contains("out of range"), "{msg}");
    assert!(ds.load_batch(0..1, &pre, 5).is_err());
    let bad = Preprocess { resize: 4, ..pre };
    assert!(ds.load_batch(0..1, &bad, 1).is_err());
}
