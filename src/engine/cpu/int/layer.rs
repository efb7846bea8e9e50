//! One integer conv / linear layer on channel-minor (NHWC) codes, weights packed once.
//!
//! A linear layer is a 1×1 conv on a 1×1 map. Non-depthwise convs are GEMMs with one row per
//! output pixel: the input rows themselves for 1×1 stride-1 unpadded ungrouped convs whose
//! channel count is a multiple of 4 (the batch folds into the rows), otherwise an NHWC
//! im2col of a panel of output pixels, reduction order `(ky, kx, c)`, padding taps holding
//! the code z_x (the real 0, which the zero-point correction of [`super::qgemm`] turns into
//! an exact 0 term). Depthwise convs use [`super::dw`]. Work runs panel by panel (im2col,
//! GEMM, requantization while the panel is in cache); with `par` the panels are rayon tasks.

use rayon::prelude::*;

use super::dw::{self, DwScratch, DwWeights, Plane};
use super::isa::Isa;
use super::qgemm::{gemm, QWeights};
use super::weights::PackedWeights;
use crate::graph::{Activation, Conv2d};

/// Output pixels per GEMM panel.
const PANEL: usize = 64;

/// Packed weights of one tensor of a layer.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerWeights {
    /// One packed GEMM per group.
    Gemm(Vec<QWeights>),
    Depthwise(DwWeights),
}

/// A conv or linear layer prepared for the CPU integer kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuLayer {
    pub conv: Conv2d,
    pub w: LayerWeights,
    pub w2: Option<LayerWeights>,
}

/// A linear layer as the equivalent 1×1 conv.
pub fn linear_as_conv(w: &PackedWeights) -> Conv2d {
    Conv2d {
        in_channels: w.k,
        out_channels: w.cout,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [0; 4],
        groups: 1,
        bias: false,
        act: Activation::None,
    }
}

fn pack(c: &Conv2d, w: &PackedWeights) -> LayerWeights {
    if c.is_depthwise() {
        return LayerWeights::Depthwise(DwWeights::new(w, c.kernel));
    }
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let taps = c.kernel[0] * c.kernel[1];
    let mut row = vec![0i16; w.k];
    let groups = (0..c.groups)
        .map(|g| {
            QWeights::new(
                cog,
                w.k,
                |o, dst| {
                    w.centered_row(g * cog + o, &mut row);
                    // GEMM order (tap, channel) from the weight layout (channel, tap).
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = row[(j % cig) * taps + j / cig] as i32;
                    }
                },
                &w.zero[g * cog..(g + 1) * cog],
            )
        })
        .collect();
    LayerWeights::Gemm(groups)
}

impl CpuLayer {
    pub fn new(c: &Conv2d, w: &PackedWeights, w2: Option<&PackedWeights>) -> Self {
        CpuLayer {
            conv: c.clone(),
            w: pack(c, w),
            w2: w2.map(|w2| pack(c, w2)),
        }
    }

    /// Whether the GEMM reads the input rows directly (no im2col).
    fn direct(&self) -> bool {
        let c = &self.conv;
        c.kernel == [1, 1]
            && c.stride == [1, 1]
            && c.padding == [0; 4]
            && c.groups == 1
            && c.in_channels.is_multiple_of(4)
    }

