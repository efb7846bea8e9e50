//! A user's mistakes and hostile surroundings at the command line (issue 9): a closed or
//! full stdout, out-of-range options, outputs that would overwrite an input, read-only
//! targets, stale temporary files and a damaged cache. Each case checks the exit code, that
//! nothing panicked, and that the message names the item; files the user owns stay intact.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use ptq4::io::fetch::{sha256_hex, stamp_path};
use ptq4::io::model::save_graph;

/// conv → BN → ReLU → GAP → flatten → linear: two layers, both kept at 8 bits by default.
fn tiny_model(path: &Path) {
    save_graph(&common::small_classifier("tiny", 2), path).unwrap();
}

/// A scratch folder with the tiny model in it, and a private cache.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m.safetensors");
    tiny_model(&m);
    (d, m)
}

fn ptq4(home: &Path) -> Command {
    let mut c = Command::cargo_bin("ptq4").unwrap();
    c.env("PTQ4_HOME", home);
    c
}

/// Runs `cmd`, expects exit `code`, no panic, and every `needles` in stderr; returns stderr.
fn fails(cmd: &mut Command, code: i32, needles: &[&str]) -> String {
    let out = cmd.assert().code(code).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr should name {n:?}: {err}");
    }
    err
}

#[test]
fn closed_stdout_is_a_quiet_exit() {
    let (d, m) = scratch();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = StdCommand::new(assert_cmd::cargo::cargo_bin("ptq4"))
        .env("PTQ4_HOME", d.path().join("home"))
        .arg("inspect")
        .arg(&m)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");

    // Both stdout and stderr closed (`ptq4 fetch NAME 2>&1 | true`): progress on stderr
    // must not panic either. A verified cache entry makes `fetch` print "already in".
    let home = d.path().join("home");
    cache_model(&home, &m);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = StdCommand::new(assert_cmd::cargo::cargo_bin("ptq4"))
        .env("PTQ4_HOME", &home)
        .args(["fetch", "efficientnet-lite0"])
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Puts `model` into the cache under `home` as a verified efficientnet-lite0; returns its path
/// and bytes.
fn cache_model(home: &Path, model: &Path) -> (PathBuf, Vec<u8>) {
    let cached = home.join("models/efficientnet-lite0.safetensors");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::copy(model, &cached).unwrap();
    let bytes = std::fs::read(&cached).unwrap();
    let stamp = format!("{} {}\n", sha256_hex(&bytes), bytes.len());
    std::fs::write(stamp_path(&cached), stamp).unwrap();
    (cached, bytes)
}

#[test]
fn full_stdout_is_an_error_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("SKIP: no /dev/full on this system");
        return;
    };
    let (d, m) = scratch();
    let out = StdCommand::new(assert_cmd::cargo::cargo_bin("ptq4"))
        .env("PTQ4_HOME", d.path().join("home"))
        .args(["inspect", "--json"])
        .arg(&m)
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: writing to stdout: No space left"),
        "{err}"
    );
}

#[test]
fn usage_mistakes_exit_2_naming_the_option() {
    let (d, m) = scratch();
    let home = d.path().join("home");
    let q = d.path().join("q.safetensors");
    let quantize = |extra: &[&str]| {
        let mut c = ptq4(&home);
        c.args(["quantize", "--model"]).arg(&m).arg("-o").arg(&q);
        c.args(extra);
        c
    };
    let calib = d.path().to_str().unwrap();
    fails(
        &mut quantize(&["--calib", calib, "--calib-n", "0"]),
        2,
        &["--calib-n", "at least 1"],
    );
    fails(
        &mut quantize(&["--calib", calib, "--batch", "0"]),
        2,
        &["--batch"],
    );
    fails(
        &mut quantize(&["--data-free", "--views", "12"]),
        2,
        &["--views", "--data-free"],
    );
    fails(
        &mut quantize(&["--data-free", "--protocol", "deploy", "--bit-alloc", "a"]),
        2,
        &["--bit-alloc a", "--protocol paper"],
    );
    // Both layers of the tiny model stay at 8 bits: no layer can get a dual tensor.
    fails(
        &mut quantize(&["--data-free", "--dual", "1"]),
        2,
        &["--dual 1", "0..=0"],
    );
    assert!(!q.exists(), "a refused command wrote its output");
    fails(
        ptq4(&home).args(["eval", "--model", "x", "--data", "y", "--limit", "0"]),
        2,
        &["--limit"],
    );
    fails(
        ptq4(&home).args(["fetch", "photos", "resnet-50"]),
        2,
        &["resnet-50", "efficientnet-lite0"],
    );
    assert!(!home.exists(), "nothing is fetched when a name is unknown");
}

