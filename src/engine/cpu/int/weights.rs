//! Integer weights of one conv/linear tensor, as the integer kernels hold them.
//!
//! Codes are kept in the signed view of `quant::scheme` (q_s = q − 2^(M−1), z_s = z − 2^(M−1),
//! so (q − z) = (q_s − z_s) exactly). Channels of at most 4 bits are rows of nibble words
//! along the reduction axis (`quant::pack`, layout 3). Wider channels (bit allocation can
//! give up to 8) live in `i8` rows instead. The reduction axis is the weight layout's
//! `[in/groups, kh, kw]` (row-major), or `in` for linear layers.

use crate::error::{Error, Result};
use crate::quant::pack::{i4_at, pack_i4_words};
use crate::quant::scheme::{to_signed, QParams};

/// Marks a channel without an `i8` row.
const NONE: u32 = u32::MAX;

/// Packed per-output-channel integer weights.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedWeights {
    pub cout: usize,
    /// Reduction length of one output channel.
    pub k: usize,
    /// `u32` words per nibble row, ceil(k / 8).
    pub words: usize,
    /// `cout · words` words; rows of wide channels are zero.
    pub nib: Vec<u32>,
    /// Rows of the channels wider than 4 bits, `k` signed codes each.
    pub wide: Vec<i8>,
    /// Per channel: its row in `wide`, or `u32::MAX`.
    pub wide_row: Vec<u32>,
    /// Signed zero point z_s per channel.
    pub zero: Vec<i32>,
    pub scale: Vec<f32>,
    pub bits: Vec<u8>,
}

impl PackedWeights {
    /// Packs unsigned per-channel codes (weight layout, `params.len()` equal rows).
    pub fn new(codes: &[u8], params: &[QParams]) -> Result<Self> {
        let cout = params.len();
        if cout == 0 || codes.is_empty() || !codes.len().is_multiple_of(cout) {
            return Err(Error::Quant(format!(
                "{} weight codes do not split into {cout} output channels",
                codes.len()
            )));
        }
        let k = codes.len() / cout;
        let words = k.div_ceil(8);
        let mut nib = vec![0u32; cout * words];
        let (mut wide, mut wide_row) = (Vec::new(), Vec::with_capacity(cout));
        for (c, (row, p)) in codes.chunks(k).zip(params).enumerate() {
            if let Some(&q) = row.iter().find(|&&q| q as i32 > p.qmax().max(0)) {
                return Err(Error::Quant(format!(
                    "weight code {q} out of range for {} bits",
                    p.bits
                )));
            }
            if p.bits > 4 {
                wide_row.push((wide.len() / k) as u32);
                wide.extend(row.iter().map(|&q| to_signed(q, p.bits)));
            } else {
                wide_row.push(NONE);
                let signed: Vec<i8> = row.iter().map(|&q| to_signed(q, p.bits)).collect();
                nib[c * words..(c + 1) * words].copy_from_slice(&pack_i4_words(&signed));
            }
        }
        Ok(PackedWeights {
            cout,
            k,
            words,
            nib,
            wide,
            wide_row,
            zero: params.iter().map(|p| p.signed_zero_point()).collect(),
            scale: params.iter().map(|p| p.scale).collect(),
            bits: params.iter().map(|p| p.bits).collect(),
        })
    }

    /// Signed code q_s of element `j` of channel `c`.
    #[inline]
    pub fn signed(&self, c: usize, j: usize) -> i32 {
        match self.wide_row[c] {
            NONE => i4_at(&self.nib[c * self.words..(c + 1) * self.words], j),
            r => self.wide[r as usize * self.k + j] as i32,
        }
    }

    /// Writes (q − z) of channel `c` into `out[..k]` (the rest of `out` is zeroed).
    pub fn centered_row(&self, c: usize, out: &mut [i16]) {
        let z = self.zero[c];
        out.fill(0);
        match self.wide_row[c] {
            NONE => {
                let row = &self.nib[c * self.words..(c + 1) * self.words];
                for (j, o) in out[..self.k].iter_mut().enumerate() {
                    *o = (i4_at(row, j) - z) as i16;
                }
            }
            r => {
                let row = &self.wide[r as usize * self.k..(r as usize + 1) * self.k];
                for (o, &s) in out.iter_mut().zip(row) {
                    *o = (s as i32 - z) as i16;
                }
            }
        }
    }

    /// Largest |q − z| over the tensor.
    pub fn max_abs_centered(&self) -> i32 {
        (0..self.cout)
            .flat_map(|c| (0..self.k).map(move |j| (c, j)))
            .map(|(c, j)| (self.signed(c, j) - self.zero[c]).abs())
            .max()
            .unwrap_or(0)
    }

    /// Bytes of weight codes held in memory (nibble words plus `i8` rows).
    pub fn code_bytes(&self) -> usize {
        let narrow = self.wide_row.iter().filter(|&&r| r == NONE).count();
        narrow * self.words * 4 + self.wide.len()
    }
}
