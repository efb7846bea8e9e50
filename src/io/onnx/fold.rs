//! Constant folding: evaluates a node whose inputs are all constants, so that the shape
//! subgraphs exporters write (Shape → Gather → Unsqueeze → Concat → Reshape, Cast chains,
//! ConstantOfShape weights) disappear at import and only the network remains.
//!
//! Float arithmetic is done in f64 and rounded once to f32, which for + − × ÷ of f32
//! operands equals f32 arithmetic exactly (f64 has more than 2·24 + 2 bits).

use super::attr::{self, Attrs};
use super::onnx::tensor_proto::DataType;
use super::onnx::NodeProto;
use super::tensor::{decode, Const, Data};
use crate::error::{Error, Result};
use crate::limits;

/// The ops [`eval`] folds.
pub const FOLDABLE: &[&str] = &[
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Dropout",
    "Cast",
    "Shape",
    "Size",
    "Gather",
    "Concat",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Flatten",
    "Slice",
    "Transpose",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Sqrt",
    "Reciprocal",
];

fn err(node: &NodeProto, m: impl std::fmt::Display) -> Error {
    Error::Import(format!("node {} ({}): {m}", node.name(), node.op_type()))
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Picks elements of `c` by flat source index.
fn pick(c: &Const, shape: Vec<usize>, idx: impl Iterator<Item = usize>) -> Const {
    match &c.data {
        Data::F(v) => Const::f(shape, idx.map(|i| v[i]).collect()),
        Data::I(v) => Const::i(shape, idx.map(|i| v[i]).collect()),
    }
}

/// For each element of `out` (row-major), its flat index in `src` broadcast to `out`.
fn broadcast_index(src: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let pad = out.len() - src.len();
    let ss = strides(src);
    let os = strides(out);
    (0..n)
        .map(|flat| {
            let mut i = 0;
            for (d, &o) in out.iter().enumerate() {
                if d < pad {
                    continue;
                }
                let k = (flat / os[d]) % o;
                if src[d - pad] != 1 {
                    i += k * ss[d - pad];
                }
            }
            i
        })
        .collect()
}

/// The numpy broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let y = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

fn binary(node: &NodeProto, a: &Const, b: &Const) -> Result<Const> {
    let shape = broadcast_shape(&a.shape, &b.shape)
        .ok_or_else(|| err(node, format!("shapes {:?} and {:?}", a.shape, b.shape)))?;
    limits::checked_numel(&shape, node.name())?;
    let ia = broadcast_index(&a.shape, &shape);
    let ib = broadcast_index(&b.shape, &shape);
    let op = node.op_type();
    match (&a.data, &b.data) {
        (Data::F(x), Data::F(y)) => {
            let f = |p: f64, q: f64| match op {
                "Add" => p + q,
                "Sub" => p - q,
                "Mul" => p * q,
                _ => p / q,
            };
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| f(x[i] as f64, y[j] as f64) as f32)
                .collect();
            Ok(Const::f(shape, v))
        }
        (Data::I(x), Data::I(y)) => {
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    match op {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        // Integer Div truncates toward zero (as C and onnxruntime do).
                        _ => p.checked_div(q),
                    }
                    .ok_or_else(|| {
                        err(
                            node,
                            format!("integer overflow or division by zero: {p}, {q}"),
                        )
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Const::i(shape, v))
        }
        _ => Err(err(node, "mixed integer and float operands")),
    }
}

fn unary(node: &NodeProto, a: &Const) -> Result<Const> {
    let f = match node.op_type() {
        "Neg" => |x: f64| -x,
        "Sqrt" => f64::sqrt,
        _ => |x: f64| 1.0 / x,
    };
    match &a.data {
        Data::F(v) => Ok(Const::f(
            a.shape.clone(),
            v.iter().map(|&x| f(x as f64) as f32).collect(),
        )),
        Data::I(v) if node.op_type() == "Neg" => Ok(Const::i(
            a.shape.clone(),
            v.iter()
                .map(|&x| x.checked_neg().ok_or_else(|| err(node, "integer overflow")))
                .collect::<Result<_>>()?,
        )),
        Data::I(_) => Err(err(node, "integer input")),
    }
}

fn cast(node: &NodeProto, a: &Const) -> Result<Const> {
    let to = DataType::try_from(Attrs(node).int("to", 0) as i32)
        .map_err(|_| err(node, "unknown target type"))?;
    use DataType as D;
    Ok(match to {
        D::Float | D::Double | D::Float16 | D::Bfloat16 => Const::f(a.shape.clone(), a.floats()),
        D::Bool => Const::i(
            a.shape.clone(),
            a.floats().iter().map(|&x| (x != 0.0) as i64).collect(),
        ),
        D::Int64 | D::Int32 | D::Int16 | D::Int8 | D::Uint8 | D::Uint16 | D::Uint32 => {
            match &a.data {
                Data::I(v) => Const::i(a.shape.clone(), v.clone()),
                Data::F(v) => Const::i(
                    a.shape.clone(),
                    v.iter().map(|&x| x.trunc() as i64).collect(),
                ),
            }
        }
        t => return Err(err(node, format!("cast to {}", t.as_str_name()))),
    })
}

fn gather(node: &NodeProto, data: &Const, idx: &Const) -> Result<Const> {
    let r = data.shape.len();
    let ax = attr::axis(Attrs(node).int("axis", 0), r)?;
    let n = data.shape[ax] as i64;
    let ids: Vec<usize> = idx
        .ints()?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            (0..n)
                .contains(&j)
                .then_some(j as usize)
                .ok_or_else(|| err(node, format!("index {i} out of range {n}")))
        })
        .collect::<Result<_>>()?;
    let outer: usize = data.shape[..ax].iter().product();
    let inner: usize = data.shape[ax + 1..].iter().product();
    let mut shape = data.shape[..ax].to_vec();
    shape.extend(&idx.shape);
    shape.extend(&data.shape[ax + 1..]);
    limits::checked_numel(&shape, node.name())?;
    let len = data.shape[ax];
    let src = (0..outer).flat_map(|o| {
        ids.iter()
            .flat_map(move |&k| (0..inner).map(move |i| (o * len + k) * inner + i))
    });
    Ok(pick(data, shape, src.collect::<Vec<_>>().into_iter()))
}

