//! `IntModel::forward` with the integer kernels ([`Exec::Int`](super::int_model::Exec)):
//! values are channel-minor (NHWC) `u8` code maps between layers, layer weights were packed
//! once when the model was bound ([`CpuLayer`]), and every layer finishes with the shared
//! requantization rule on its exact accumulators (`cpu::int::epi`), so codes and logits equal
//! the exact simulation bit for bit.
//!
//! Batches of several images run every step up to the first linear layer image by image,
//! one image per rayon task (kernels on one thread: no fork-join per small kernel, and an
//! image's activations stay in cache); the remaining steps (the classifier) run on the whole
//! batch. A single image runs every kernel in parallel instead.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::engine::cpu::int::{epi, transpose, CpuLayer, Isa};
use crate::engine::exec::int_model::{pool_out_hw, pool_taps, IntModel, Lut, StepKind};
use crate::engine::requant::{
    act_code, add_codes, gap_code, gap_real, lrn_code, mul_codes, requant_code,
};
use crate::error::{Error, Result};
use crate::graph::op::lrn_window;
use crate::graph::{shuffle_source, Activation, Graph, Pool};
use crate::quant::QParams;
use crate::tensor::Tensor;

/// An NHWC code map of `n` images.
#[derive(Clone, Debug)]
struct Map {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    codes: Vec<u8>,
    params: QParams,
}

enum Value {
    Map(Map),
    Logits(Tensor),
}

impl IntModel {
    /// Runs the integer kernels with instruction set `isa` (tests force each one).
    pub fn forward_int(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        self.forward_int_profiled(x, isa).map(|(t, _)| t)
    }

    /// [`IntModel::forward_int`], also returning the seconds spent in each step (summed over
    /// the images of a batch, so CPU time in the image-parallel part).
    pub fn forward_int_profiled(&self, x: &Tensor, isa: Isa) -> Result<(Tensor, Vec<f64>)> {
        let (t, times) = self.logits_int(x, isa)?;
        Ok((self.finish(t), times))
    }

