//! The tensors of a quantized file: per-channel codes, scales, zero points and bit-widths
//! (layout in the parent module's docs), and the check of the graph they are read into.

use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::io::model::{Data, ModelFile, RawTensor};
use crate::quant::pack::{channel_codes_len, pack_channel_codes, unpack_channel_codes};
use crate::quant::scheme::MAX_BITS;
use crate::quant::QParams;

/// Checks, before any allocation, that every node with parameters in a quantized file's
/// graph `g` is a conv or linear layer whose weight has a size in range and whose codes
/// tensor is large enough for it, so the memory used stays proportional to the file's size.
pub(super) fn check_layers(g: &Graph, f: &ModelFile, path: &Path) -> Result<()> {
    let err = |msg: String| Error::ModelFile {
        path: path.to_path_buf(),
        msg,
    };
    for n in &g.nodes {
        // A standalone BatchNorm keeps f32 parameters (read by `from_file`).
        if n.op.param_names().is_empty() || matches!(n.op, Op::BatchNorm { .. }) {
            continue;
        }
        let Some(shape) = n.op.weight_shape() else {
            return Err(err(format!(
                "node {} of kind {} in a quantized graph",
                n.name,
                n.op.kind()
            )));
        };
        let numel = crate::limits::checked_numel(&shape, &format!("node {}", n.name))?;
        let codes = format!("{}.weight.codes", n.name);
        let stored = f.tensors.get(&codes).map_or(0, |t| t.byte_len());
        if stored < numel.div_ceil(2) {
            return Err(err(format!(
                "tensor {codes}: {stored} bytes cannot hold the {numel} codes of {} {:?}",
                n.name, shape
            )));
        }
    }
    Ok(())
}

/// Codes are stored channel by channel (`quant::pack`, layout 2).
pub(super) fn put_codes(
    f: &mut ModelFile,
    key: &str,
    shape: &[usize],
    params: &[QParams],
    codes: &[u8],
) -> Result<()> {
    let c = params.len();
    if c == 0 || shape.first() != Some(&c) || !codes.len().is_multiple_of(c) {
        return Err(Error::Quant(format!(
            "{key}: {c} channel quantizers and {} codes for shape {shape:?}",
            codes.len()
        )));
    }
    let bits: Vec<u8> = params.iter().map(|p| p.bits).collect();
    let data = pack_channel_codes(codes, &bits)?;
    let n = data.len();
    f.tensors.insert(
        format!("{key}.codes"),
        RawTensor {
            shape: vec![n],
            data: Data::U8(data),
        },
    );
    f.tensors.insert(
        format!("{key}.scale"),
        RawTensor::f32(vec![c], params.iter().map(|p| p.scale).collect()),
    );
    f.tensors.insert(
        format!("{key}.zero"),
        RawTensor {
            shape: vec![c],
            data: Data::I32(params.iter().map(|p| p.zero_point).collect()),
        },
    );
    f.tensors.insert(
        format!("{key}.bits"),
        RawTensor {
            shape: vec![c],
            data: Data::U8(params.iter().map(|p| p.bits).collect()),
        },
    );
    Ok(())
}

pub(super) fn take_codes(
    f: &mut ModelFile,
    key: &str,
    shape: &[usize],
) -> std::result::Result<(Vec<QParams>, Vec<u8>), String> {
    let mut take = |suffix: &str| {
        f.tensors
            .remove(&format!("{key}.{suffix}"))
            .ok_or(format!("tensor {key}.{suffix} is missing"))
    };
    let (codes, scale, zero, bits) = (take("codes")?, take("scale")?, take("zero")?, take("bits")?);
    let (Data::U8(codes), Data::F32(scale), Data::I32(zero), Data::U8(bits)) =
        (codes.data, scale.data, zero.data, bits.data)
    else {
        return Err(format!("{key}: wrong tensor types"));
    };
    let c = shape.first().copied().unwrap_or(0);
    if c == 0 || scale.len() != c || zero.len() != c || bits.len() != c {
        return Err(format!("{key}: expected {c} per-channel quantizers"));
    }
    if let Some((i, b)) = bits.iter().enumerate().find(|(_, &b)| b > MAX_BITS) {
        return Err(format!(
            "{key}.bits: channel {i} has {b} bits; at most {MAX_BITS}"
        ));
    }
    let n = crate::limits::checked_numel(shape, key).map_err(|e| e.to_string())?;
    let params: Vec<QParams> = (0..c)
        .map(|i| QParams {
            scale: scale[i],
            zero_point: zero[i],
            bits: bits[i],
        })
        .collect();
    let per = n / c.max(1);
    let stored = channel_codes_len(&bits, per);
    if codes.len() != stored {
        return Err(format!(
            "{key}: {} code bytes, the bit-widths need {stored}",
            codes.len()
        ));
    }
    let out = unpack_channel_codes(&codes, &bits, per).map_err(|e| e.to_string())?;
    Ok((params, out))
}
