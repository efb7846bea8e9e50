//! Reader for the legacy (pre-1.6, non-zip) `torch.save` format, written without Python.
//!
//! The stream is five pickles followed by raw storage data:
//!
//! ```text
//! pickle 1  magic number 0x1950a86a20f9469cfc6c
//! pickle 2  protocol version 1001
//! pickle 3  sys info {'protocol_version', 'little_endian', 'type_sizes'}
//! pickle 4  the state dict: OrderedDict name → _rebuild_tensor_v2(storage, offset, size,
//!           stride, requires_grad, hooks), storage = persistent id
//!           ('storage', <Type>Storage, key, location, element count)
//! pickle 5  the list of storage keys, in data order
//! data      per key: element count as int64 LE, then count × element size bytes (LE)
//! ```
//!
//! Float tensors come back as row-major [`Tensor`] copies of their (possibly strided) views:
//! EfficientNet-Lite files converted from TF store conv weights as permuted views. Tensors of
//! other types (e.g. BatchNorm's `num_batches_tracked`, a `LongStorage`) are recorded with
//! their type and shape so callers can skip them by name. Every size read from the input is
//! checked against the bytes that remain before anything is allocated.

mod objects;
mod vm;

use std::collections::{HashMap, HashSet};

pub use objects::StorageType;
use objects::{Obj, TensorRef};
use vm::Machine;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The magic number `torch.save` writes first.
pub const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The only legacy protocol version torch ever wrote.
pub const PROTOCOL_VERSION: i128 = 1001;

/// One tensor of a state dict.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A `FloatStorage` tensor, copied out in row-major order.
    F32(Tensor),
    /// Any other element type: only its type and shape are kept.
    Other {
        dtype: StorageType,
        shape: Vec<usize>,
    },
}

impl Entry {
    pub fn shape(&self) -> &[usize] {
        match self {
            Entry::F32(t) => &t.shape,
            Entry::Other { shape, .. } => shape,
        }
    }

    pub fn dtype(&self) -> StorageType {
        match self {
            Entry::F32(_) => StorageType::Float,
            Entry::Other { dtype, .. } => *dtype,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }
}

/// A state dict in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    entries: Vec<(String, Entry)>,
}

impl StateDict {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Total number of elements over all entries, float or not.
    pub fn numel(&self) -> usize {
        self.entries.iter().map(|(_, e)| e.numel()).sum()
    }

    pub fn into_entries(self) -> Vec<(String, Entry)> {
        self.entries
    }
}

/// Parses a legacy `torch.save` stream holding a state dict.
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(Error::Pickle(
            "this is a zip-format torch file (torch >= 1.6); only the legacy format is read".into(),
        ));
    }
    let mut pos = 0;
    let magic = Machine::run(bytes, &mut pos)?;
    if magic.int(magic.root, "magic number").ok() != Some(MAGIC) {
        return Err(Error::Pickle(
            "not a legacy torch.save file: bad magic number".into(),
        ));
    }
    let proto = Machine::run(bytes, &mut pos)?;
    let v = proto.int(proto.root, "protocol version")?;
    if v != PROTOCOL_VERSION {
        return Err(Error::Pickle(format!(
            "unsupported torch protocol version {v}, expected {PROTOCOL_VERSION}"
        )));
    }
    check_sys_info(&Machine::run(bytes, &mut pos)?)?;
    let tensors = tensor_refs(&Machine::run(bytes, &mut pos)?)?;
    let keys = storage_keys(&Machine::run(bytes, &mut pos)?)?;
    let storages = storage_data(bytes, pos, &keys, &storage_types(&tensors)?)?;
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let e = materialize(bytes, name, t, &storages)?;
        entries.push((name.clone(), e));
    }
    Ok(StateDict { entries })
}

fn check_sys_info(m: &Machine) -> Result<()> {
    let Obj::Dict(d) = m.get(m.root) else {
        return Err(Error::Pickle("sys info is not a dict".into()));
    };
    for &(k, v) in d {
        if matches!(m.get(k), Obj::Str(s) if s == "little_endian")
            && matches!(m.get(v), Obj::Bool(false))
        {
            return Err(Error::Pickle(
                "file was written on a big-endian machine; not supported".into(),
            ));
        }
    }
    Ok(())
}

