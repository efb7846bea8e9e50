//! A small pickle virtual machine for the opcodes a legacy `torch.save` stream uses
//! (protocol 2). Objects live in an arena and are referred to by index, so the memo shares
//! objects as Python does (a list fetched twice is one list), dropping the arena never
//! recurses, and memory grows at most linearly with the number of opcodes executed.
//!
//! Only a closed set of globals is accepted: `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` and the `torch.<Type>Storage` classes. Anything else is
//! an error, so no input can make the reader do more than build dicts, lists and tensors.

use std::collections::HashMap;

use super::objects::{kind, Global, Id, Obj, StorageRef, StorageType, TensorRef};
use crate::error::{Error, Result};

fn perr(pos: usize, msg: impl std::fmt::Display) -> Error {
    Error::Pickle(format!("at byte {pos}: {msg}"))
}

/// One pickle's objects after `STOP`, with the root object.
pub(super) struct Machine {
    arena: Vec<Obj>,
    pub root: Id,
}

impl Machine {
    pub fn get(&self, id: Id) -> &Obj {
        &self.arena[id]
    }

    /// Runs one pickle starting at `data[*pos]`; on success `*pos` is just past its `STOP`.
    pub fn run(data: &[u8], pos: &mut usize) -> Result<Machine> {
        let mut vm = Vm {
            data,
            pos: *pos,
            arena: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        };
        let root = vm.execute()?;
        *pos = vm.pos;
        Ok(Machine {
            arena: vm.arena,
            root,
        })
    }

    pub fn int(&self, id: Id, what: &str) -> Result<i128> {
        match self.get(id) {
            Obj::Int(v) => Ok(*v),
            Obj::Bool(b) => Ok(*b as i128),
            o => Err(Error::Pickle(format!(
                "{what}: expected an int, got {}",
                kind(o)
            ))),
        }
    }

    pub fn str(&self, id: Id, what: &str) -> Result<&str> {
        match self.get(id) {
            Obj::Str(s) => Ok(s),
            o => Err(Error::Pickle(format!(
                "{what}: expected a string, got {}",
                kind(o)
            ))),
        }
    }
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl Vm<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(perr(
                self.pos,
                format!(
                    "truncated: need {n} bytes, {} left",
                    self.data.len() - self.pos
                ),
            ));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| perr(self.pos, "truncated: GLOBAL line has no newline"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, o: Obj) {
        self.arena.push(o);
        self.stack.push(self.arena.len() - 1);
    }

    fn pop(&mut self, at: usize) -> Result<Id> {
        self.stack.pop().ok_or_else(|| perr(at, "stack underflow"))
    }

