//! 4-bit code packing: the one place that knows how nibbles are laid out. ptq4 has three
//! layouts, all little-end first (element 0 in the lowest bits) and all built from these
//! functions:
//!
//! 1. **Bytes** (ONNX INT4/UINT4): two codes per byte, byte i = code[2i] | code[2i+1] << 4
//!    ([`pack_u4`], [`unpack_u4`]). An odd count leaves the last high nibble 0; unpacking
//!    rejects a non-zero pad nibble. Signed codes ([−8, 7]) are two's-complement nibbles,
//!    sign-extended on unpack ([`pack_i4`], [`unpack_i4`]). Flat packing follows ONNX (the
//!    whole tensor as one sequence); row packing ([`pack_u4_rows`]) pads every row (e.g. one
//!    output channel of a weight) to a whole byte: `rows · ceil(row_len / 2)` bytes.
//! 2. **The quantized file's codes** (`qmodel/codes.rs`): channel by channel (axis 0), each
//!    channel starting on a byte; a channel of at most 4 bits as layout-1 bytes of its
//!    unsigned codes, a wider channel one byte per code ([`pack_channel_codes`],
//!    [`unpack_channel_codes`], [`channel_codes_len`]).
//! 3. **Nibble words**, the integer kernels' weights: signed codes (the signed view of
//!    `quant::scheme`), 8 two's-complement nibbles per `u32`, element j at bits 4·(j mod 8)
//!    of word j / 8, the last word padded with 0 ([`pack_i4_words`], [`i4_at`]). The CPU
//!    kernels (`engine::cpu::int::PackedWeights`) hold one such row per output channel along
//!    the reduction axis `[in/groups, kh, kw]`; the GPU kernel (`engine::gpu::conv_int`)
//!    holds one per (output channel, tap) along the input channels, and its channels wider
//!    than 4 bits as `i8` words, 4 per `u32`, element j at bits 8·(j mod 4) of word j / 4
//!    ([`pack_i8_words`]).

use crate::error::{Error, Result};

/// Bytes needed for `n` 4-bit codes.
pub fn packed_len(n: usize) -> usize {
    n.div_ceil(2)
}

/// Packs unsigned codes in [0, 15].
pub fn pack_u4(codes: &[u8]) -> Result<Vec<u8>> {
    if let Some(i) = codes.iter().position(|&q| q > 15) {
        return Err(Error::Quant(format!(
            "code {} at {i} does not fit in 4 bits",
            codes[i]
        )));
    }
    Ok(codes
        .chunks(2)
        .map(|p| p[0] | p.get(1).copied().unwrap_or(0) << 4)
        .collect())
}

/// Unpacks `n` unsigned codes.
pub fn unpack_u4(packed: &[u8], n: usize) -> Result<Vec<u8>> {
    if packed.len() != packed_len(n) {
        return Err(Error::Quant(format!(
            "{n} 4-bit codes need {} bytes, got {}",
            packed_len(n),
            packed.len()
        )));
    }
    if n % 2 == 1 && packed[n / 2] >> 4 != 0 {
        return Err(Error::Quant(
            "non-zero pad nibble after the last code".into(),
        ));
    }
    Ok(packed
        .iter()
        .flat_map(|&b| [b & 0x0f, b >> 4])
        .take(n)
        .collect())
}

/// Packs signed codes in [−8, 7] as two's-complement nibbles.
pub fn pack_i4(codes: &[i8]) -> Result<Vec<u8>> {
    if let Some(i) = codes.iter().position(|q| !(-8..=7).contains(q)) {
        return Err(Error::Quant(format!(
            "signed code {} at {i} does not fit in 4 bits",
            codes[i]
        )));
    }
    let nib: Vec<u8> = codes.iter().map(|&q| (q as u8) & 0x0f).collect();
    pack_u4(&nib)
}

/// Unpacks `n` signed codes (sign-extending each nibble).
pub fn unpack_i4(packed: &[u8], n: usize) -> Result<Vec<i8>> {
    Ok(unpack_u4(packed, n)?
        .into_iter()
        .map(|q| ((q << 4) as i8) >> 4)
        .collect())
}

fn check_rows(n: usize, rows: usize) -> Result<usize> {
    if rows == 0 || !n.is_multiple_of(rows) {
        return Err(Error::Quant(format!(
            "{n} codes do not split into {rows} rows"
        )));
    }
    Ok(n / rows)
}

/// Packs unsigned codes row by row, each row padded to a whole byte.
pub fn pack_u4_rows(codes: &[u8], rows: usize) -> Result<Vec<u8>> {
    let per = check_rows(codes.len(), rows)?;
    let mut out = Vec::with_capacity(rows * packed_len(per));
    for row in codes.chunks(per.max(1)).take(rows) {
        out.extend(pack_u4(row)?);
    }
    Ok(out)
}

