//! Node attributes and the shape rules shared by constant folding and translation
//! (Reshape, Flatten, Squeeze, Unsqueeze: the same arithmetic on constants and on feature
//! maps).

use super::onnx::NodeProto;
use super::tensor::Const;
use crate::error::{Error, Result};

/// A node's attributes, looked up by name.
pub struct Attrs<'a>(pub &'a NodeProto);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&super::onnx::AttributeProto> {
        self.0.attribute.iter().find(|a| a.name() == name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).and_then(|a| a.f).unwrap_or(default)
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
    pub fn tensor(&self, name: &str) -> Option<&super::onnx::TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name).map(|a| a.floats.clone())
    }
}

/// `axis` (negative counts from the end) as an index into a rank-`rank` shape.
pub fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if !(0..r).contains(&v) {
        return Err(Error::Import(format!(
            "axis {a} out of range for rank {rank}"
        )));
    }
    Ok(v as usize)
}

/// The output shape of Reshape: `0` copies the input dimension (unless `allowzero`), one
/// `-1` takes the rest.
pub fn reshape(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let n: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| Error::Import(format!("reshape: 0 at {i} past the input")))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(Error::Import(format!("reshape to {spec:?}"))),
        }
    }
    let known = out
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Import(format!("reshape to {spec:?}: size overflows")))?;
    if let Some(i) = infer {
        if known == 0 || !n.is_multiple_of(known) {
            return Err(Error::Import(format!(
                "reshape of {input:?} to {spec:?}: sizes do not divide"
            )));
        }
        out[i] = n / known;
    } else if known != n {
        return Err(Error::Import(format!(
            "reshape of {input:?} to {spec:?}: {n} elements do not fit"
        )));
    }
    Ok(out)
}

/// Flatten's 2-D output shape around `axis`.
pub fn flatten(input: &[usize], axis_attr: i64) -> Result<Vec<usize>> {
    let a = if axis_attr == input.len() as i64 {
        input.len()
    } else {
        axis(axis_attr, input.len())?
    };
    Ok(vec![
        input[..a].iter().product(),
        input[a..].iter().product(),
    ])
}

/// The axes of Squeeze/Unsqueeze: an attribute before opset 13, an input from 13 on.
pub fn axes(node: &NodeProto, opset: i64, input: Option<&Const>) -> Result<Option<Vec<i64>>> {
    if opset < 13 {
        Ok(Attrs(node).ints("axes"))
    } else {
        input.map(|c| c.ints()).transpose()
    }
}

pub fn squeeze(input: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    match axes {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(ax) => {
            let ax: Vec<usize> = ax
                .iter()
                .map(|&a| axis(a, input.len()))
                .collect::<Result<_>>()?;
            if let Some(&a) = ax.iter().find(|&&a| input[a] != 1) {
                return Err(Error::Import(format!(
                    "squeeze of axis {a} of {input:?}, which is not 1"
                )));
            }
            Ok(input
                .iter()
                .enumerate()
                .filter(|(i, _)| !ax.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

pub fn unsqueeze(input: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let rank = input.len() + axes.len();
    let mut ax: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?;
    ax.sort_unstable();
    ax.dedup();
    if ax.len() != axes.len() {
        return Err(Error::Import(format!("unsqueeze: repeated axes {axes:?}")));
    }
    let mut out = Vec::with_capacity(rank);
    let mut it = input.iter();
    for i in 0..rank {
        if ax.contains(&i) {
            out.push(1);
        } else {
            out.push(*it.next().unwrap());
        }
    }
    Ok(out)
}

/// The output of Shape: the dimensions of `shape` from `start` to `end` (opset 15
/// attributes, clamped like slice bounds; the whole shape before).
pub fn shape_of(node: &NodeProto, shape: &[usize]) -> Const {
    let a = Attrs(node);
    let r = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(a.int("start", 0)), clamp(a.int("end", r)));
    let dims: Vec<i64> = shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Const::i(vec![dims.len()], dims)
}
