//! Polyphase padded planes: the one data layout behind im2col, the direct depthwise kernel
//! and pooling.
//!
//! An `H×W` input plane is padded (`[top, left, bottom, right]`, with a fill value: 0 for
//! convolution and average pooling, −∞ for max pooling) to `Hp×Wp` and split by stride
//! `(sy, sx)` into `sy·sx` sub-planes of `hs×ws` (`hs = ⌈Hp/sy⌉`, `ws = ⌈Wp/sx⌉`):
//!
//! `sub[ry][rx][i][j] = Xpad[i·sy + ry][j·sx + rx]`.
//!
//! A window tap at dilated offset `(dy, dx) = (qy·sy + ry, qx·sx + rx)` then reads, for the
//! output pixel `(y, x)`, `sub[ry][rx][y + qy][x + qx]`: every stride becomes stride 1. On a
//! "wide" output grid of `oh × ws` (columns `x ≥ ow` are computed and discarded), output index
//! `j = y·ws + x` reads input index `offset(dy, dx) + j`, so each tap is one contiguous run:
//! the inner loops have no bounds logic and vectorise.

/// A reusable polyphase plane (the buffer is kept between builds).
#[derive(Default)]
pub(crate) struct Polyphase {
    pub data: Vec<f32>,
    sy: usize,
    sx: usize,
    hs: usize,
    ws: usize,
}

impl Polyphase {
    /// Width of each sub-plane: the row pitch of the wide output grid.
    pub fn ws(&self) -> usize {
        self.ws
    }

    /// Start of the run read by a tap at dilated offset `(dy, dx)`.
    pub fn offset(&self, dy: usize, dx: usize) -> usize {
        let (qy, ry) = (dy / self.sy, dy % self.sy);
        let (qx, rx) = (dx / self.sx, dx % self.sx);
        ((ry * self.sx + rx) * self.hs + qy) * self.ws + qx
    }

    /// Sub-plane geometry for an `h × w` input without building anything.
    pub fn shape(&mut self, h: usize, w: usize, pad: [usize; 4], stride: [usize; 2]) {
        self.sy = stride[0];
        self.sx = stride[1];
        self.hs = (h + pad[0] + pad[2]).div_ceil(self.sy);
        self.ws = (w + pad[1] + pad[3]).div_ceil(self.sx);
    }

    /// Builds the planes of `src` (`h × w`, row-major). The buffer holds at least `min_len`
    /// elements; everything that is not an input element is `fill`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &mut self,
        src: &[f32],
        h: usize,
        w: usize,
        pad: [usize; 4],
        stride: [usize; 2],
        fill: f32,
        min_len: usize,
    ) {
        debug_assert_eq!(src.len(), h * w);
        self.shape(h, w, pad, stride);
        let (sy, sx, hs, ws) = (self.sy, self.sx, self.hs, self.ws);
        let (pt, pl) = (pad[0], pad[1]);
        let planes = sy * sx * hs * ws;
        let len = planes.max(min_len);
        // Every element below is written exactly once: no clearing pass.
        self.data.resize(len, fill);
        self.data[planes..].fill(fill);
        for ry in 0..sy {
            for rx in 0..sx {
                // Columns j whose source column j·sx + rx − pl lies in [0, w).
                let j_hi = (w + pl).saturating_sub(rx).div_ceil(sx).min(ws);
                let j_lo = pl.saturating_sub(rx).div_ceil(sx).min(j_hi);
                let base = (ry * sx + rx) * hs * ws;
                for i in 0..hs {
                    let drow = &mut self.data[base + i * ws..base + (i + 1) * ws];
                    let iy = i * sy + ry;
                    if iy < pt || iy - pt >= h || j_lo == j_hi {
                        drow.fill(fill);
                        continue;
                    }
                    drow[..j_lo].fill(fill);
                    drow[j_hi..].fill(fill);
                    let srow = &src[(iy - pt) * w..(iy - pt + 1) * w];
                    gather(&mut drow[j_lo..j_hi], &srow[j_lo * sx + rx - pl..], sx);
                }
            }
        }
    }
}

/// `dst[j] = src[j·step]`; the stride-2 case (every stride-2 layer of EfficientNet) is
/// written so that it vectorises.
#[inline]
pub(crate) fn gather(dst: &mut [f32], src: &[f32], step: usize) {
    match step {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            let mut pairs = src.chunks_exact(2);
            let full = dst.len().min(pairs.len());
            for (d, p) in dst[..full].iter_mut().zip(&mut pairs) {
                *d = p[0];
            }
            if full < dst.len() {
                dst[full] = src[full * 2];
            }
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = *s;
            }
        }
    }
}
