//! Quantized files: tampered quantizers, codes, biases and plans are refused at load naming
//! the tensor or node; quantization refuses what it could not write or run; the files it
//! writes are deterministic and load back.

use std::path::Path;

use assert_cmd::Command;
use ptq4::engine::Backend;
use ptq4::graph::{Graph, Op};
use ptq4::io::model::{save_graph, Data, ModelFile};
use ptq4::io::qfile::KEY_PLAN;
use ptq4::model::{Fp32Model, LoadedModel};
use ptq4::pipeline::{quantize, StatsSource};
use ptq4::qmodel::QuantModel;
use ptq4::quant::config::{Protocol, QuantConfig};

use super::{assert_names, small_graph};
use crate::common::node;

/// W4A8, every layer at 4 bits, data-free statistics.
fn quantized(g: Graph, protocol: Protocol) -> ptq4::Result<QuantModel> {
    let m = Fp32Model::new(g)?;
    let cfg = QuantConfig {
        keep_8bit: Some(vec![]),
        ..QuantConfig::baseline(4, 8, protocol)
    };
    Ok(quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false)?.0)
}

/// The small model's file with `edit` applied, loaded as `eval` loads it: the error.
fn tampered(edit: impl FnOnce(&mut ModelFile)) -> String {
    let q = quantized(small_graph(), Protocol::Paper).unwrap();
    let mut f = q.to_file().unwrap();
    edit(&mut f);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.safetensors");
    f.write(&path).unwrap();
    match LoadedModel::load(&path) {
        Ok(_) => panic!("the tampered model loaded"),
        Err(e) => e.to_string(),
    }
}

fn f32s<'a>(f: &'a mut ModelFile, key: &str) -> &'a mut Vec<f32> {
    match &mut f.tensors.get_mut(key).unwrap().data {
        Data::F32(v) => v,
        _ => panic!("{key} is not f32"),
    }
}

fn plan_edit(f: &mut ModelFile, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&f.metadata[KEY_PLAN]).unwrap();
    edit(&mut v);
    f.metadata.insert(KEY_PLAN.into(), v.to_string());
}

#[test]
fn the_quantized_small_graph_saves_and_loads() {
    let q = quantized(small_graph(), Protocol::Paper).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.safetensors");
    q.save(&path).unwrap();
    assert!(matches!(
        LoadedModel::load(&path).unwrap(),
        LoadedModel::Quant(_)
    ));
}

#[test]
fn a_quantized_file_reads_as_the_graph_structure_and_the_plan_without_weights() {
    let q = quantized(small_graph(), Protocol::Deploy).unwrap();
    let mut f = q.to_file().unwrap();
    let (g, plan) = ptq4::io::qfile::from_file(&mut f, Path::new("q.safetensors")).unwrap();
    assert!(g.params.is_empty(), "{:?}", g.params.keys());
    assert!(
        f.tensors.is_empty(),
        "tensors left unread: {:?}",
        f.tensors.keys()
    );
    assert_eq!(plan, q.plan);
    assert_eq!(g.nodes, q.dequantized.nodes);
    let back = QuantModel::new(&g, plan).unwrap();
    assert_eq!(back.dequantized, q.dequantized);
}

#[test]
fn bad_quantizers_codes_and_biases_are_refused_naming_the_tensor() {
    let msg = tampered(|f| f32s(f, "c1.weight.scale")[0] = f32::NAN);
    assert_names(&msg, &["c1.weight", "scale NaN"]);
    let msg = tampered(|f| f32s(f, "c1.weight.scale")[1] = -1.0);
    assert_names(&msg, &["c1.weight", "scale -1"]);
    let msg = tampered(|f| {
        if let Data::I32(z) = &mut f.tensors.get_mut("fc.weight.zero").unwrap().data {
            z[2] = 300;
        }
    });
    assert_names(&msg, &["fc.weight", "zero point 300"]);
    let msg = tampered(|f| {
        if let Data::U8(b) = &mut f.tensors.get_mut("c1.weight.bits").unwrap().data {
            b[0] = 9;
        }
    });
    assert_names(&msg, &["c1.weight.bits", "9 bits"]);
    // A 1-bit channel whose codes reach 15.
    let msg = tampered(|f| {
        if let Data::U8(b) = &mut f.tensors.get_mut("c1.weight.bits").unwrap().data {
            b[0] = 1;
        }
        if let Data::I32(z) = &mut f.tensors.get_mut("c1.weight.zero").unwrap().data {
            z[0] = 0;
        }
        if let Data::U8(c) = &mut f.tensors.get_mut("c1.weight.codes").unwrap().data {
            c[0] = 0xff;
        }
    });
    assert_names(&msg, &["c1.weight.codes", "code 15", "channel 0"]);
    let msg = tampered(|f| f32s(f, "fc.bias")[0] = f32::INFINITY);
    assert_names(&msg, &["fc.bias", "not finite"]);
    let msg = tampered(|f| {
        let t = f.tensors.get_mut("fc.weight.codes").unwrap();
        if let Data::U8(c) = &mut t.data {
            c.pop();
            t.shape = vec![c.len()];
        }
    });
    assert_names(
        &msg,
        &["fc.weight.codes", "9 bytes cannot hold the 20 codes"],
    );
    let msg = tampered(|f| {
        let t = f.tensors.get_mut("fc.weight.codes").unwrap();
        if let Data::U8(c) = &mut t.data {
            c.push(0);
            t.shape = vec![c.len()];
        }
    });
    assert_names(&msg, &["fc.weight", "11 code bytes"]);
    let msg = tampered(|f| {
        f.tensors.remove("c1.weight.codes");
    });
    assert_names(&msg, &["c1.weight.codes"]);
}