#[test]
fn outputs_never_overwrite_inputs_or_each_other() {
    let (d, m) = scratch();
    let home = d.path().join("home");
    let before = std::fs::read(&m).unwrap();
    let dotted = d.path().join("sub/../m.safetensors");
    fails(
        ptq4(&home)
            .args(["quantize", "--data-free", "--model"])
            .arg(&m)
            .arg("-o")
            .arg(&dotted),
        2,
        &["-o", "--model", "m.safetensors"],
    );
    let q = d.path().join("q.safetensors");
    fails(
        ptq4(&home)
            .args(["quantize", "--data-free", "--model"])
            .arg(&m)
            .arg("-o")
            .arg(&q)
            .arg("--report")
            .arg(&q),
        2,
        &["--report", "-o output"],
    );
    fails(
        ptq4(&home)
            .args(["quantize", "--data-free", "--model"])
            .arg(&m)
            .arg("-o")
            .arg(home.join("models/q.safetensors")),
        2,
        &["ptq4 cache", "-o"],
    );
    assert_eq!(
        std::fs::read(&m).unwrap(),
        before,
        "the input model was changed"
    );
    assert!(!q.exists() && !home.exists() && !d.path().join("sub").exists());

    let pth = d.path().join("weights.pth");
    std::fs::write(&pth, b"not really a state dict").unwrap();
    fails(
        ptq4(&home)
            .arg("import")
            .arg(&pth)
            .args(["--arch", "efficientnet-lite0", "-o"])
            .arg(&pth),
        2,
        &["FILE input", "weights.pth"],
    );
    assert_eq!(std::fs::read(&pth).unwrap(), b"not really a state dict");
}

#[test]
fn read_only_target_is_left_alone() {
    let (d, m) = scratch();
    let q = d.path().join("q.safetensors");
    std::fs::write(&q, b"precious").unwrap();
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = fails(
        ptq4(&d.path().join("home"))
            .args(["quantize", "--data-free", "--json", "--model"])
            .arg(&m)
            .arg("-o")
            .arg(&q),
        1,
        &["q.safetensors", "read-only"],
    );
    assert_eq!(
        err.matches("read-only").count(),
        1,
        "cause printed once: {err}"
    );
    assert_eq!(std::fs::read(&q).unwrap(), b"precious");
    let mode = std::fs::metadata(&q).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444);
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
}

#[test]
fn write_errors_name_the_users_path_once() {
    let (d, m) = scratch();
    // A regular file where a folder is needed.
    let q = d.path().join("m.safetensors/q.safetensors");
    let err = fails(
        ptq4(&d.path().join("home"))
            .args(["quantize", "--data-free", "--json", "--model"])
            .arg(&m)
            .arg("-o")
            .arg(&q),
        1,
        &["q.safetensors", "creating its folder"],
    );
    assert_eq!(
        err.matches("os error").count(),
        1,
        "cause printed once: {err}"
    );
    assert!(!err.contains(".q.safetensors.tmp"), "{err}");
}

#[test]
fn stale_temporary_files_are_cleaned() {
    let (d, m) = scratch();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // PIDs above the kernel's maximum (2^22) belong to no process.
    let stale = out.join(".q.safetensors.tmp999999999");
    std::fs::write(&stale, b"half a model").unwrap();
    let keep = out.join(".q.safetensors.tmpnotapid");
    std::fs::write(&keep, b"someone else's").unwrap();
    let q = out.join("q.safetensors");
    ptq4(&d.path().join("home"))
        .args(["quantize", "--data-free", "--json", "--model"])
        .arg(&m)
        .arg("-o")
        .arg(&q)
        .assert()
        .success();
    assert!(q.is_file());
    assert!(!stale.exists(), "the stale temporary file is still there");
    assert!(keep.exists(), "a file that is not ours was removed");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
}