/// Unpacks `rows` rows of `row_len` codes packed by [`pack_u4_rows`].
pub fn unpack_u4_rows(packed: &[u8], rows: usize, row_len: usize) -> Result<Vec<u8>> {
    let per = packed_len(row_len);
    if packed.len() != rows * per {
        return Err(Error::Quant(format!(
            "{rows} rows of {row_len} 4-bit codes need {} bytes, got {}",
            rows * per,
            packed.len()
        )));
    }
    let mut out = Vec::with_capacity(rows * row_len);
    for r in 0..rows {
        out.extend(unpack_u4(&packed[r * per..(r + 1) * per], row_len)?);
    }
    Ok(out)
}

/// Bytes of layout 2 for channels of `per` codes at `bits` each.
pub fn channel_codes_len(bits: &[u8], per: usize) -> usize {
    bits.iter()
        .map(|&b| if b <= 4 { packed_len(per) } else { per })
        .sum()
}

/// Packs unsigned codes channel by channel (layout 2; `bits.len()` equal channels).
pub fn pack_channel_codes(codes: &[u8], bits: &[u8]) -> Result<Vec<u8>> {
    let per = check_rows(codes.len(), bits.len())?;
    let mut out = Vec::with_capacity(channel_codes_len(bits, per));
    for (&b, row) in bits.iter().zip(codes.chunks(per.max(1))) {
        if b <= 4 {
            out.extend(pack_u4(row)?);
        } else {
            out.extend_from_slice(row);
        }
    }
    Ok(out)
}

/// Unpacks `bits.len()` channels of `per` codes packed by [`pack_channel_codes`].
pub fn unpack_channel_codes(packed: &[u8], bits: &[u8], per: usize) -> Result<Vec<u8>> {
    let want = channel_codes_len(bits, per);
    if packed.len() != want {
        return Err(Error::Quant(format!(
            "{} code bytes, the bit-widths need {want}",
            packed.len()
        )));
    }
    let mut out = Vec::with_capacity(bits.len() * per);
    let mut at = 0;
    for &b in bits {
        if b <= 4 {
            out.extend(unpack_u4(&packed[at..at + packed_len(per)], per)?);
            at += packed_len(per);
        } else {
            out.extend_from_slice(&packed[at..at + per]);
            at += per;
        }
    }
    Ok(out)
}

/// Packs signed codes in [−8, 7] into nibble words (layout 3): `ceil(n / 8)` words.
/// Codes outside the range keep only their low nibble (callers hold checked codes).
pub fn pack_i4_words(codes: &[i8]) -> Vec<u32> {
    let mut words = vec![0u32; codes.len().div_ceil(8)];
    for (j, &q) in codes.iter().enumerate() {
        words[j / 8] |= (q as u8 as u32 & 0xf) << (4 * (j % 8));
    }
    words
}

/// Signed code `j` of a row of nibble words (layout 3), sign-extended.
#[inline]
pub fn i4_at(words: &[u32], j: usize) -> i32 {
    ((words[j / 8] << (28 - 4 * (j % 8))) as i32) >> 28
}

/// Packs signed `i8` codes 4 per word (layout 3, wide channels): `ceil(n / 4)` words.
pub fn pack_i8_words(codes: &[i8]) -> Vec<u32> {
    let mut words = vec![0u32; codes.len().div_ceil(4)];
    for (j, &q) in codes.iter().enumerate() {
        words[j / 4] |= (q as u8 as u32) << (8 * (j % 4));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_words_round_trip() {
        let codes: Vec<i8> = (0..19).map(|j| (j % 16) as i8 - 8).collect();
        let words = pack_i4_words(&codes);
        assert_eq!(words.len(), 3);
        assert_eq!(words[0] & 0xf, 8); // −8 as a nibble
        for (j, &q) in codes.iter().enumerate() {
            assert_eq!(i4_at(&words, j), q as i32);
        }
        assert_eq!(words[2] >> 12, 0, "padding nibbles are 0");
        assert_eq!(pack_i8_words(&[-1, 2, 3, 4, 5]), [0x0403_02ff, 5]);
    }

    #[test]
    fn channel_codes_round_trip() {
        let codes = [1u8, 2, 3, 200, 100, 7];
        let bits = [4u8, 8];
        let packed = pack_channel_codes(&codes, &bits).unwrap();
        assert_eq!(packed, [0x21, 0x03, 200, 100, 7]);
        assert_eq!(channel_codes_len(&bits, 3), packed.len());
        assert_eq!(unpack_channel_codes(&packed, &bits, 3).unwrap(), codes);
        assert!(unpack_channel_codes(&packed[1..], &bits, 3).is_err());
    }
}
