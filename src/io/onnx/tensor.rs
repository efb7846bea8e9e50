//! ONNX tensors as constants: `TensorProto` (raw little-endian bytes or the typed repeated
//! fields, inline or in an external-data file) decoded into [`Const`]. Float types (f32,
//! f16, bf16, f64) become f32; integer and bool types become i64 — shape arithmetic is all
//! the integers do here, so one integer type keeps the folding code small.

use std::path::Path;

use super::onnx::tensor_proto::{DataLocation, DataType};
use super::onnx::TensorProto;
use crate::error::{Error, Result};
use crate::limits;

/// Element values of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F(Vec<f32>),
    I(Vec<i64>),
}

/// A constant tensor with its full ONNX shape (rank 0 = scalar).
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub fn f(shape: Vec<usize>, v: Vec<f32>) -> Self {
        Const {
            shape,
            data: Data::F(v),
        }
    }
    pub fn i(shape: Vec<usize>, v: Vec<i64>) -> Self {
        Const {
            shape,
            data: Data::I(v),
        }
    }
    pub fn numel(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }
    /// The values as i64 (floats must be integral), for shape-like inputs.
    pub fn ints(&self) -> Result<Vec<i64>> {
        match &self.data {
            Data::I(v) => Ok(v.clone()),
            Data::F(v) if v.iter().all(|x| x.fract() == 0.0 && x.abs() < 9.0e15) => {
                Ok(v.iter().map(|&x| x as i64).collect())
            }
            Data::F(_) => Err(Error::Import("expected integer values".into())),
        }
    }
    /// The values as f32 (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F(v) => v.clone(),
            Data::I(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The single value of a one-element tensor, as f32.
    pub fn scalar_f(&self) -> Option<f32> {
        (self.numel() == 1).then(|| self.floats()[0])
    }
}

/// IEEE half to f32, exact (every half is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        0x1f if man == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        e => sign * (1.0 + man / 1024.0) * 2f32.powi(e - 15),
    }
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Shape of a tensor: dims non-negative and the element count within the limits.
pub fn dims(t: &TensorProto, what: &str) -> Result<Vec<usize>> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::Import(format!("{what}: dimension {d}"))))
        .collect::<Result<_>>()?;
    limits::checked_numel(&shape, what)?;
    Ok(shape)
}