    fn logits_int(&self, x: &Tensor, isa: Isa) -> Result<(Tensor, Vec<f64>)> {
        self.check_input(x)?;
        let mut times = vec![0.0; self.steps.len()];
        let n = x.shape[0];
        let cut = if n > 1 {
            self.steps
                .iter()
                .position(|s| matches!(&s.kind, StepKind::Layer(l) if l.conv.is_none()))
                .unwrap_or(self.steps.len())
        } else {
            0
        };
        let readers = self.reader_counts();
        let mut values: HashMap<&str, Map> = HashMap::new();
        let mut remaining = readers.clone();
        if cut > 0 {
            let per: Vec<(HashMap<&str, Value>, Vec<f64>)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let mut v = HashMap::new();
                    v.insert(Graph::INPUT, Value::Map(self.input_map(x, i, i + 1, isa)));
                    let mut rem = readers.clone();
                    let mut t = vec![0.0; self.steps.len()];
                    self.run_steps(0..cut, &mut v, &mut rem, isa, false, &mut t)?;
                    Ok((v, t))
                })
                .collect::<Result<_>>()?;
            for s in &self.steps[..cut] {
                for i in &s.inputs {
                    if let Some(r) = remaining.get_mut(i.as_str()) {
                        *r -= 1;
                    }
                }
            }
            let mut merged: HashMap<&str, Value> = HashMap::new();
            for (img, t) in per {
                times.iter_mut().zip(t).for_each(|(a, b)| *a += b);
                for (k, v) in img {
                    match (merged.get_mut(k), v) {
                        (None, v) => {
                            merged.insert(k, v);
                        }
                        (Some(Value::Map(m)), Value::Map(v)) => {
                            m.n += v.n;
                            m.codes.extend_from_slice(&v.codes);
                        }
                        (Some(Value::Logits(t)), Value::Logits(v)) => {
                            t.shape[0] += v.shape[0];
                            t.data.extend_from_slice(&v.data);
                        }
                        _ => return Err(Error::Engine(format!("value {k} changed kind"))),
                    }
                }
            }
            if let Some(Value::Logits(t)) = merged.remove(self.output.as_str()) {
                return Ok((t, times));
            }
            for (k, v) in merged {
                if let Value::Map(m) = v {
                    values.insert(k, m);
                }
            }
        } else {
            values.insert(Graph::INPUT, self.input_map(x, 0, n, isa));
        }
        let mut v: HashMap<&str, Value> = values
            .into_iter()
            .map(|(k, m)| (k, Value::Map(m)))
            .collect();
        let range = cut..self.steps.len();
        self.run_steps(range, &mut v, &mut remaining, isa, cut == 0, &mut times)?;
        match v.remove(self.output.as_str()) {
            Some(Value::Logits(t)) => Ok((t, times)),
            _ => Err(Error::Engine(format!(
                "output {} was not produced",
                self.output
            ))),
        }
    }

    /// Images `i0..i1` of `x`, quantized, as an NHWC map.
    fn input_map(&self, x: &Tensor, i0: usize, i1: usize, isa: Isa) -> Map {
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
        let p = self.input;
        let len = (i1 - i0) * c * h * w;
        let mut planar = vec![0u8; len];
        epi::quantize_slice(isa, &p, &x.data[i0 * c * h * w..][..len], &mut planar);
        Map {
            n: i1 - i0,
            h,
            w,
            c,
            codes: transpose(&planar, i1 - i0, c, h * w),
            params: p,
        }
    }

    fn run_steps<'s>(
        &'s self,
        range: std::ops::Range<usize>,
        values: &mut HashMap<&'s str, Value>,
        remaining: &mut HashMap<&'s str, usize>,
        isa: Isa,
        par: bool,
        times: &mut [f64],
    ) -> Result<()> {
        for si in range {
            let t0 = std::time::Instant::now();
            let s = &self.steps[si];
            let ins: Vec<&Map> = s
                .inputs
                .iter()
                .map(|i| match values.get(i.as_str()) {
                    Some(Value::Map(m)) => Ok(m),
                    _ => Err(Error::Engine(format!("value {i} is not available"))),
                })
                .collect::<Result<_>>()?;
            let y = match &s.kind {
                StepKind::Layer(l) => {
                    let cl = self.cpu[si]
                        .as_ref()
                        .ok_or_else(|| Error::Engine(format!("layer {} not packed", s.name)))?;
                    layer(cl, &l.ep, ins[0], isa, par, l.conv.is_none())?
                }
                StepKind::Add => Value::Map(add(&ins, s.out)?),
                StepKind::GlobalAvgPool => gap(ins[0], s.out)?,
                StepKind::MaxPool(p) => Value::Map(pool(ins[0], p, true, s.out, &s.name)?),
                StepKind::AvgPool(p) => Value::Map(pool(ins[0], p, false, s.out, &s.name)?),
                StepKind::Concat => Value::Map(concat(&ins, s.out)?),
                StepKind::Act(a) => Value::Map(activation(ins[0], *a, s.out)?),
                StepKind::Lut(t) => Value::Map(table(ins[0], t, s.out)?),
                StepKind::Flatten => Value::Map(flatten(ins[0])),
                StepKind::Mul => Value::Map(mul(ins[0], ins[1], s.out)?),
                StepKind::Shuffle(g) => Value::Map(shuffle(ins[0], *g)),
                StepKind::Lrn { size, table } => Value::Map(lrn(ins[0], *size, table, s.out)?),
            };
            for i in &s.inputs {
                if let Some(r) = remaining.get_mut(i.as_str()) {
                    *r -= 1;
                    if *r == 0 {
                        values.remove(i.as_str());
                    }
                }
            }
            values.insert(s.name.as_str(), y);
            times[si] += t0.elapsed().as_secs_f64();
        }
        Ok(())
    }
}