fn concat(node: &NodeProto, ins: &[&Const]) -> Result<Const> {
    let r = ins[0].shape.len();
    let ax = attr::axis(Attrs(node).int("axis", 0), r)?;
    let mut shape = ins[0].shape.clone();
    shape[ax] = 0;
    for c in ins {
        let same = c.shape.len() == r && (0..r).all(|d| d == ax || c.shape[d] == ins[0].shape[d]);
        if !same || std::mem::discriminant(&c.data) != std::mem::discriminant(&ins[0].data) {
            return Err(err(
                node,
                format!("inputs {:?} and {:?}", ins[0].shape, c.shape),
            ));
        }
        shape[ax] += c.shape[ax];
    }
    let outer: usize = shape[..ax].iter().product();
    let mut f = Vec::new();
    let mut i = Vec::new();
    for o in 0..outer {
        for c in ins {
            let chunk: usize = c.shape[ax..].iter().product();
            match &c.data {
                Data::F(v) => f.extend_from_slice(&v[o * chunk..(o + 1) * chunk]),
                Data::I(v) => i.extend_from_slice(&v[o * chunk..(o + 1) * chunk]),
            }
        }
    }
    Ok(match ins[0].data {
        Data::F(_) => Const::f(shape, f),
        Data::I(_) => Const::i(shape, i),
    })
}

pub fn transpose(c: &Const, perm: &[usize]) -> Const {
    let shape: Vec<usize> = perm.iter().map(|&p| c.shape[p]).collect();
    let ss = strides(&c.shape);
    let os = strides(&shape);
    let n = c.numel();
    let src = (0..n).map(|flat| {
        perm.iter()
            .enumerate()
            .map(|(d, &p)| ((flat / os[d]) % shape[d]) * ss[p])
            .sum()
    });
    pick(c, shape.clone(), src.collect::<Vec<usize>>().into_iter())
}

fn slice(node: &NodeProto, opset: i64, ins: &[Option<&Const>]) -> Result<Const> {
    let data = ins
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| err(node, "input 0 is missing"))?;
    let r = data.shape.len();
    let a = Attrs(node);
    let input = |k: usize| ins.get(k).copied().flatten().map(|c| c.ints()).transpose();
    let (starts, ends, axes, steps) = if opset < 10 {
        (
            a.ints("starts").unwrap_or_default(),
            a.ints("ends").unwrap_or_default(),
            a.ints("axes"),
            None,
        )
    } else {
        (
            input(1)?.unwrap_or_default(),
            input(2)?.unwrap_or_default(),
            input(3)?,
            input(4)?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(err(node, "starts, ends, axes and steps differ in length"));
    }
    // Per axis: (start, step, count).
    let mut sel: Vec<(i64, i64, usize)> = data.shape.iter().map(|&d| (0, 1, d)).collect();
    for k in 0..starts.len() {
        let ax = attr::axis(axes[k], r)?;
        let dim = data.shape[ax] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(err(node, "step 0"));
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (lo, hi) = if step > 0 { (0, dim) } else { (-1, dim - 1) };
        let s = norm(starts[k]).clamp(lo, hi);
        let e = norm(ends[k]).clamp(lo, hi);
        if step == i64::MIN {
            return Err(err(node, "step out of range"));
        }
        let count = if step > 0 && e > s {
            (e - s - 1) / step + 1
        } else if step < 0 && s > e {
            (s - e - 1) / -step + 1
        } else {
            0
        };
        sel[ax] = (s, step, count as usize);
    }
    let shape: Vec<usize> = sel.iter().map(|s| s.2).collect();
    let ss = strides(&data.shape);
    let os = strides(&shape);
    let n: usize = shape.iter().product();
    let src = (0..n).map(|flat| {
        (0..r)
            .map(|d| {
                let k = ((flat / os[d]) % shape[d]) as i64;
                (sel[d].0 + k * sel[d].1) as usize * ss[d]
            })
            .sum()
    });
    Ok(pick(
        data,
        shape.clone(),
        src.collect::<Vec<usize>>().into_iter(),
    ))
}

