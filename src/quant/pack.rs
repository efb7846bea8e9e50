//! 4-bit code packing: two codes per byte, low nibble first (ONNX INT4/UINT4 layout):
//! byte i = code[2i] | code[2i+1] << 4. An odd count leaves the last high nibble 0; unpacking
//! rejects a non-zero pad nibble. Signed codes ([−8, 7]) are stored as two's-complement
//! nibbles and sign-extended on unpack. This is the only module that knows the nibble order.
//!
//! Flat packing follows ONNX (the whole tensor as one sequence). Row packing pads every row
//! (e.g. one output channel of a weight) to a whole byte, so each row starts on a byte
//! boundary: `rows · ceil(row_len / 2)` bytes.

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