#[test]
fn damaged_cache_entry_is_not_used() {
    let (d, m) = scratch();
    let home = d.path().join("home");
    let (cached, bytes) = cache_model(&home, &m);
    let stale_work = home.join("tmp/efficientnet-lite0.999999999.1");
    std::fs::create_dir_all(&stale_work).unwrap();
    // A verified entry is used without fetching (no python3 on PATH proves it); the
    // interrupted fetch's work folder is removed.
    let out = ptq4(&home)
        .env("PATH", "")
        .args(["inspect", "--json", "efficientnet-lite0"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("tiny"));
    assert!(!stale_work.exists(), "interrupted fetch folder left behind");
    // Truncated: detected, reported, removed, and fetched again (which fails offline).
    std::fs::write(&cached, &bytes[..bytes.len() / 2]).unwrap();
    let out = ptq4(&home)
        .env("PATH", "")
        .args(["inspect", "--json", "efficientnet-lite0"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("failed verification"), "{err}");
    assert!(err.contains("efficientnet-lite0.safetensors"), "{err}");
    assert!(out.stdout.is_empty(), "a damaged model was used");
    assert!(!cached.exists());
    // An image folder is checked against the pinned sha256 of each file.
    let photos = home.join("data/photos");
    std::fs::create_dir_all(&photos).unwrap();
    let err = fails(
        ptq4(&home)
            .env("PATH", "")
            .args(["eval", "--model"])
            .arg(&m)
            .args(["--data", "photos"]),
        1,
        &["photos", "failed verification"],
    );
    assert!(!err.contains("already in"), "{err}");
    assert!(!photos.exists());
}

/// An output inside an input folder would overwrite or add to the user's images
/// (`-o calib/img.jpg` replaced a calibration image with a model file).
#[test]
fn outputs_inside_an_input_folder_are_refused() {
    let (d, m) = scratch();
    let home = d.path().join("home");
    let calib = d.path().join("calib");
    std::fs::create_dir(&calib).unwrap();
    let img = calib.join("cat_1.jpg");
    std::fs::write(&img, b"an image").unwrap();
    for out in [img.clone(), calib.join("q.safetensors")] {
        fails(
            ptq4(&home)
                .args(["quantize", "--backend", "cpu", "--model"])
                .arg(&m)
                .arg("--calib")
                .arg(&calib)
                .arg("-o")
                .arg(&out),
            2,
            &["-o", "inside the --calib folder"],
        );
    }
    assert_eq!(std::fs::read(&img).unwrap(), b"an image");
    let left: Vec<_> = std::fs::read_dir(&calib).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "nothing added to the folder: {left:?}");
}

/// A report that cannot be written fails the command before the model is written, so a
/// failed run leaves no output behind.
#[test]
fn unwritable_report_leaves_no_model() {
    let (d, m) = scratch();
    let q = d.path().join("q.safetensors");
    fails(
        ptq4(&d.path().join("home"))
            .args(["quantize", "--data-free", "--backend", "cpu", "--model"])
            .arg(&m)
            .arg("-o")
            .arg(&q)
            .arg("--report")
            .arg(m.join("plan.json")),
        1,
        &["plan.json"],
    );
    assert!(!q.exists(), "a model was left behind by a failed run");
}

/// With neither `PTQ4_HOME` nor `HOME` set, a fetch never writes into the working directory
/// (the cache falls back to the system temporary folder). No registry is reachable here
/// (`PATH` is emptied, so pip cannot run): the fetch fails, and the folder stays empty.
#[test]
fn no_home_never_caches_into_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("ptq4")
        .unwrap()
        .current_dir(cwd.path())
        .env_remove("PTQ4_HOME")
        .env_remove("HOME")
        .env("PATH", "")
        .args(["fetch", "photos"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "the working directory got {left:?}");
}