/// Decodes `t`; external data is read relative to `dir` (the model's folder).
pub fn decode(t: &TensorProto, dir: &Path) -> Result<Const> {
    let name = t.name();
    let what = format!("tensor {name}");
    let shape = dims(t, &what)?;
    let n: usize = shape.iter().product();
    let external;
    let raw: Option<&[u8]> = if t.data_location() == DataLocation::External {
        external = read_external(t, dir)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let dt = DataType::try_from(t.data_type())
        .map_err(|_| Error::Import(format!("{what}: unknown data type {}", t.data_type())))?;
    let shown = format!("{shape:?}");
    let bad_len = |got: usize| {
        Error::Import(format!(
            "{what}: shape {shown} needs {n} values, the data holds {got}"
        ))
    };
    macro_rules! raw_as {
        ($size:expr, $conv:expr) => {{
            let r = raw.unwrap();
            if r.len() != n * $size {
                return Err(bad_len(r.len() / $size));
            }
            r.chunks_exact($size).map($conv).collect::<Vec<_>>()
        }};
    }
    use DataType as D;
    let data = match dt {
        D::Float if raw.is_some() => Data::F(raw_as!(4, |b: &[u8]| f32::from_le_bytes(
            b.try_into().unwrap()
        ))),
        D::Float => Data::F(t.float_data.clone()),
        D::Double if raw.is_some() => Data::F(raw_as!(8, |b: &[u8]| f64::from_le_bytes(
            b.try_into().unwrap()
        ) as f32)),
        D::Double => Data::F(t.double_data.iter().map(|&x| x as f32).collect()),
        D::Float16 | D::Bfloat16 => {
            let conv = if dt == D::Float16 {
                f16_to_f32
            } else {
                bf16_to_f32
            };
            if raw.is_some() {
                Data::F(raw_as!(2, |b: &[u8]| conv(u16::from_le_bytes([
                    b[0], b[1]
                ]))))
            } else {
                Data::F(t.int32_data.iter().map(|&x| conv(x as u16)).collect())
            }
        }
        D::Int64 if raw.is_some() => Data::I(raw_as!(8, |b: &[u8]| i64::from_le_bytes(
            b.try_into().unwrap()
        ))),
        D::Int64 => Data::I(t.int64_data.clone()),
        D::Int32 if raw.is_some() => Data::I(raw_as!(4, |b: &[u8]| i32::from_le_bytes(
            b.try_into().unwrap()
        ) as i64)),
        D::Int16 if raw.is_some() => {
            Data::I(raw_as!(2, |b: &[u8]| i16::from_le_bytes([b[0], b[1]]) as i64))
        }
        D::Uint16 if raw.is_some() => {
            Data::I(raw_as!(2, |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as i64))
        }
        D::Int8 if raw.is_some() => Data::I(raw_as!(1, |b: &[u8]| b[0] as i8 as i64)),
        D::Uint8 | D::Bool if raw.is_some() => Data::I(raw_as!(1, |b: &[u8]| b[0] as i64)),
        D::Int32 | D::Int16 | D::Uint16 | D::Int8 | D::Uint8 | D::Bool => {
            Data::I(t.int32_data.iter().map(|&x| x as i64).collect())
        }
        D::Uint32 if raw.is_some() => Data::I(raw_as!(4, |b: &[u8]| u32::from_le_bytes(
            b.try_into().unwrap()
        ) as i64)),
        D::Uint32 => Data::I(t.uint64_data.iter().map(|&x| x as i64).collect()),
        d => {
            return Err(Error::Import(format!(
                "{what}: data type {} is not supported",
                d.as_str_name()
            )))
        }
    };
    let c = Const { shape, data };
    if c.numel() != n {
        return Err(bad_len(c.numel()));
    }
    Ok(c)
}

/// Reads the bytes of an external-data tensor: `location` (a relative path inside the
/// model's folder, never escaping it, symlinks included), optional `offset` and `length`.
fn read_external(t: &TensorProto, dir: &Path) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let what = format!("tensor {}: external data", t.name());
    let err = |m: String| Error::Import(format!("{what}: {m}"));
    let (mut location, mut offset, mut length) = (None, 0u64, None);
    for kv in &t.external_data {
        let num = || {
            kv.value()
                .parse::<u64>()
                .map_err(|_| err(format!("{} = {:?} is not a number", kv.key(), kv.value())))
        };
        match kv.key() {
            "location" => location = Some(kv.value().to_string()),
            "offset" => offset = num()?,
            "length" => length = Some(num()?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| err("no location".into()))?;
    let rel = Path::new(&location);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || location.is_empty() {
        return Err(err(format!(
            "location {location:?} must be a relative path inside the model's folder"
        )));
    }
    let path = dir.join(rel);
    let io = |e| Error::io(&path, e);
    // Symlinks could still lead outside: compare the resolved paths.
    let real = path.canonicalize().map_err(io)?;
    let real_dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !real.starts_with(&real_dir) {
        return Err(err(format!(
            "location {location:?} resolves outside the model's folder"
        )));
    }
    let mut f = std::fs::File::open(&real).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(err(format!("{location:?} is not a regular file")));
    }
    let size = meta.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    let shape = dims(t, &what)?;
    let elem = match DataType::try_from(t.data_type()) {
        Ok(DataType::Double | DataType::Int64 | DataType::Uint64) => 8,
        Ok(DataType::Float | DataType::Int32 | DataType::Uint32) => 4,
        Ok(DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16) => 2,
        _ => 1,
    };
    let expected = shape.iter().product::<usize>() as u64 * elem;
    if length != expected || offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(err(format!(
            "offset {offset} length {length} in a {size}-byte file {location:?}; the tensor needs {expected} bytes"
        )));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}
