//! Calibration-precision conv2d, linear and global average pooling: each output is
//! `round_f32(b + Σ w·x)` of the sum of the f32 products accumulated in f64 (the product
//! of two f32 is exact in f64; the f64 sum errs by at most K·2⁻⁵³·Σ|w·x|), rounded once.
//! Global average pooling rounds the f64 sum of a plane to f32 and divides by the count
//! in f32.
//!
//! These are the twins of `engine::gpu::conv2d_precise`, which reaches the same values with
//! compensated f32 arithmetic: both are (nearly) the correctly rounded exact result, so
//! calibration sees the same activations on both backends, bit for bit except in rare
//! near-ties, whatever order each backend sums in. The fast kernels round every partial
//! sum to f32 in their own order; their results differ between backends by many ulps where
//! a sum cancels. Calibration (`engine::exec::float_cpu` with a hook whose `precise()` is true) uses
//! these; inference keeps the fast kernels.
//!
//! Layouts as the fast kernels: x `[N, CI, H, W]`, w `[CO, CI/G, KH, KW]`, y
//! `[N, CO, OH, OW]`; linear x `[N, IN]`, w `[OUT, IN]`. Conv: per group, im2col of the
//! whole batch in f64 (columns: image, then output pixel; a plain conversion for 1×1 convs)
//! and one `matrixmultiply::dgemm` (its own threads) with C preset to the bias; depthwise:
//! a direct f64 loop per plane on rayon.

use rayon::prelude::*;

use super::elementwise::prepare_out;
use super::microkernel::Isa;
use crate::error::{Error, Result};
use crate::graph::{Conv2d, Linear};
use crate::quant::gptq::{im2col, Patches};
use crate::tensor::Tensor;

/// f64 elements of im2col and accumulator per GEMM (32 MiB).
const CHUNK_ELEMS: usize = 4 << 20;

thread_local! {
    /// The im2col and accumulator buffers of the last conv on this thread, reused: every
    /// element is written before it is read, so they are grown but never cleared (a fresh
    /// zeroed 32 MiB per layer cost page faults and a memset on every call).
    static SCRATCH: std::cell::RefCell<(Vec<f64>, Vec<f64>)> = Default::default();
}

/// Compiles `body` for AVX-512F and for AVX2 besides the baseline and runs the build
/// [`Isa::detect`] picks: element-wise f64 operations without FMA, so every build gives the
/// same bits.
macro_rules! simd_builds {
    ($body:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2")]
            unsafe fn avx512($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) {
                $body($($arg),*)
            }
            match Isa::detect() {
                // SAFETY: `Isa::detect` picks these only where the CPU has their features.
                Isa::Avx512 => return unsafe { avx512($($arg),*) },
                Isa::Avx2Fma => return unsafe { avx2($($arg),*) },
                Isa::Portable => {}
            }
        }
        $body($($arg),*)
    }};
}

/// `dst[i] = src[i] as f64` (exact).
fn widen(dst: &mut [f64], src: &[f32]) {
    #[inline(always)]
    fn body(dst: &mut [f64], src: &[f32]) {
        dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v as f64);
    }
    simd_builds!(body(dst: &mut [f64], src: &[f32]))
}

/// `dst[i] = src[i] as f32` (round to nearest even).
fn narrow(dst: &mut [f32], src: &[f64]) {
    #[inline(always)]
    fn body(dst: &mut [f32], src: &[f64]) {
        dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v as f32);
    }
    simd_builds!(body(dst: &mut [f32], src: &[f64]))
}

/// One output row of a depthwise plane: `acc[ox] += w[t] · rows[offs[t] + ox]` over the taps
/// `t` in (ky, kx) order, each product exact in f64 and added once (no FMA, so the SIMD
/// builds give the same sums as the baseline one).
fn dw_row(acc: &mut [f64], rows: &[f64], wk: &[f32], offs: &[usize]) {
    #[inline(always)]
    fn body(acc: &mut [f64], rows: &[f64], wk: &[f32], offs: &[usize]) {
        for (&off, &w) in offs.iter().zip(wk) {
            let wv = w as f64;
            let taps = &rows[off..off + acc.len()];
            acc.iter_mut().zip(taps).for_each(|(a, &v)| *a += wv * v);
        }
    }
    simd_builds!(body(acc: &mut [f64], rows: &[f64], wk: &[f32], offs: &[usize]))
}

