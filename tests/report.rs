//! The HTML report of a small model: every chart is well-formed SVG that draws something,
//! the page is self-contained, the CLI writes it, and headless Chromium shows it (a
//! non-blank screenshot with the charts' colours, every SVG in the DOM, no console errors).

mod browser;
mod common;

use std::collections::{BTreeMap, HashSet};

use assert_cmd::Command;
use ptq4::calib::{self, Calibration};
use ptq4::engine::Backend;
use ptq4::eval::ablate::{Ablation, Row};
use ptq4::graph::{Activation, Graph, Linear, Op, Preprocess};
use ptq4::model::Fp32Model;
use ptq4::pipeline;
use ptq4::qmodel::QuantModel;
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::report::{render, ReportInput};
use ptq4::Tensor;

use common::{conv, node, rand};

/// conv → BN → ReLU6 → depthwise → BN → ReLU → + skip → pointwise → BN → GAP → linear.
fn tiny() -> Graph {
    let seed = &mut 7u64;
    let mut params = BTreeMap::new();
    let mut bn = |name: &str, c: usize, seed: &mut u64| {
        params.insert(format!("{name}.weight"), rand(&[c], seed));
        params.insert(format!("{name}.bias"), rand(&[c], seed));
        params.insert(format!("{name}.running_mean"), rand(&[c], seed));
        let v = rand(&[c], seed);
        let var = v.data.iter().map(|x| x.abs() + 0.1).collect();
        params.insert(
            format!("{name}.running_var"),
            Tensor {
                shape: v.shape,
                data: var,
            },
        );
    };
    bn("bn1", 8, seed);
    bn("bn2", 8, seed);
    bn("bn3", 12, seed);
    params.insert("c1.weight".into(), rand(&[8, 3, 3, 3], seed));
    params.insert("dw.weight".into(), rand(&[8, 1, 3, 3], seed));
    params.insert("pw.weight".into(), rand(&[12, 8, 1, 1], seed));
    params.insert("fc.weight".into(), rand(&[5, 12], seed));
    params.insert("fc.bias".into(), rand(&[5], seed));
    Graph {
        name: "tiny".into(),
        input_shape: vec![3, 16, 16],
        nodes: vec![
            node("c1", Op::Conv2d(conv(3, 8, 3, 1, 1)), &["input"]),
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(8, 8, 3, 1, 8)), &["r1"]),
            node(
                "bn2",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["dw"],
            ),
            node("r2", Op::Relu, &["bn2"]),
            node("add", Op::Add, &["r2", "r1"]),
            node("pw", Op::Conv2d(conv(8, 12, 1, 1, 1)), &["add"]),
            node(
                "bn3",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["pw"],
            ),
            node("gap", Op::GlobalAvgPool, &["bn3"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 12,
                    out_features: 5,
                    bias: true,
                    act: Activation::None,
                }),
                &["flat"],
            ),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(16),
    }
}

/// The tiny model quantized W4A4 with statistics from random images or data-free.
fn quantized(protocol: Protocol, data_free: bool) -> (QuantModel, Calibration) {
    let m = Fp32Model::new(tiny()).unwrap();
    let cfg = QuantConfig {
        protocol,
        ..QuantConfig::default()
    };
    let points = quant_points(&m.prepared, &cfg);
    let cal = if data_free {
        calib::data_free(&m.stored, &m.prepared, &points).unwrap()
    } else {
        let seed = &mut 11u64;
        let batches: Vec<Tensor> = (0..3).map(|_| rand(&[4, 3, 16, 16], seed)).collect();
        calib::calibrate_batches(&m.prepared, &points, &batches, &Backend::Cpu, false).unwrap()
    };
    (
        pipeline::quantize_with(&m, &cfg, &cal, &Backend::Cpu).unwrap(),
        cal,
    )
}

fn ablation() -> Ablation {
    let row = |protocol, method: &str, a1: f64| Row {
        protocol,
        method: method.into(),
        top1: Some(a1 * 0.7),
        top5: Some(0.9),
        agreement_top1: a1,
        agreement_top5: 0.95,
        kl_mean: 0.1,
        quantize_s: 1.5,
        statistics: "12 images".into(),
    };
    Ablation {
        model: "tiny".into(),
        wbits: 4,
        abits: 4,
        n_eval: 20,
        views: 1,
        calibration: "12 images".into(),
        kept_8bit: vec!["c1".into(), "fc".into()],
        rows: vec![
            row(Protocol::Paper, "fp32", 1.0),
            row(Protocol::Paper, "baseline (min-max)", 0.05),
            row(Protocol::Paper, "aciq + alloc + bc", 0.6),
        ],
    }
}

