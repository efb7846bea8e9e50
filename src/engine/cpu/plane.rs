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
    /// The geometry, fill and length of the last build: a rebuild with the same ones
    /// rewrites only the input elements (the padding already holds `fill`).
    built: Option<([usize; 8], u32)>,
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
        let key = (
            [h, w, pad[0], pad[1], pad[2], pad[3], len, sy * 1024 + sx],
            fill.to_bits(),
        );
        let refill = self.built != Some(key);
        self.built = Some(key);
        // Every element below is written exactly once: no clearing pass.
        self.data.resize(len, fill);
        if refill {
            self.data[planes..].fill(fill);
        }
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
                        if refill {
                            drow.fill(fill);
                        }
                        continue;
                    }
                    if refill {
                        drow[..j_lo].fill(fill);
                        drow[j_hi..].fill(fill);
                    }
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
        1 => copy_short(dst, &src[..dst.len()]),
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

/// `dst.copy_from_slice(src)` for the short rows of small maps, as fixed-size moves (the
/// general copy is a `memcpy` call, which costs more than moving 7–56 floats).
#[inline]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert_eq!(n, src.len(), "copy_short: lengths differ");
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            copy8(&mut dst[i..i + 8], &src[i..i + 8]);
            i += 8;
        }
        if i < n {
            copy8(&mut dst[n - 8..], &src[n - 8..]);
        }
    } else if n >= 4 {
        copy4(&mut dst[..4], &src[..4]);
        copy4(&mut dst[n - 4..], &src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

#[inline(always)]
fn copy8(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [f32; 8]>::try_from(dst), <&[f32; 8]>::try_from(src)) {
        *d = *s;
    }
}

#[inline(always)]
fn copy4(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [f32; 4]>::try_from(dst), <&[f32; 4]>::try_from(src)) {
        *d = *s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_short_copies_every_length() {
        for n in 0..40 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut dst = vec![f32::NAN; n];
            copy_short(&mut dst, &src);
            assert_eq!(dst, src, "n = {n}");
        }
    }

    /// A reused plane equals a fresh one after every rebuild, whether the geometry or fill
    /// changed (padding rewritten) or not (padding kept).
    #[test]
    fn rebuilds_match_fresh_builds() {
        let src: Vec<f32> = (0..35).map(|i| i as f32 + 1.0).collect();
        let mut reused = Polyphase::default();
        for (pad, stride, fill, min_len) in [
            ([1, 1, 1, 1], [1, 1], 0.0, 0),
            ([1, 1, 1, 1], [1, 1], 0.0, 0),
            ([2, 1, 0, 2], [2, 2], 0.0, 90),
            ([2, 1, 0, 2], [2, 2], f32::NEG_INFINITY, 90),
            ([1, 1, 1, 1], [1, 1], 0.0, 0),
        ] {
            let mut fresh = Polyphase::default();
            fresh.build(&src, 5, 7, pad, stride, fill, min_len);
            reused.build(&src, 5, 7, pad, stride, fill, min_len);
            assert_eq!(fresh.data, reused.data, "{pad:?} {stride:?} {fill}");
        }
    }
}