fn tensor_refs(m: &Machine) -> Result<Vec<(String, TensorRef)>> {
    let Obj::Dict(d) = m.get(m.root) else {
        return Err(Error::Pickle(format!(
            "state dict is a {}, not an OrderedDict",
            objects::kind(m.get(m.root))
        )));
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(d.len());
    for &(k, v) in d {
        let name = m.str(k, "state dict key")?.to_string();
        let Obj::Tensor(t) = m.get(v) else {
            return Err(Error::Pickle(format!(
                "state dict entry {name} is a {}, not a tensor",
                objects::kind(m.get(v))
            )));
        };
        if !seen.insert(name.clone()) {
            return Err(Error::Pickle(format!(
                "state dict key {name} appears twice"
            )));
        }
        out.push((name, t.clone()));
    }
    Ok(out)
}

fn storage_keys(m: &Machine) -> Result<Vec<String>> {
    let Obj::List(l) = m.get(m.root) else {
        return Err(Error::Pickle("storage key list is not a list".into()));
    };
    l.iter()
        .map(|&id| m.str(id, "storage key").map(str::to_string))
        .collect()
}

/// Where one storage's elements lie in the file: (byte offset, element count).
type Span = (usize, usize);

/// Element type of every storage, from the persistent ids of the tensors that use it.
fn storage_types(tensors: &[(String, TensorRef)]) -> Result<HashMap<&str, StorageType>> {
    let mut out: HashMap<&str, StorageType> = HashMap::new();
    for (name, t) in tensors {
        let s = &t.storage;
        if let Some(&prev) = out.get(s.key.as_str()) {
            if prev != s.dtype {
                return Err(Error::Pickle(format!(
                    "tensor {name}: storage {} is used as {:?} and as {prev:?}",
                    s.key, s.dtype
                )));
            }
        }
        out.insert(s.key.as_str(), s.dtype);
    }
    Ok(out)
}

fn storage_data<'a>(
    bytes: &[u8],
    mut pos: usize,
    keys: &'a [String],
    types: &HashMap<&str, StorageType>,
) -> Result<HashMap<&'a str, Span>> {
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        // Torch writes only storages some tensor uses, so each listed key has a type.
        let dtype = types.get(key.as_str()).ok_or_else(|| {
            Error::Pickle(format!(
                "storage {key} is used by no tensor, so its element size is unknown"
            ))
        })?;
        let head = bytes.get(pos..pos.saturating_add(8)).ok_or_else(|| {
            Error::Pickle(format!(
                "truncated: storage {key} has no element count at byte {pos}"
            ))
        })?;
        let mut b = [0u8; 8];
        b.copy_from_slice(head);
        let count = i64::from_le_bytes(b);
        pos += 8;
        let left = bytes.len() - pos;
        let n_bytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size()))
            .filter(|&n| n <= left)
            .ok_or_else(|| {
                Error::Pickle(format!(
                    "truncated: storage {key} declares {count} {dtype:?} elements, {left} bytes left"
                ))
            })?;
        if out
            .insert(key.as_str(), (pos, n_bytes / dtype.size()))
            .is_some()
        {
            return Err(Error::Pickle(format!("storage key {key} listed twice")));
        }
        pos += n_bytes;
    }
    Ok(out)
}

fn materialize(
    bytes: &[u8],
    name: &str,
    t: &TensorRef,
    storages: &HashMap<&str, Span>,
) -> Result<Entry> {
    let s = &t.storage;
    let &(start, count) = storages.get(s.key.as_str()).ok_or_else(|| {
        Error::Pickle(format!(
            "tensor {name}: storage {} is not in the storage list",
            s.key
        ))
    })?;
    if count != s.size {
        return Err(Error::Pickle(format!(
            "tensor {name}: storage {} holds {count} elements, its header says {}",
            s.key, s.size
        )));
    }
    if t.shape.len() != t.stride.len() {
        return Err(Error::Pickle(format!(
            "tensor {name}: shape {:?} and stride {:?} differ in rank",
            t.shape, t.stride
        )));
    }
    let bad = || {
        Error::Pickle(format!(
            "tensor {name}: shape {:?}, stride {:?} at offset {} reaches outside storage {} of \
             {count} elements",
            t.shape, t.stride, t.offset, s.key
        ))
    };
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(bad)?;
    // Highest element index the view touches, plus one; also bounds the odometer below.
    let reach = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &st)| a.checked_add(d.checked_mul(st)?));
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &st)| {
            a.checked_add(d.saturating_sub(1).checked_mul(st)?)
        });
    // More elements than the storage would mean overlapping views; refusing them also
    // bounds the allocation by the file size.
    if numel > 0 && (reach.is_none() || last.is_none_or(|l| l >= count) || numel > count) {
        return Err(bad());
    }
    if s.dtype != StorageType::Float {
        return Ok(Entry::Other {
            dtype: s.dtype,
            shape: t.shape.clone(),
        });
    }
    let data = &bytes[start..start + 4 * count];
    Ok(Entry::F32(Tensor {
        shape: t.shape.clone(),
        data: gather_f32(data, t.offset, &t.shape, &t.stride, numel),
    }))
}

/// Copies a strided view out of little-endian f32 storage in row-major order. The caller has
/// checked that every index the view touches is inside `data`.
fn gather_f32(data: &[u8], offset: usize, shape: &[usize], stride: &[usize], n: usize) -> Vec<f32> {
    let read = |i: usize| {
        let c = &data[4 * i..4 * i + 4];
        f32::from_le_bytes([c[0], c[1], c[2], c[3]])
    };
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    let mut at = offset;
    for _ in 0..n {
        out.push(read(at));
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            at += stride[d];
            if idx[d] < shape[d] {
                break;
            }
            at -= stride[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}
