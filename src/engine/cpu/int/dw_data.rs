//! The data the depthwise kernels share ([`super::dw`] drives them, [`super::dwsimd`] and
//! [`super::dwquad`] compute): centred weights in tap, pair and quad layouts, one image's
//! input map, and the pair (or quad) rows of one output row.

use super::qgemm::run16;
use super::weights::PackedWeights;
use crate::graph::Conv2d;

/// Centred depthwise weights: taps `[kh·kw][C]`, tap pairs `[kh][np][C][2]`, and when every
/// value fits `i8`, tap quads `[kh][nq][C][4]` (nq = ⌈kw/4⌉) with their kernel-row sums
/// `[kh][C]` (the zero-point correction of the quad kernel).
#[derive(Clone, Debug, PartialEq)]
pub struct DwWeights {
    pub taps: Vec<i16>,
    pub pairs: Vec<i16>,
    pub quads: Option<(Vec<i8>, Vec<i32>)>,
    /// Quads whose `vpmaddubsw` pair sums the AVX2 quad kernel may add in `i16`
    /// ([`super::qgemm::run16`] of the largest |weight|; 0: some weight exceeds ±64).
    pub run16: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
}

impl DwWeights {
    /// Packs depthwise weights of a `kernel[0] × kernel[1]` window (`w.k` taps per channel).
    pub fn new(w: &PackedWeights, kernel: [usize; 2]) -> Self {
        let (c, k) = (w.cout, w.k);
        let (kh, kw) = (kernel[0], kernel[1]);
        assert_eq!(k, kh * kw, "depthwise weights hold one window per channel");
        let np = kw.div_ceil(2);
        let mut taps = vec![0i16; k * c];
        let mut pairs = vec![0i16; kh * np * c * 2];
        let mut row = vec![0i16; k];
        for ch in 0..c {
            w.centered_row(ch, &mut row);
            for (t, &v) in row.iter().enumerate() {
                taps[t * c + ch] = v;
                let (ky, kx) = (t / kw, t % kw);
                pairs[((ky * np + kx / 2) * c + ch) * 2 + kx % 2] = v;
            }
        }
        let nq = kw.div_ceil(4);
        let quads = taps.iter().all(|&v| i8::try_from(v).is_ok()).then(|| {
            let mut q = vec![0i8; kh * nq * c * 4];
            let mut sums = vec![0i32; kh * c];
            for (t, row) in taps.chunks_exact(c).enumerate() {
                let (ky, kx) = (t / kw, t % kw);
                for (ch, &v) in row.iter().enumerate() {
                    q[((ky * nq + kx / 4) * c + ch) * 4 + kx % 4] = v as i8;
                    sums[ky * c + ch] += v as i32;
                }
            }
            (q, sums)
        });
        let run16 = run16(taps.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0));
        DwWeights {
            taps,
            pairs,
            quads,
            run16,
            c,
            kh,
            kw,
        }
    }

    /// Tap pairs per kernel row.
    pub fn np(&self) -> usize {
        self.kw.div_ceil(2)
    }

    /// Tap quads per kernel row.
    pub fn nq(&self) -> usize {
        self.kw.div_ceil(4)
    }
}

/// One image's input map.
#[derive(Clone, Copy)]
pub struct Plane<'a> {
    pub codes: &'a [u8],
    pub h: usize,
    pub w: usize,
    pub zx: i32,
}

/// The pair rows of one output row.
pub struct Rows<'a> {
    pub(super) buf: &'a [i16],
    pub(super) len: usize,
    pub(super) sel: &'a [Option<usize>],
}

impl Rows<'_> {
    pub(super) fn get(&self, ky: usize) -> Option<&[i16]> {
        self.sel[ky].map(|s| &self.buf[s * self.len..][..self.len])
    }

    /// Kernel row `ky` as bytes (quad rows).
    pub fn bytes(&self, ky: usize) -> Option<&[u8]> {
        self.get(ky).map(bytemuck::cast_slice)
    }

    /// Bytes per row.
    pub fn byte_len(&self) -> usize {
        self.len * 2
    }
}

/// Columns of a pair row (`per` taps per load: 2), or of a quad row (4).
pub fn cols(w: &DwWeights, c: &Conv2d, ow: usize, per: usize) -> usize {
    (ow - 1) * c.stride[1] + per * (w.kw.div_ceil(per) - 1) * c.dilation[1] + 1
}