/// A `Constant` node's value: `value` (a tensor) or one of the `value_float(s)`/`value_int(s)`
/// attributes.
pub fn constant(node: &NodeProto, dir: &std::path::Path) -> Result<Const> {
    let a = Attrs(node);
    if let Some(t) = a.tensor("value") {
        return decode(t, dir);
    }
    if a.has("value_float") {
        return Ok(Const::f(vec![], vec![a.float("value_float", 0.0)]));
    }
    if let Some(v) = a.floats("value_floats") {
        return Ok(Const::f(vec![v.len()], v));
    }
    if a.has("value_int") {
        return Ok(Const::i(vec![], vec![a.int("value_int", 0)]));
    }
    if let Some(v) = a.ints("value_ints") {
        return Ok(Const::i(vec![v.len()], v));
    }
    Err(err(node, "no supported value attribute"))
}

/// Evaluates `node` on constant inputs (`None` = an omitted optional input). `Ok(None)`
/// when the op is not one that folds; `Shape` and `Size` of feature maps are handled by
/// the caller, which knows their shapes.
pub fn eval(
    node: &NodeProto,
    opset: i64,
    ins: &[Option<&Const>],
    dir: &std::path::Path,
) -> Result<Option<Const>> {
    let need = |k: usize| {
        ins.get(k)
            .copied()
            .flatten()
            .ok_or_else(|| err(node, format!("input {k} is missing")))
    };
    let a = Attrs(node);
    let out = match node.op_type() {
        "Constant" => constant(node, dir)?,
        "Identity" | "Dropout" => need(0)?.clone(),
        "Cast" => cast(node, need(0)?)?,
        "Shape" => attr::shape_of(node, &need(0)?.shape),
        "Size" => Const::i(vec![], vec![need(0)?.numel() as i64]),
        "ConstantOfShape" => {
            let shape: Vec<usize> = need(0)?
                .ints()?
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| err(node, "negative size")))
                .collect::<Result<_>>()?;
            let n = limits::checked_numel(&shape, node.name())?;
            match a.tensor("value").map(|t| decode(t, dir)).transpose()? {
                Some(Const {
                    data: Data::I(v), ..
                }) => Const::i(shape, vec![v.first().copied().unwrap_or(0); n]),
                Some(c) => Const::f(shape, vec![c.floats().first().copied().unwrap_or(0.0); n]),
                None => Const::f(shape, vec![0.0; n]),
            }
        }
        "Gather" => gather(node, need(0)?, need(1)?)?,
        "Concat" => {
            let cs: Vec<&Const> = ins.iter().flatten().copied().collect();
            if cs.is_empty() {
                return Err(err(node, "no inputs"));
            }
            concat(node, &cs)?
        }
        "Unsqueeze" | "Squeeze" => {
            let c = need(0)?;
            let axes = attr::axes(node, opset, ins.get(1).copied().flatten())?;
            let shape = if node.op_type() == "Squeeze" {
                attr::squeeze(&c.shape, axes.as_deref())?
            } else {
                attr::unsqueeze(&c.shape, &axes.ok_or_else(|| err(node, "no axes"))?)?
            };
            Const {
                shape,
                data: c.data.clone(),
            }
        }
        "Reshape" => {
            let c = need(0)?;
            let spec = if opset < 5 {
                a.ints("shape").unwrap_or_default()
            } else {
                need(1)?.ints()?
            };
            Const {
                shape: attr::reshape(&c.shape, &spec, a.int("allowzero", 0) != 0)?,
                data: c.data.clone(),
            }
        }
        "Flatten" => {
            let c = need(0)?;
            Const {
                shape: attr::flatten(&c.shape, a.int("axis", 1))?,
                data: c.data.clone(),
            }
        }
        "Slice" => slice(node, opset, ins)?,
        "Transpose" => {
            let c = need(0)?;
            let r = c.shape.len();
            let perm: Vec<usize> = match a.ints("perm") {
                Some(p) => p.iter().map(|&x| attr::axis(x, r)).collect::<Result<_>>()?,
                None => (0..r).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..r).collect::<Vec<_>>() {
                return Err(err(node, format!("perm {perm:?}")));
            }
            transpose(c, &perm)
        }
        "Add" | "Sub" | "Mul" | "Div" => binary(node, need(0)?, need(1)?)?,
        "Neg" | "Sqrt" | "Reciprocal" => unary(node, need(0)?)?,
        _ => return Ok(None),
    };
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A foldable op given fewer inputs than it needs (a malformed file) is an error, never
    /// a panic.
    #[test]
    fn missing_inputs_are_errors() {
        for op in FOLDABLE {
            let node = NodeProto {
                op_type: Some(op.to_string()),
                name: Some("n".into()),
                ..Default::default()
            };
            if *op == "Constant" {
                continue; // no inputs by definition; its value attribute is checked instead
            }
            let r = eval(&node, 13, &[], std::path::Path::new("."));
            assert!(r.is_err(), "{op} with no inputs: {r:?}");
        }
    }
}