/// `C[m×n] = A[m×k]·B[k×n] + C`, all row-major f64 with the given row strides.
fn dgemm_acc(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], ldb: usize, c: &mut [f64]) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(a.len() >= m * k && b.len() >= (k - 1) * ldb + n && c.len() >= m * n);
    // SAFETY: the assert keeps every index of A, B and C (row-major, unit column stride)
    // inside its slice; C is exclusively borrowed.
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
            ldb as isize,
            1,
            1.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn shape_err(what: &str, expected: Vec<usize>, actual: &[usize]) -> Error {
    Error::Shape {
        node: what.into(),
        expected,
        actual: actual.to_vec(),
    }
}

/// Precise convolution without activation (module docs); `b` optional bias per CO.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&[f32]>, c: &Conv2d) -> Result<Tensor> {
    let mut y = Tensor {
        shape: Vec::new(),
        data: Vec::new(),
    };
    conv2d_into(x, w, b, c, &mut y)?;
    Ok(y)
}

/// [`conv2d`] into a caller-owned tensor whose allocation is reused (calibration's executor
/// passes freed activation buffers: fresh ones cost a page fault per 4 KiB on first touch).
pub fn conv2d_into(
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    c: &Conv2d,
    y: &mut Tensor,
) -> Result<()> {
    let (n, ci, h, wd) = x.dims4()?;
    if ci != c.in_channels || w.shape != c.weight_shape() || c.groups == 0 {
        return Err(shape_err("conv2d", c.weight_shape(), &w.shape));
    }
    if !c.in_channels.is_multiple_of(c.groups) || !c.out_channels.is_multiple_of(c.groups) {
        return Err(Error::Engine(format!(
            "conv2d: groups {} must divide {} and {}",
            c.groups, c.in_channels, c.out_channels
        )));
    }
    if b.is_some_and(|b| b.len() != c.out_channels) {
        return Err(Error::Engine("conv2d: bias length differs from CO".into()));
    }
    let (oh, ow) = c
        .out_hw(h, wd)
        .ok_or_else(|| Error::Engine(format!("conv2d: window does not fit {h}×{wd}")))?;
    let co = c.out_channels;
    let bias = |o: usize| b.map_or(0.0, |b| b[o] as f64);
    prepare_out(y, &[n, co, oh, ow]);
    let ohw = oh * ow;
    if ohw == 0 {
        return Ok(());
    }
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    if c.is_depthwise() {
        // Each plane zero-padded in f64 once and split into `sw` column phases (phase p holds
        // the padded columns p, p + sw, …), so that every tap of a row of outputs reads a
        // contiguous run at any stride; then each tap added to the row (taps in (ky, kx)
        // order; a padding tap adds w·0 = 0 exactly). The buffers' padding stays zero: each
        // plane rewrites only the interior.
        let [pt, pl, pb, pr] = c.padding;
        let (ph, pw) = (h + pt + pb, wd + pl + pr);
        let (sh, sw, dh, dw) = (c.stride[0], c.stride[1], c.dilation[0], c.dilation[1]);
        let pwp = pw.div_ceil(sw);
        let phase_len = ph * pwp;
        let offs: Vec<usize> = (0..kh * kw)
            .map(|t| {
                let col = (t % kw) * dw;
                (col % sw) * phase_len + (t / kw) * dh * pwp + col / sw
            })
            .collect();
        y.data.par_chunks_mut(ohw).enumerate().for_each_init(
            || {
                let buf = vec![0f64; sw * phase_len];
                (buf, vec![0f64; ow], vec![0f64; wd])
            },
            |(buf, acc, row64), (plane, out)| {
                let ch = plane % co;
                let xp = &x.data[plane * h * wd..(plane + 1) * h * wd];
                let wk = &w.data[ch * kh * kw..(ch + 1) * kh * kw];
                for (iy, row) in xp.chunks(wd).enumerate() {
                    let r0 = (iy + pt) * pwp;
                    if sw == 1 {
                        widen(&mut buf[r0 + pl..r0 + pl + wd], row);
                        continue;
                    }
                    widen(row64, row);
                    // Phase by phase: padded column `col = ix + pl` goes to phase col % sw,
                    // position col / sw (a division per value was 6 % of calibration).
                    for p in 0..sw {
                        let ix0 = (p + sw - pl % sw) % sw;
                        if ix0 >= wd {
                            continue;
                        }
                        let d0 = p * phase_len + r0 + (ix0 + pl) / sw;
                        let src = row64[ix0..].iter().step_by(sw);
                        for (d, &v) in buf[d0..].iter_mut().zip(src) {
                            *d = v;
                        }
                    }
                }
                for (oy, out_row) in out.chunks_mut(ow).enumerate() {
                    acc.fill(bias(ch));
                    dw_row(acc, &buf[oy * sh * pwp..], wk, &offs);
                    narrow(out_row, acc);
                }
            },
        );
        return Ok(());
    }
    let (cig, cog) = (ci / c.groups, co / c.groups);
    let kdim = cig * kh * kw;
    let patches = Patches::conv(c);
    let w64: Vec<f64> = w.data.iter().map(|&v| v as f64).collect();
    // One GEMM per group and chunk of images (columns: image, output pixel), the chunk
    // bounded so the f64 operands stay around 32 MiB.
    let per = (CHUNK_ELEMS / ((kdim + cog) * ohw).max(1)).clamp(1, n.max(1));
    let pointwise = kh * kw == 1 && c.stride == [1, 1] && c.padding == [0; 4];
    let (mut col, mut acc) = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    for i0 in (0..n).step_by(per) {
        let nb = per.min(n - i0);
        let cols = nb * ohw;
        col.resize(kdim * cols, 0.0);
        acc.resize(cog * cols, 0.0);
        for g in 0..c.groups {
            if pointwise {
                col.par_chunks_mut(cols).enumerate().for_each(|(k, row)| {
                    for (j, seg) in row.chunks_mut(ohw).enumerate() {
                        let p0 = ((i0 + j) * ci + g * cig + k) * h * wd;
                        widen(seg, &x.data[p0..p0 + h * wd]);
                    }
                });
            } else {
                // Row-wise patch copies (the Hessians' im2col); image j fills columns
                // j·ohw.. of every row.
                for j in 0..nb {
                    let x0 = ((i0 + j) * ci + g * cig) * h * wd;
                    let xg = &x.data[x0..x0 + cig * h * wd];
                    im2col(xg, cig, h, wd, oh, ow, &patches, &mut col[j * ohw..], cols);
                }
            }
            acc.par_chunks_mut(cols)
                .enumerate()
                .for_each(|(m, row)| row.fill(bias(g * cog + m)));
            let wg = &w64[g * cog * kdim..(g + 1) * cog * kdim];
            dgemm_acc(cog, kdim, cols, wg, &col, cols, &mut acc);
            // Output plane (image i, channel o) of this chunk and group ← its row segment.
            y.data[i0 * co * ohw..(i0 + nb) * co * ohw]
                .par_chunks_mut(ohw)
                .enumerate()
                .for_each(|(p, plane)| {
                    let (j, o) = (p / co, p % co);
                    if (g * cog..(g + 1) * cog).contains(&o) {
                        let m = o - g * cog;
                        narrow(plane, &acc[m * cols + j * ohw..][..ohw]);
                    }
                });
        }
    }
    SCRATCH.with(|s| *s.borrow_mut() = (col, acc));
    Ok(())
}