    fn pop_n(&mut self, n: usize, at: usize) -> Result<Vec<Id>> {
        if self.stack.len() < n {
            return Err(perr(at, "stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Id>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| perr(at, "no MARK on the stack"))?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    fn top(&self, at: usize) -> Result<Id> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| perr(at, "stack underflow"))
    }

    fn execute(&mut self) -> Result<Id> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(perr(at, format!("unsupported pickle protocol {p}")));
                    }
                }
                b'.' => {
                    let root = self.pop(at)?;
                    return Ok(root);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = match (module.as_str(), name.as_str()) {
                        ("collections", "OrderedDict") => Global::OrderedDict,
                        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
                        ("torch", n) => match StorageType::from_class(n) {
                            Some(t) => Global::Storage(t),
                            None => return Err(perr(at, format!("unknown global torch.{n}"))),
                        },
                        _ => return Err(perr(at, format!("unknown global {module}.{name}"))),
                    };
                    self.push(Obj::Global(g));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b)
                        .map_err(|e| perr(at, format!("BINUNICODE is not UTF-8: {e}")))?
                        .to_string();
                    self.push(Obj::Str(s));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Obj::Int(v as i128));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(v as i128));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 16 {
                        return Err(perr(at, format!("LONG1 of {n} bytes is too large")));
                    }
                    let b = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i128) << (8 * i);
                    }
                    // Two's complement: sign-extend from the top byte.
                    if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push(Obj::Int(v));
                }
                b'(' => self.marks.push(self.stack.len()),
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Obj::Tuple(items));
                }
                b')' => self.push(Obj::Tuple(Vec::new())),
                0x85..=0x87 => {
                    let items = self.pop_n((op - 0x84) as usize, at)?;
                    self.push(Obj::Tuple(items));
                }
                b'}' => self.push(Obj::Dict(Vec::new())),
                b']' => self.push(Obj::List(Vec::new())),
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop(at)?]
                    } else {
                        self.pop_mark(at)?
                    };
                    let t = self.top(at)?;
                    match &mut self.arena[t] {
                        Obj::List(l) => l.extend(items),
                        o => return Err(perr(at, format!("APPEND to a {}", kind(o)))),
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        self.pop_n(2, at)?
                    } else {
                        self.pop_mark(at)?
                    };
                    if items.len() % 2 != 0 {
                        return Err(perr(at, "SETITEMS with an odd number of items"));
                    }
                    let t = self.top(at)?;
                    match &mut self.arena[t] {
                        Obj::Dict(d) => d.extend(items.chunks(2).map(|kv| (kv[0], kv[1]))),
                        o => return Err(perr(at, format!("SETITEM on a {}", kind(o)))),
                    }
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    let s = self.persistent(pid).map_err(|e| perr(at, e))?;
                    self.push(Obj::Storage(s));
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let f = self.pop(at)?;
                    let o = self.reduce(f, args).map_err(|e| perr(at, e))?;
                    self.push(o);
                }
                b'q' | b'r' => {
                    let idx = if op == b'q' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let t = self.top(at)?;
                    self.memo.insert(idx, t);
                }
                b'h' | b'j' => {
                    let idx = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let id = *self
                        .memo
                        .get(&idx)
                        .ok_or_else(|| perr(at, format!("memo entry {idx} was never stored")))?;
                    self.stack.push(id);
                }
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'N' => self.push(Obj::None),
                b'b' => {
                    let _state = self.pop(at)?;
                    let t = self.top(at)?;
                    // OrderedDict state is its attribute dict (`_metadata`), not needed here.
                    if !matches!(self.arena[t], Obj::Dict(_)) {
                        let k = kind(&self.arena[t]);
                        return Err(perr(at, format!("BUILD on a {k}")));
                    }
                }
                _ => return Err(perr(at, format!("unknown opcode 0x{op:02x}"))),
            }
        }
    }

    fn persistent(&self, pid: Id) -> std::result::Result<StorageRef, String> {
        let Obj::Tuple(t) = &self.arena[pid] else {
            return Err(format!(
                "persistent id must be a tuple, got {}",
                kind(&self.arena[pid])
            ));
        };
        let get = |i: usize| t.get(i).map(|&id| &self.arena[id]);
        match (get(0), get(1), get(2), get(4)) {
            (
                Some(Obj::Str(tag)),
                Some(Obj::Global(Global::Storage(dtype))),
                Some(Obj::Str(key)),
                Some(Obj::Int(size)),
            ) if tag == "storage" => Ok(StorageRef {
                key: key.clone(),
                dtype: *dtype,
                size: usize::try_from(*size).map_err(|_| format!("bad storage size {size}"))?,
            }),
            _ => Err("persistent id is not ('storage', <Type>Storage, key, location, size)".into()),
        }
    }

    fn reduce(&self, f: Id, args: Id) -> std::result::Result<Obj, String> {
        let Obj::Tuple(a) = &self.arena[args] else {
            return Err("REDUCE arguments are not a tuple".into());
        };
        match &self.arena[f] {
            Obj::Global(Global::OrderedDict) if a.is_empty() => Ok(Obj::Dict(Vec::new())),
            Obj::Global(Global::RebuildTensorV2) if (6..=7).contains(&a.len()) => {
                let Obj::Storage(storage) = &self.arena[a[0]] else {
                    return Err("_rebuild_tensor_v2: first argument is not a storage".into());
                };
                let int = |id: Id| match &self.arena[id] {
                    Obj::Int(v) => usize::try_from(*v).ok(),
                    _ => None,
                };
                let ints = |id: Id| match &self.arena[id] {
                    Obj::Tuple(t) => t.iter().map(|&i| int(i)).collect::<Option<Vec<_>>>(),
                    _ => None,
                };
                let (Some(offset), Some(shape), Some(stride)) = (int(a[1]), ints(a[2]), ints(a[3]))
                else {
                    return Err("_rebuild_tensor_v2: offset, size or stride malformed".into());
                };
                Ok(Obj::Tensor(TensorRef {
                    storage: storage.clone(),
                    offset,
                    shape,
                    stride,
                }))
            }
            Obj::Global(g) => Err(format!("cannot call {g:?} with {} argument(s)", a.len())),
            o => Err(format!("REDUCE on a {}, not a callable", kind(o))),
        }
    }
}