    /// Runs on `n` images of `h × w × C` codes (zero point `zx`) into `out`
    /// (`n · oh · ow` rows of `C_out` elements); `sink(acc, acc2, out_rows)` turns the exact
    /// accumulators of a panel of rows into outputs.
    #[allow(clippy::too_many_arguments)]
    pub fn run<T: Send>(
        &self,
        isa: Isa,
        par: bool,
        x: &[u8],
        (n, h, w): (usize, usize, usize),
        zx: i32,
        (oh, ow): (usize, usize),
        out: &mut [T],
        sink: &(impl Fn(&[i32], Option<&[i32]>, &mut [T]) + Sync),
    ) {
        let c = &self.conv;
        let (ci, co) = (c.in_channels, c.out_channels);
        let ohw = oh * ow;
        assert!(x.len() >= n * h * w * ci && out.len() >= n * ohw * co);
        let out = &mut out[..n * ohw * co];
        let img_in = h * w * ci;
        let mut seq = Scratch::default();
        let dws = match (&self.w, &self.w2) {
            (LayerWeights::Depthwise(a), None) => Some((a, None)),
            (LayerWeights::Depthwise(a), Some(LayerWeights::Depthwise(b))) => Some((a, Some(b))),
            _ => None,
        };
        let dw = dws.is_some();
        // Unit of work: `rows` output pixels starting at global row r0.
        let unit = |s: &mut Scratch, r0: usize, o: &mut [T]| {
            let rows = o.len() / co;
            let (img, p0) = (r0 / ohw, r0 % ohw);
            let xi = &x[img * img_in..][..img_in];
            if let Some((w1, w2)) = dws {
                let plane = Plane {
                    codes: xi,
                    h,
                    w,
                    zx,
                };
                let band = (p0 / ow, rows / ow);
                dw::band_acc(isa, plane, w1, w2, c, band, ow, &mut s.dw, |r, a, a2| {
                    sink(a, a2, &mut o[r * ow * co..][..ow * co])
                });
                return;
            }
            s.acc.resize(rows * co, 0);
            if self.w2.is_some() {
                s.acc2.resize(rows * co, 0);
            }
            let direct = self.direct();
            for (t, acc) in [
                (&self.w, &mut s.acc),
                (self.w2.as_ref().unwrap_or(&self.w), &mut s.acc2),
            ]
            .into_iter()
            .take(1 + self.w2.is_some() as usize)
            {
                let LayerWeights::Gemm(groups) = t else {
                    unreachable!("GEMM layers pack GEMM weights")
                };
                let cog = co / c.groups;
                for (g, qw) in groups.iter().enumerate() {
                    let k4 = qw.k4();
                    let a: &[u8] = if direct {
                        &x[r0 * ci..(r0 + rows) * ci]
                    } else {
                        im2col(xi, (h, w), c, g, (p0, rows), (oh, ow), zx, k4, &mut s.cols);
                        &s.cols
                    };
                    let lda = if direct { ci } else { k4 };
                    gemm(isa, a, lda, rows, qw, zx, &mut acc[g * cog..], co);
                }
            }
            let a2 = self.w2.as_ref().map(|_| &s.acc2[..rows * co]);
            sink(&s.acc[..rows * co], a2, o);
        };
        // Units: a band of output rows (depthwise; one band per image on one thread, else
        // about 3 per thread: each band widens its input rows once) or a panel, never
        // across images except for direct GEMMs.
        let band = if par {
            oh.div_ceil(3 * rayon::current_num_threads())
        } else {
            oh
        };
        let step = if dw { band.max(1) * ow } else { PANEL };
        let span = if dw || !self.direct() { ohw } else { n * ohw };
        if par {
            out.par_chunks_mut(span * co)
                .enumerate()
                .for_each(|(i, os)| {
                    os.par_chunks_mut(step * co)
                        .enumerate()
                        .for_each_init(Scratch::default, |s, (j, o)| {
                            unit(s, i * span + j * step, o)
                        });
                });
        } else {
            for (i, os) in out.chunks_mut(span * co).enumerate() {
                for (j, o) in os.chunks_mut(step * co).enumerate() {
                    unit(&mut seq, i * span + j * step, o);
                }
            }
        }
    }
}

/// Reusable per-task buffers.
#[derive(Default)]
struct Scratch {
    dw: DwScratch,
    cols: Vec<u8>,
    acc: Vec<i32>,
    acc2: Vec<i32>,
}

/// NHWC im2col of output pixels `p0..p0 + rows` of group `g`: rows of `k4` bytes, order
/// `(ky, kx, c)`, padding taps = `zx`, bytes past K = 0. Ungrouped, horizontally undilated
/// convs copy each kernel row inside the image as one run of `kw·C` bytes (contiguous in
/// NHWC); runs of at most 16 bytes (the stem: 9) as one 16-byte copy whose excess the
/// following writes overwrite (`dst` keeps 16 bytes of slack).
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[u8],
    (h, w): (usize, usize),
    c: &Conv2d,
    g: usize,
    (p0, rows): (usize, usize),
    (_oh, ow): (usize, usize),
    zx: i32,
    k4: usize,
    dst: &mut Vec<u8>,
) {
    const WIDE: usize = 16;
    let ci = c.in_channels;
    let cig = ci / c.groups;
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let k = kh * kw * cig;
    let run = kw * cig;
    let runs = c.groups == 1 && c.dilation[1] == 1;
    let (sx, pl) = (c.stride[1], c.padding[1] as isize);
    // Every byte of the rows is written below: no clearing.
    if dst.len() < rows * k4 + WIDE {
        dst.resize(rows * k4 + WIDE, 0);
    }
    let (mut oy, mut ox) = (p0 / ow, p0 % ow);
    for r in 0..rows {
        let d = &mut dst[r * k4..];
        let ix0 = (ox * sx) as isize - pl;
        let inside = runs && ix0 >= 0 && ix0 as usize + kw <= w;
        for ky in 0..kh {
            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.padding[0] as isize;
            let seg = &mut d[ky * run..];
            if iy < 0 || iy >= h as isize {
                seg[..run].fill(zx as u8);
            } else if inside {
                let s = (iy as usize * w + ix0 as usize) * ci;
                if run <= WIDE && s + WIDE <= x.len() {
                    seg[..WIDE].copy_from_slice(&x[s..s + WIDE]);
                } else {
                    seg[..run].copy_from_slice(&x[s..s + run]);
                }
            } else {
                for kx in 0..kw {
                    let ix = ix0 + (kx * c.dilation[1]) as isize;
                    let seg = &mut seg[kx * cig..][..cig];
                    if ix < 0 || ix >= w as isize {
                        seg.fill(zx as u8);
                    } else {
                        let s = (iy as usize * w + ix as usize) * ci + g * cig;
                        seg.copy_from_slice(&x[s..s + cig]);
                    }
                }
            }
        }
        d[k..k4].fill(0);
        ox += 1;
        if ox == ow {
            (oy, ox) = (oy + 1, 0);
        }
    }
}
