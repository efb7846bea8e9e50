//! The exact simulation of integer execution (`--exec sim`): an implementation independent
//! of the integer kernels (`engine::cpu::int`), used to cross-check them code for code.
//!
//! Scales are factored out of the sums: per layer it computes acc = Σ (q_w − z_w)·(q_x − z_x)
//! with float arithmetic on the unsigned codes and quantizers of the plan, as an im2col
//! (padding taps hold q_x − z_x = 0, the real 0) followed by a `matrixmultiply` GEMM. Every
//! product and every partial sum is an integer; when K·max|q_w − z_w|·max|q_x − z_x| < 2^24
//! all of them are exact in f32 whatever the summation order (and FMA use), otherwise the
//! layer runs in f64 (exact below 2^53). The accumulator then goes through the shared
//! `engine::requant::Epilogue` as its correctly rounded f32 value, like the integer path's
//! `acc as f32`. Its GPU twin is `engine::gpu::conv_exact` (same sums, chunked into exact
//! f32 partial sums and an i32 total where this file uses f64).

use std::collections::HashMap;

use super::int_model::{pool_out_hw, pool_taps, IntLayer, IntModel, StepKind};
use crate::engine::cpu::int::{self, QTensor};
use crate::engine::exact::exact_in_f32;
use crate::engine::requant::{
    act_code, add_codes, gap_code, gap_real, lrn_code, mul_codes, requant_code,
};
use crate::error::{Error, Result};
use crate::graph::op::lrn_window;
use crate::graph::{shuffle_source, Conv2d, Graph, Pool};
use crate::quant::QParams;
use crate::tensor::Tensor;

trait Real: Copy + Default + Send + Sync {
    fn of(v: i32) -> Self;
    fn to_f32(self) -> f32;
    /// c (m × n, row-major) = a (m × k) · b (k × n), both row-major.
    fn gemm(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]);
}