fn layer(
    cl: &CpuLayer,
    ep: &crate::engine::requant::Epilogue,
    x: &Map,
    isa: Isa,
    par: bool,
    linear: bool,
) -> Result<Value> {
    let c = &cl.conv;
    let flat;
    let x = if linear && x.h * x.w > 1 {
        flat = flatten(x);
        &flat
    } else {
        x
    };
    if x.c * x.h * x.w != c.in_channels * if linear { 1 } else { x.h * x.w } {
        return Err(Error::Engine(format!(
            "integer layer: input {}×{}×{} does not match {c:?}",
            x.h, x.w, x.c
        )));
    }
    let (oh, ow) = crate::engine::cpu::int::conv_out_hw(c, x.h, x.w)?;
    let co = c.out_channels;
    let len = x.n * oh * ow * co;
    let dims = (x.n, x.h, x.w);
    let zx = x.params.zero_point;
    match ep.out {
        Some(q) => {
            let mut codes = vec![0u8; len];
            let sink =
                |a: &[i32], a2: Option<&[i32]>, o: &mut [u8]| epi::codes_rows(isa, ep, a, a2, o);
            cl.run(isa, par, &x.codes, dims, zx, (oh, ow), &mut codes, &sink);
            Ok(Value::Map(Map {
                n: x.n,
                h: oh,
                w: ow,
                c: co,
                codes,
                params: q,
            }))
        }
        None => {
            let mut reals = vec![0f32; len];
            let sink = |a: &[i32], a2: Option<&[i32]>, o: &mut [f32]| epi::reals_rows(ep, a, a2, o);
            cl.run(isa, par, &x.codes, dims, zx, (oh, ow), &mut reals, &sink);
            let shape = if linear {
                vec![x.n, co]
            } else {
                vec![x.n, co, oh, ow]
            };
            Tensor::from_vec(&shape, transpose(&reals, x.n, oh * ow, co)).map(Value::Logits)
        }
    }
}

/// NCHW flattening order: `[n, c·h·w]` as a 1×1 map.
fn flatten(x: &Map) -> Map {
    let codes = if x.h * x.w > 1 {
        transpose(&x.codes, x.n, x.h * x.w, x.c)
    } else {
        x.codes.clone()
    };
    Map {
        n: x.n,
        h: 1,
        w: 1,
        c: x.c * x.h * x.w,
        codes,
        params: x.params,
    }
}

/// Residual add; two inputs of at most 8-bit codes go through a table of every code pair
/// (each entry computed by the shared rule, so identical) when that is smaller than the map.
fn add(ins: &[&Map], out: Option<QParams>) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("add without an output quantizer".into()))?;
    let a = ins[0];
    if ins
        .iter()
        .any(|t| (t.n, t.h, t.w, t.c) != (a.n, a.h, a.w, a.c))
    {
        return Err(Error::Engine("integer add: input shapes differ".into()));
    }
    let len = a.codes.len();
    let codes = match ins {
        [a, b] if ((a.params.qmax() + 1) * (b.params.qmax() + 1)) as usize <= len => {
            let nb = b.params.qmax() as usize + 1;
            let table: Vec<u8> = (0..(a.params.qmax() as usize + 1) * nb)
                .map(|i| {
                    let (qa, qb) = ((i / nb) as u8, (i % nb) as u8);
                    add_codes([(a.params, qa), (b.params, qb)], &out)
                })
                .collect();
            a.codes
                .iter()
                .zip(&b.codes)
                .map(|(&qa, &qb)| table[qa as usize * nb + qb as usize])
                .collect()
        }
        _ => (0..len)
            .map(|i| add_codes(ins.iter().map(|t| (t.params, t.codes[i])), &out))
            .collect(),
    };
    Ok(Map {
        n: a.n,
        h: a.h,
        w: a.w,
        c: a.c,
        codes,
        params: out,
    })
}