/// Precise `x·Wᵀ + b` without activation (module docs).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&[f32]>, l: &Linear) -> Result<Tensor> {
    let n = x.shape.first().copied().unwrap_or(0);
    let (k, o) = (l.in_features, l.out_features);
    if x.numel() != n * k || w.shape != [o, k] || b.is_some_and(|b| b.len() != o) {
        return Err(shape_err("linear", vec![n, k], &x.shape));
    }
    let x64: Vec<f64> = x.data.iter().map(|&v| v as f64).collect();
    // Wᵀ as a row-major [k, o] operand.
    let mut wt = vec![0f64; k * o];
    for (r, row) in w.data.chunks(k.max(1)).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            wt[i * o + r] = v as f64;
        }
    }
    let mut acc: Vec<f64> = (0..n * o)
        .map(|i| b.map_or(0.0, |b| b[i % o] as f64))
        .collect();
    dgemm_acc(n, k, o, &x64, &wt, o, &mut acc);
    Tensor::from_vec(&[n, o], acc.iter().map(|&v| v as f32).collect())
}

/// Precise global average pooling `[N, C, H, W] → [N, C, 1, 1]` (module docs).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let hw = h * w;
    if hw == 0 {
        return Ok(Tensor::zeros(&[n, c, 1, 1]));
    }
    let data = (x.data.chunks(hw))
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() as f32 / hw as f32)
        .collect();
    Tensor::from_vec(&[n, c, 1, 1], data)
}