impl Real for f32 {
    fn of(v: i32) -> Self {
        v as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        // SAFETY: the three slices hold at least m·k, k·n and m·n elements (asserted), laid
        // out row-major with the strides given.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }
}

impl Real for f64 {
    fn of(v: i32) -> Self {
        v as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn gemm(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        // SAFETY: as for f32 above.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    }
}

/// Accumulators `[N, CO, OH, OW]` (as f32) of a conv of quantized `x` with unsigned weight
/// `codes` (layout `[CO, CI/G, KH, KW]`) and per-channel `params`.
pub fn conv2d_acc(x: &QTensor, codes: &[u8], params: &[QParams], c: &Conv2d) -> Result<Vec<f32>> {
    if exact_in_f32(codes, params, &x.params) {
        conv_generic::<f32>(x, codes, params, c)
    } else {
        conv_generic::<f64>(x, codes, params, c)
    }
}

fn conv_generic<T: Real>(
    x: &QTensor,
    codes: &[u8],
    params: &[QParams],
    c: &Conv2d,
) -> Result<Vec<f32>> {
    let [n, ci, h, w] = x.shape[..] else {
        return Err(Error::Engine(format!(
            "exact conv: input shape {:?}",
            x.shape
        )));
    };
    let (oh, ow) = c
        .out_hw(h, w)
        .ok_or_else(|| Error::Engine(format!("exact conv: window does not fit {h}×{w}")))?;
    let g = c.groups.max(1);
    let (cig, cog) = (ci / g, c.out_channels / g);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let k = cig * kh * kw;
    if ci != c.in_channels || codes.len() != c.out_channels * k || params.len() != c.out_channels {
        return Err(Error::Engine(
            "exact conv: weights do not match the layer".into(),
        ));
    }
    let wf: Vec<T> = codes
        .chunks(k)
        .zip(params)
        .flat_map(|(row, p)| row.iter().map(move |&q| T::of(q as i32 - p.zero_point)))
        .collect();
    let zx = x.params.zero_point;
    let p = oh * ow;
    let mut out = vec![0f32; n * c.out_channels * p];
    let mut cols = vec![T::default(); k * p];
    let mut acc = vec![T::default(); cog * p];
    for img in 0..n {
        for gi in 0..g {
            for (kr, col) in cols.chunks_mut(p).enumerate() {
                let (i, ky, kx) = (kr / (kh * kw), kr / kw % kh, kr % kw);
                let chan = gi * cig + i;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize
                            - c.padding[0] as isize;
                        let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize
                            - c.padding[1] as isize;
                        let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                        col[oy * ow + ox] = if inside {
                            let q =
                                x.codes[((img * ci + chan) * h + iy as usize) * w + ix as usize];
                            T::of(q as i32 - zx)
                        } else {
                            T::default()
                        };
                    }
                }
            }
            T::gemm(cog, k, p, &wf[gi * cog * k..], &cols, &mut acc);
            let o = &mut out[(img * c.out_channels + gi * cog) * p..][..cog * p];
            o.iter_mut().zip(&acc).for_each(|(d, &s)| *d = s.to_f32());
        }
    }
    Ok(out)
}

/// Accumulators `[N, O]` (as f32) of a linear layer on quantized `[N, F]` input.
pub fn linear_acc(x: &QTensor, codes: &[u8], params: &[QParams]) -> Result<Vec<f32>> {
    if exact_in_f32(codes, params, &x.params) {
        linear_generic::<f32>(x, codes, params)
    } else {
        linear_generic::<f64>(x, codes, params)
    }
}

fn linear_generic<T: Real>(x: &QTensor, codes: &[u8], params: &[QParams]) -> Result<Vec<f32>> {
    let n = x.shape.first().copied().unwrap_or(0);
    let o = params.len();
    let f = codes.len() / o.max(1);
    if n == 0 || x.codes.len() != n * f {
        return Err(Error::Engine(format!(
            "exact linear: input {:?} for {o}×{f} weights",
            x.shape
        )));
    }
    let zx = x.params.zero_point;
    let xf: Vec<T> = x.codes.iter().map(|&q| T::of(q as i32 - zx)).collect();
    // Wᵀ as f × o so that out = X (n × f) · Wᵀ.
    let mut wt = vec![T::default(); f * o];
    for (r, (row, p)) in codes.chunks(f).zip(params).enumerate() {
        for (j, &q) in row.iter().enumerate() {
            wt[j * o + r] = T::of(q as i32 - p.zero_point);
        }
    }
    let mut acc = vec![T::default(); n * o];
    T::gemm(n, f, o, &xf, &wt, &mut acc);
    Ok(acc.into_iter().map(Real::to_f32).collect())
}

impl IntModel {
    /// Runs the model under the exact simulation on an f32 NCHW batch and returns the f32
    /// logits.
    pub fn forward_exact(&self, x: &Tensor) -> Result<Tensor> {
        let mut values: HashMap<&str, QTensor> = HashMap::new();
        values.insert(Graph::INPUT, self.quantize_input(x)?);
        let mut remaining = self.reader_counts();
        for s in &self.steps {
            let ins: Vec<&QTensor> = s
                .inputs
                .iter()
                .map(|i| {
                    values
                        .get(i.as_str())
                        .ok_or_else(|| Error::Engine(format!("value {i} is not available")))
                })
                .collect::<Result<_>>()?;
            let y = match &s.kind {
                StepKind::Layer(l) => {
                    let (acc, acc2, shape) = exact_acc(l, ins[0])?;
                    let Some(out) = s.out else {
                        return logits(l, &acc, acc2.as_deref(), shape).map(|t| self.finish(t));
                    };
                    let codes = requantize(l, &acc, acc2.as_deref(), &shape);
                    QTensor {
                        shape,
                        codes,
                        params: out,
                    }
                }
                StepKind::Add => add(&ins, s.out)?,
                StepKind::GlobalAvgPool => match s.out {
                    Some(out) => gap(ins[0], out)?,
                    None => return gap_logits(ins[0]).map(|t| self.finish(t)),
                },
                StepKind::MaxPool(p) => pool(ins[0], p, true, s.out, &s.name)?,
                StepKind::AvgPool(p) => pool(ins[0], p, false, s.out, &s.name)?,
                StepKind::Concat => concat(&ins, s.out)?,
                StepKind::Act(a) => {
                    let x = ins[0];
                    let out = s.out.ok_or_else(|| {
                        Error::Engine("activation without an output quantizer".into())
                    })?;
                    QTensor {
                        shape: x.shape.clone(),
                        codes: x
                            .codes
                            .iter()
                            .map(|&q| act_code(&x.params, q, *a, &out))
                            .collect(),
                        params: out,
                    }
                }
                StepKind::Mul => mul(ins[0], ins[1], s.out)?,
                StepKind::Shuffle(g) => shuffle(ins[0], *g)?,
                StepKind::Lut(t) => {
                    let x = ins[0];
                    let out = s
                        .out
                        .ok_or_else(|| Error::Engine("table without an output quantizer".into()))?;
                    // NCHW (or [N, C]): channel = (index / plane) mod C.
                    let c = x.shape.get(1).copied().unwrap_or(1).max(1);
                    let plane = x.shape.get(2..).map_or(1, |r| r.iter().product::<usize>());
                    QTensor {
                        shape: x.shape.clone(),
                        codes: x
                            .codes
                            .iter()
                            .enumerate()
                            .map(|(i, &q)| t.code(i / plane.max(1) % c, q))
                            .collect(),
                        params: out,
                    }
                }
                StepKind::Lrn { size, table } => lrn(ins[0], *size, table, s.out)?,
                StepKind::Flatten => {
                    let n = ins[0].shape[0];
                    QTensor {
                        shape: vec![n, ins[0].codes.len() / n.max(1)],
                        ..ins[0].clone()
                    }
                }
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
        }
        Err(Error::Engine(format!(
            "output {} was not produced",
            self.output
        )))
    }
}

type Acc = (Vec<f32>, Option<Vec<f32>>, Vec<usize>);

/// The simulation's accumulators of a layer as f32 values (exact integers, correctly
/// rounded), and the shape.
fn exact_acc(l: &IntLayer, x: &QTensor) -> Result<Acc> {
    let n = x.shape[0];
    let shape = match &l.conv {
        Some(c) => {
            let (_, _, h, w) = x.dims()?;
            let (oh, ow) = int::conv_out_hw(c, h, w)?;
            vec![n, c.out_channels, oh, ow]
        }
        None => vec![n, l.w.cout],
    };
    let second = l.plan.second.as_ref();
    let (acc, acc2) = match &l.conv {
        Some(c) => (
            conv2d_acc(x, &l.plan.codes, &l.plan.params, c)?,
            second
                .map(|(p2, c2)| conv2d_acc(x, c2, p2, c))
                .transpose()?,
        ),
        None => (
            linear_acc(x, &l.plan.codes, &l.plan.params)?,
            second.map(|(p2, c2)| linear_acc(x, c2, p2)).transpose()?,
        ),
    };
    Ok((acc, acc2, shape))
}

fn plane_of(shape: &[usize]) -> usize {
    shape[2..].iter().product::<usize>().max(1)
}

/// Output codes of a layer from its accumulators.
pub fn requantize(l: &IntLayer, acc: &[f32], acc2: Option<&[f32]>, shape: &[usize]) -> Vec<u8> {
    l.ep.codes(acc, acc2, plane_of(shape))
}

fn logits(l: &IntLayer, acc: &[f32], acc2: Option<&[f32]>, shape: Vec<usize>) -> Result<Tensor> {
    let data = l.ep.reals(acc, acc2, plane_of(&shape));
    Tensor::from_vec(&shape, data)
}

fn add(ins: &[&QTensor], out: Option<QParams>) -> Result<QTensor> {
    let out = out.ok_or_else(|| Error::Engine("add without an output quantizer".into()))?;
    let first = ins[0];
    if ins.iter().any(|t| t.shape != first.shape) {
        return Err(Error::Engine("integer add: input shapes differ".into()));
    }
    let codes = (0..first.codes.len())
        .map(|i| add_codes(ins.iter().map(|t| (t.params, t.codes[i])), &out))
        .collect();
    Ok(QTensor {
        shape: first.shape.clone(),
        codes,
        params: out,
    })
}

/// Global average pooling as the logits: `[n, c]` f32 means (`gap_real`).
fn gap_logits(x: &QTensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims()?;
    let z = x.params.zero_point as i64;
    let data = x
        .codes
        .chunks(h * w)
        .map(|pl| gap_real(&x.params, pl.iter().map(|&q| q as i64 - z).sum(), h * w))
        .collect();
    Tensor::from_vec(&[n, c], data)
}

fn gap(x: &QTensor, out: QParams) -> Result<QTensor> {
    let (n, c, h, w) = x.dims()?;
    let z = x.params.zero_point as i64;
    let codes = x
        .codes
        .chunks(h * w)
        .map(|pl| {
            let s: i64 = pl.iter().map(|&q| q as i64 - z).sum();
            gap_code(&x.params, s, h * w, &out)
        })
        .collect();
    Ok(QTensor {
        shape: vec![n, c, 1, 1],
        codes,
        params: out,
    })
}

/// Max or average pooling of NCHW codes, window by window over the in-bounds taps (the
/// shared rules: `requant_code` of the max code, 0 for an empty window; `gap_code` of the
/// centred sum with the in-bounds count).
fn pool(x: &QTensor, p: &Pool, max: bool, out: Option<QParams>, name: &str) -> Result<QTensor> {
    let out = out.ok_or_else(|| Error::Engine("pooling without an output quantizer".into()))?;
    let (n, c, h, w) = x.dims()?;
    let (oh, ow) = pool_out_hw(p, h, w, name)?;
    let ty = pool_taps(oh, h, p.kernel[0], p.stride[0], p.padding[0]);
    let tx = pool_taps(ow, w, p.kernel[1], p.stride[1], p.padding[1]);
    let z = x.params.zero_point as i64;
    let mut codes = Vec::with_capacity(n * c * oh * ow);
    for pl in x.codes.chunks(h * w) {
        for &(y0, y1) in &ty {
            for &(x0, x1) in &tx {
                let taps = (y0..y1).flat_map(|iy| pl[iy * w + x0..iy * w + x1].iter());
                codes.push(if max {
                    let m = taps.copied().max().unwrap_or(0);
                    requant_code(&x.params, m, &out)
                } else {
                    let s: i64 = taps.map(|&q| q as i64 - z).sum();
                    gap_code(&x.params, s, p.divisor((y1 - y0) * (x1 - x0)).max(1), &out)
                });
            }
        }
    }
    Ok(QTensor {
        shape: vec![n, c, oh, ow],
        codes,
        params: out,
    })
}

/// Concatenation of NCHW codes along channels, code by code through `requant_code`.
fn concat(ins: &[&QTensor], out: Option<QParams>) -> Result<QTensor> {
    let out = out.ok_or_else(|| Error::Engine("concat without an output quantizer".into()))?;
    let (n, _, h, w) = ins[0].dims()?;
    let mut c = 0;
    for t in ins {
        let (tn, tc, th, tw) = t.dims()?;
        if (tn, th, tw) != (n, h, w) {
            return Err(Error::Engine("integer concat: input sizes differ".into()));
        }
        c += tc;
    }
    let mut codes = Vec::with_capacity(n * c * h * w);
    for img in 0..n {
        for t in ins {
            let per = t.codes.len() / n;
            codes.extend(
                t.codes[img * per..(img + 1) * per]
                    .iter()
                    .map(|&q| requant_code(&t.params, q, &out)),
            );
        }
    }
    Ok(QTensor {
        shape: vec![n, c, h, w],
        codes,
        params: out,
    })
}

/// Product of NCHW code tensors: `b` of `a`'s size or one code per image and channel (a
/// gate, broadcast over the plane), each pair through `mul_codes`.
fn mul(a: &QTensor, b: &QTensor, out: Option<QParams>) -> Result<QTensor> {
    let out = out.ok_or_else(|| Error::Engine("mul without an output quantizer".into()))?;
    let (n, c, h, w) = a.dims()?;
    let plane = if b.codes.len() == a.codes.len() {
        1
    } else if b.codes.len() == n * c {
        h * w
    } else {
        return Err(Error::Engine("exact mul: input shapes differ".into()));
    };
    let codes = a
        .codes
        .iter()
        .enumerate()
        .map(|(i, &qa)| mul_codes(&a.params, qa, &b.params, b.codes[i / plane], &out))
        .collect();
    Ok(QTensor {
        shape: a.shape.clone(),
        codes,
        params: out,
    })
}

/// LRN of NCHW codes: the window's squared centred codes summed in f32 (exact: every sum is
/// an integer below the table length, at most 2^24) index the host table
/// (`requant::lrn_code`).
fn lrn(x: &QTensor, size: usize, table: &[f32], out: Option<QParams>) -> Result<QTensor> {
    let out = out.ok_or_else(|| Error::Engine("LRN without an output quantizer".into()))?;
    let (n, c, h, w) = x.dims()?;
    let (plane, z) = (h * w, x.params.zero_point);
    let v: Vec<f32> = x.codes.iter().map(|&q| (q as i32 - z) as f32).collect();
    let mut codes = Vec::with_capacity(x.codes.len());
    for img in 0..n {
        let base = img * c * plane;
        for ch in 0..c {
            let (lo, hi) = lrn_window(ch, c, size);
            for p in 0..plane {
                let sq: f32 = (lo..hi)
                    .map(|j| v[base + j * plane + p] * v[base + j * plane + p])
                    .sum();
                let t = table[sq as usize];
                codes.push(lrn_code(
                    &x.params,
                    v[base + ch * plane + p] as i32,
                    t,
                    &out,
                ));
            }
        }
    }
    Ok(QTensor {
        shape: x.shape.clone(),
        codes,
        params: out,
    })
}

/// Channel shuffle of an NCHW code tensor (planes permuted; the quantizer is kept).
fn shuffle(x: &QTensor, groups: usize) -> Result<QTensor> {
    let (n, c, h, w) = x.dims()?;
    let plane = h * w;
    let mut codes = Vec::with_capacity(x.codes.len());
    for img in 0..n {
        for o in 0..c {
            let s = (img * c + shuffle_source(c, groups, o)) * plane;
            codes.extend_from_slice(&x.codes[s..s + plane]);
        }
    }
    Ok(QTensor { codes, ..x.clone() })
}