/// Global average pooling of an NHWC map (exact integer sums per channel): codes, or the
/// `[n, c]` f32 logits without an output quantizer.
fn gap(x: &Map, out: Option<QParams>) -> Result<Value> {
    let (hw, c) = (x.h * x.w, x.c);
    let z = x.params.zero_point as i64;
    let mut sums = Vec::with_capacity(x.n * c);
    for img in x.codes.chunks_exact(hw * c) {
        let mut s = vec![-z * hw as i64; c];
        for px in img.chunks_exact(c) {
            for (s, &q) in s.iter_mut().zip(px) {
                *s += q as i64;
            }
        }
        sums.extend(s);
    }
    let Some(out) = out else {
        let data = sums.iter().map(|&s| gap_real(&x.params, s, hw)).collect();
        return Tensor::from_vec(&[x.n, c], data).map(Value::Logits);
    };
    Ok(Value::Map(Map {
        n: x.n,
        h: 1,
        w: 1,
        c,
        codes: sums
            .iter()
            .map(|&s| gap_code(&x.params, s, hw, &out))
            .collect(),
        params: out,
    }))
}

/// Max (`max`) or average pooling of an NHWC map: per output pixel and channel, the max of
/// the in-bounds codes requantized (`requant_code`; 0 for a window entirely in padding), or
/// the exact centred sum over the in-bounds taps through `gap_code` with their count.
fn pool(x: &Map, p: &Pool, max: bool, out: Option<QParams>, name: &str) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("pooling without an output quantizer".into()))?;
    let (oh, ow) = pool_out_hw(p, x.h, x.w, name)?;
    let ty = pool_taps(oh, x.h, p.kernel[0], p.stride[0], p.padding[0]);
    let tx = pool_taps(ow, x.w, p.kernel[1], p.stride[1], p.padding[1]);
    let (c, z) = (x.c, x.params.zero_point as i64);
    let mut codes = Vec::with_capacity(x.n * oh * ow * c);
    let mut acc = vec![0i64; c];
    for img in x.codes.chunks_exact(x.h * x.w * c) {
        for &(y0, y1) in &ty {
            for &(x0, x1) in &tx {
                acc.fill(0);
                for iy in y0..y1 {
                    for px in img[(iy * x.w + x0) * c..(iy * x.w + x1) * c].chunks_exact(c) {
                        for (a, &q) in acc.iter_mut().zip(px) {
                            *a = if max {
                                (*a).max(q as i64)
                            } else {
                                *a + q as i64 - z
                            };
                        }
                    }
                }
                let count = (y1 - y0) * (x1 - x0);
                codes.extend(acc.iter().map(|&a| {
                    if max {
                        requant_code(&x.params, a as u8, &out)
                    } else {
                        gap_code(&x.params, a, p.divisor(count).max(1), &out)
                    }
                }));
            }
        }
    }
    Ok(Map {
        n: x.n,
        h: oh,
        w: ow,
        c,
        codes,
        params: out,
    })
}

/// Concatenation of NHWC maps along channels, each input's codes requantized to the output
/// quantizer (`requant_code`, through a table of its codes).
fn concat(ins: &[&Map], out: Option<QParams>) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("concat without an output quantizer".into()))?;
    let a = ins[0];
    if ins.iter().any(|t| (t.n, t.h, t.w) != (a.n, a.h, a.w)) {
        return Err(Error::Engine("integer concat: input sizes differ".into()));
    }
    let c: usize = ins.iter().map(|t| t.c).sum();
    let tables: Vec<Vec<u8>> = ins
        .iter()
        .map(|t| {
            (0..=t.params.qmax().max(0) as u8)
                .map(|q| requant_code(&t.params, q, &out))
                .collect()
        })
        .collect();
    let mut codes = Vec::with_capacity(a.n * a.h * a.w * c);
    for px in 0..a.n * a.h * a.w {
        for (t, table) in ins.iter().zip(&tables) {
            codes.extend(
                t.codes[px * t.c..(px + 1) * t.c]
                    .iter()
                    .map(|&q| table[q as usize]),
            );
        }
    }
    Ok(Map {
        n: a.n,
        h: a.h,
        w: a.w,
        c,
        codes,
        params: out,
    })
}