fn page(q: &QuantModel, cal: &Calibration, with_ablation: bool) -> String {
    let a = ablation();
    render(&ReportInput {
        model: "tiny".into(),
        q,
        stats: Some(&cal.stats),
        stats_note: cal.source.clone(),
        ablation: with_ablation.then_some(&a),
        backend: "cpu".into(),
    })
    .unwrap()
}

/// The `<svg>…</svg>` elements of a page, in order.
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<svg") {
        let j = rest[i..].find("</svg>").expect("unclosed <svg>") + i + "</svg>".len();
        out.push(&rest[i..j]);
        rest = &rest[j..];
    }
    out
}

/// Parses one SVG as XML and counts its shapes with a non-zero extent, and its texts.
fn drawn(svg: &str) -> (usize, usize) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG is not XML: {e}"));
    let num = |n: &roxmltree::Node, a: &str| n.attribute(a).and_then(|v| v.parse::<f64>().ok());
    let mut shapes = 0;
    let mut texts = 0;
    for n in doc.descendants().filter(|n| n.is_element()) {
        match n.tag_name().name() {
            "rect" if num(&n, "width") > Some(0.0) && num(&n, "height") > Some(0.0) => shapes += 1,
            "polyline" | "polygon"
                if n.attribute("points")
                    .is_some_and(|p| p.split_whitespace().count() >= 2) =>
            {
                shapes += 1
            }
            "line" | "path" | "circle" => shapes += 1,
            "text" if !n.text().unwrap_or("").trim().is_empty() => texts += 1,
            _ => {}
        }
    }
    (shapes, texts)
}