#[test]
fn plans_not_matching_the_graph_are_refused() {
    let msg = tampered(|f| {
        plan_edit(f, |p| {
            p["layers"].as_array_mut().unwrap().remove(0);
        })
    });
    assert_names(&msg, &["layer c1", "no quantized weights"]);
    let msg = tampered(|f| {
        plan_edit(f, |p| {
            let l = p["layers"][1].clone();
            p["layers"].as_array_mut().unwrap().push(l)
        })
    });
    assert_names(&msg, &["fc.weight"]);
    let msg = tampered(|f| plan_edit(f, |p| p["acts"][0]["params"] = serde_json::json!([])));
    assert_names(&msg, &["activation quantizer", "0 quantizers"]);
    let msg = tampered(|f| plan_edit(f, |p| p["acts"][0]["value"] = "nope".into()));
    assert_names(&msg, &["nope", "not a value"]);
    // A layer claiming 2^40 output channels: refused before any allocation.
    let msg = tampered(|f| {
        let g = f.metadata["ptq4.graph"]
            .replace("\"out_features\":5", "\"out_features\":1099511627776");
        f.metadata.insert("ptq4.graph".into(), g);
    });
    assert_names(&msg, &["node fc", "elements"]);
}

#[test]
fn a_model_that_would_not_load_back_is_not_written() {
    let mut q = quantized(small_graph(), Protocol::Paper).unwrap();
    q.plan.layers[0].bias[0] = f32::NAN;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.safetensors");
    let msg = q.save(&path).unwrap_err().to_string();
    assert_names(&msg, &["c1.bias", "not finite", "would not load back"]);
    assert!(!path.exists());
}

#[test]
fn quantized_files_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["a", "b"] {
        let path = dir.path().join(name);
        quantized(small_graph(), Protocol::Deploy)
            .unwrap()
            .save(&path)
            .unwrap();
        files.push(std::fs::read(&path).unwrap());
    }
    assert_eq!(files[0], files[1]);
    let st = safetensors::SafeTensors::deserialize(&files[0]).unwrap();
    assert!(st.tensor("c1.weight.codes").is_ok());
}

#[test]
fn a_zero_weight_layer_gives_a_finite_sqnr_and_round_trips() {
    let mut g = small_graph();
    g.params.get_mut("fc.weight").unwrap().data.fill(0.0);
    let q = quantized(g, Protocol::Paper).unwrap();
    let fc = q.plan.layers.iter().find(|l| l.node == "fc").unwrap();
    assert_eq!(fc.info.sqnr_db, 0.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.safetensors");
    q.save(&path).unwrap();
    let LoadedModel::Quant(back) = LoadedModel::load(&path).unwrap() else {
        panic!("not quantized")
    };
    assert_eq!(back.plan, q.plan);
}

#[test]
fn an_unfoldable_batchnorm_quantizes_and_round_trips() {
    let mut g = small_graph();
    // c1 → r1 → bn1: the BatchNorm reads a ReLU, so it cannot fold and stays in the graph
    // (paper: float; deploy: per-channel code tables), its parameters stored in the file.
    g.nodes[1] = node("r1", Op::Relu, &["c1"]);
    g.nodes[2] = node(
        "bn1",
        Op::BatchNorm {
            eps: 1e-3,
            act: Default::default(),
        },
        &["r1"],
    );
    g.nodes[3].inputs = vec!["bn1".into()];
    let dir = tempfile::tempdir().unwrap();
    for protocol in [Protocol::Paper, Protocol::Deploy] {
        let q = quantized(g.clone(), protocol).unwrap();
        assert!(q.dequantized.node("bn1").is_some());
        if protocol == Protocol::Deploy {
            assert!(
                matches!(q.int, Some(Ok(_))),
                "{:?}",
                q.int.as_ref().map(|r| r.as_ref().err())
            );
        }
        let path = dir.path().join("q.safetensors");
        q.save(&path).unwrap();
        let LoadedModel::Quant(back) = LoadedModel::load(&path).unwrap() else {
            panic!("not quantized")
        };
        assert_eq!(back.plan, q.plan);
        assert_eq!(
            back.dequantized.param("bn1", "running_var").unwrap(),
            q.dequantized.param("bn1", "running_var").unwrap()
        );
    }
}

/// A softmax inside the graph (read by a flatten that is the output): the integer kernels
/// apply a softmax only to the logits.
fn softmax_graph() -> Graph {
    let mut g = small_graph();
    g.nodes.push(node("sm", Op::Softmax, &["fc"]));
    g.nodes.push(node("fl", Op::Flatten, &["sm"]));
    g.output = "fl".into();
    g
}

#[test]
fn deploy_refuses_at_quantize_time_what_the_integer_kernels_cannot_run() {
    let err = quantized(softmax_graph(), Protocol::Deploy)
        .err()
        .unwrap()
        .to_string();
    assert_names(&err, &["--protocol deploy", "node sm (softmax)"]);
    assert!(quantized(softmax_graph(), Protocol::Paper).is_ok());
}

#[test]
fn the_binary_refuses_deploy_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sm.safetensors");
    save_graph(&softmax_graph(), &model).unwrap();
    let out_path = dir.path().join("q.safetensors");
    let out = Command::cargo_bin("ptq4")
        .unwrap()
        .args(["quantize", "--data-free", "--protocol", "deploy", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(&out_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_names(&err, &["node sm (softmax)"]);
    assert!(!Path::new(&out_path).exists());
}