/// A standalone activation on a map, through a table of `act_code` over the input's codes.
fn activation(x: &Map, act: Activation, out: Option<QParams>) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("activation without an output quantizer".into()))?;
    let table: Vec<u8> = (0..=x.params.qmax().max(0) as u8)
        .map(|q| act_code(&x.params, q, act, &out))
        .collect();
    Ok(Map {
        codes: x.codes.iter().map(|&q| table[q as usize]).collect(),
        params: out,
        ..*x
    })
}

/// Product of NHWC maps: `b` of `a`'s size or one code per image and channel (a gate),
/// each pair through `mul_codes`.
fn mul(a: &Map, b: &Map, out: Option<QParams>) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("mul without an output quantizer".into()))?;
    let gate = (b.n, b.h * b.w, b.c) == (a.n, 1, a.c);
    if (b.n, b.h, b.w, b.c) != (a.n, a.h, a.w, a.c) && !gate {
        return Err(Error::Engine("integer mul: input shapes differ".into()));
    }
    let px = a.h * a.w * a.c;
    let codes = a
        .codes
        .iter()
        .enumerate()
        .map(|(i, &qa)| {
            let qb = if gate {
                b.codes[(i / px) * a.c + i % a.c]
            } else {
                b.codes[i]
            };
            mul_codes(&a.params, qa, &b.params, qb, &out)
        })
        .collect();
    Ok(Map {
        codes,
        params: out,
        ..*a
    })
}

/// Channel shuffle of an NHWC map: a permutation of each pixel's codes.
fn shuffle(x: &Map, groups: usize) -> Map {
    let c = x.c;
    let src: Vec<usize> = (0..c).map(|o| shuffle_source(c, groups, o)).collect();
    let codes = x
        .codes
        .chunks_exact(c)
        .flat_map(|px| src.iter().map(move |&s| px[s]))
        .collect();
    Map { codes, ..*x }
}
/// Codes of an NHWC map through the tables of `t` (channel = index mod C).
fn table(x: &Map, t: &Lut, out: Option<QParams>) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("table without an output quantizer".into()))?;
    let c = x.c.max(1);
    Ok(Map {
        codes: x
            .codes
            .iter()
            .enumerate()
            .map(|(i, &q)| t.code(i % c, q))
            .collect(),
        params: out,
        ..*x
    })
}

/// LRN of an NHWC map: per pixel, the exact i32 sum of squared centred codes over each
/// channel's window indexes the host table (`requant::lrn_code`).
fn lrn(x: &Map, size: usize, table: &[f32], out: Option<QParams>) -> Result<Map> {
    let out = out.ok_or_else(|| Error::Engine("LRN without an output quantizer".into()))?;
    let (c, z) = (x.c, x.params.zero_point);
    let mut codes = vec![0u8; x.codes.len()];
    let mut v = vec![0i32; c];
    for (px, o) in x.codes.chunks_exact(c).zip(codes.chunks_exact_mut(c)) {
        v.iter_mut().zip(px).for_each(|(v, &q)| *v = q as i32 - z);
        for (ch, d) in o.iter_mut().enumerate() {
            let (lo, hi) = lrn_window(ch, c, size);
            let sq: i32 = v[lo..hi].iter().map(|&t| t * t).sum();
            *d = lrn_code(&x.params, v[ch], table[sq as usize], &out);
        }
    }
    Ok(Map {
        codes,
        params: out,
        ..*x
    })
}