/// Nothing is fetched: no scripts, no sources, no links but the SVG namespace.
fn assert_self_contained(html: &str) {
    assert!(!html.contains("<script"), "the page has a script");
    assert!(!html.contains("src="), "the page loads a resource");
    let without_ns = html.replace("http://www.w3.org/2000/svg", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
}

#[test]
fn every_chart_is_xml_and_draws_bars_lines_and_labels() {
    let (q, cal) = quantized(Protocol::Paper, false);
    let html = page(&q, &cal, true);
    assert_self_contained(&html);
    let charts = svgs(&html);
    // weight SQNR, activation SQNR, the chosen windows, one candidate chart per activation
    // point (3 here), weight bits, activation bits (paper: per channel), the ablation bars.
    let points = q.plan.acts.len().min(ptq4::report::page::WORST_POINTS);
    assert_eq!(points, 3, "paper points of the tiny graph: c1, dw, pw");
    assert_eq!(charts.len(), 3 + points + 2 + 1, "charts in the page");
    for (i, s) in charts.iter().enumerate() {
        let (shapes, texts) = drawn(s);
        assert!(shapes >= 4, "chart {i} draws only {shapes} shapes");
        assert!(texts >= 3, "chart {i} has only {texts} labels");
    }
    // Each window chart marks exactly one candidate as the plan's choice.
    assert_eq!(html.matches("(chosen)").count(), points);
    for name in [
        "ACIQ Laplace",
        "ACIQ Gauss",
        "MMSE",
        "min-max",
        "aciq + alloc + bc",
    ] {
        assert!(html.contains(name), "{name} missing");
    }
    assert!(
        html.contains("W4 A4") && html.contains("c1, fc"),
        "plan summary"
    );
}

#[test]
fn a_data_free_plan_draws_the_assumed_gaussian_and_says_why_there_is_no_histogram() {
    let (q, cal) = quantized(Protocol::Deploy, true);
    let html = page(&q, &cal, false);
    assert_self_contained(&html);
    assert!(html.contains("assumed N(mean, std²)"));
    assert!(html.contains("No activation SQNR"));
    assert!(!html.contains("MMSE ["), "MMSE needs a histogram");
    for (i, s) in svgs(&html).iter().enumerate() {
        assert!(drawn(s).0 >= 4, "chart {i} draws nothing");
    }
}

#[test]
fn the_cli_writes_reports_and_rejects_fp32_models_and_foreign_json() {
    let dir = tempfile::tempdir().unwrap();
    let fp = dir.path().join("tiny.safetensors");
    ptq4::io::model::save_graph(&tiny(), &fp).unwrap();
    let q = dir.path().join("q.safetensors");
    let (r1, r2) = (dir.path().join("r1.html"), dir.path().join("r2.html"));
    let bin = || Command::cargo_bin("ptq4").unwrap();
    bin()
        .args([
            "quantize",
            "--data-free",
            "--backend",
            "cpu",
            "--json",
            "--model",
        ])
        .arg(&fp)
        .arg("-o")
        .arg(&q)
        .arg("--report-html")
        .arg(&r1)
        .assert()
        .success();
    let abl = dir.path().join("a.json");
    std::fs::write(&abl, serde_json::to_string(&ablation()).unwrap()).unwrap();
    bin()
        .arg("report")
        .arg("--model")
        .arg(&q)
        .arg("--ablation")
        .arg(&abl)
        .arg("-o")
        .arg(&r2)
        .assert()
        .success();
    for r in [&r1, &r2] {
        let html = std::fs::read_to_string(r).unwrap();
        assert_self_contained(&html);
        assert!(svgs(&html).len() >= 3, "{}", r.display());
    }
    let r2 = std::fs::read_to_string(&r2).unwrap();
    assert!(r2.contains("top-1 agreement with FP32") && r2.contains("No statistics"));
    // With images, the histograms are recomputed through the quantized weights.
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..3u32 {
        let img = image::RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([
                (x * 10 + i * 40) as u8,
                (y * 12) as u8,
                ((x * y + i) % 255) as u8,
            ])
        });
        img.save(imgs.join(format!("{i}.png"))).unwrap();
    }
    let r3 = dir.path().join("r3.html");
    bin()
        .args(["report", "--backend", "cpu", "--calib-n", "3", "--model"])
        .arg(&q)
        .arg("--calib")
        .arg(&imgs)
        .arg("-o")
        .arg(&r3)
        .assert()
        .success();
    let r3 = std::fs::read_to_string(&r3).unwrap();
    assert!(r3.contains("recomputed on 3 images through the quantized weights"));
    assert!(r3.contains("activation SQNR (on the report&apos;s histograms)"));
    assert!(
        r3.matches("(chosen)").count() >= 3,
        "candidate windows drawn"
    );
    let out = dir.path().join("x.html");
    bin()
        .arg("report")
        .arg("--model")
        .arg(&fp)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"rows\": 3}").unwrap();
    bin()
        .arg("report")
        .arg("--model")
        .arg(&q)
        .arg("--ablation")
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2);
    assert!(!out.exists(), "no report is written on errors");
}

#[test]
fn headless_chromium_shows_the_report() {
    let Some(exe) = browser::chromium() else {
        return;
    };
    let (q, cal) = quantized(Protocol::Paper, false);
    let html = page(&q, &cal, true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    std::fs::write(&file, &html).unwrap();
    let seen = browser::look(&exe, &file, (1200, 2000));
    assert!(seen.console.is_empty(), "console: {:#?}", seen.console);
    // Every chart is in the DOM, each with its shapes.
    let dom_svgs = svgs(&seen.dom);
    assert_eq!(dom_svgs.len(), svgs(&html).len(), "SVGs in the DOM");
    for (i, s) in dom_svgs.iter().enumerate() {
        assert!(
            s.contains("<rect") || s.contains("<polyline"),
            "DOM chart {i} is empty"
        );
    }
    // The screenshot is not blank and shows the charts' colours, not only text.
    let img = &seen.png;
    assert_eq!(img.dimensions(), (1200, 2000));
    let total = (img.width() * img.height()) as f64;
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count() as f64;
    let bar_blue = img
        .pixels()
        .filter(|p| {
            p.0.iter()
                .zip([31i32, 119, 180])
                .all(|(&a, b)| (a as i32 - b).abs() <= 8)
        })
        .count() as f64;
    assert!(colours.len() > 16, "{} distinct colours", colours.len());
    assert!(
        non_white / total > 0.05,
        "non-white {:.3}",
        non_white / total
    );
    assert!(
        bar_blue / total > 0.002,
        "SQNR bars cover {:.4}",
        bar_blue / total
    );
}
