//! Architectures built in code. Each names its nodes and parameters after the source
//! framework's state dict, so imported weights map one to one.

pub mod efficientnet;
pub mod resnet;

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};

/// At most this many problems are spelled out in one error.
const MAX_LISTED: usize = 8;

/// Checks a set of named tensor shapes against an architecture's expected parameters:
/// every expected tensor present, none unknown, every shape equal. All problems found are
/// reported (the first eight spelled out) in one [`Error::Import`].
pub fn check_params<'a>(
    arch: &str,
    expected: &[(String, Vec<usize>)],
    found: impl IntoIterator<Item = (&'a str, &'a [usize])>,
) -> Result<()> {
    let found: HashMap<&str, &[usize]> = found.into_iter().collect();
    let mut problems = Vec::new();
    // Architecture order first, so the first problem listed is the earliest layer.
    for (name, want) in expected {
        match found.get(name.as_str()) {
            None => problems.push(format!("missing tensor {name} of shape {want:?}")),
            Some(&have) if have != want.as_slice() => problems.push(format!(
                "tensor {name}: {arch} expects shape {want:?}, the weights have {have:?}"
            )),
            Some(_) => {}
        }
    }
    let known: HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    let mut unknown: Vec<(&str, &[usize])> = found
        .into_iter()
        .filter(|(k, _)| !known.contains(k))
        .collect();
    unknown.sort();
    for (name, shape) in unknown {
        problems.push(format!(
            "unexpected tensor {name} of shape {shape:?} (not part of {arch})"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    let mut msg = problems
        .into_iter()
        .take(MAX_LISTED)
        .collect::<Vec<_>>()
        .join("; ");
    if n > MAX_LISTED {
        msg.push_str(&format!("; and {} more", n - MAX_LISTED));
    }
    Err(Error::Import(format!(
        "weights do not match {arch} ({n} problem(s)): {msg}"
    )))
}
