//! The legacy torch pickle reader on hand-made streams: a tiny pickle writer below builds
//! files shaped like `torch.save(state_dict)` output (protocol 2, the opcodes torch uses),
//! then valid, strided, shared and malformed variants are read back.

mod common;

use ptq4::io::pickle::{read_state_dict, Entry, StorageType, MAGIC};
use ptq4::Error;

#[path = "common/pickle_writer.rs"]
mod pickle_writer;

use pickle_writer::W;

/// One state-dict entry: a view of a storage.
#[derive(Clone)]
struct T {
    name: &'static str,
    class: &'static str,
    key: &'static str,
    size: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn float(name: &'static str, key: &'static str, size: usize, shape: &[usize]) -> T {
    let mut stride = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        stride[i] = stride[i + 1] * shape[i + 1];
    }
    T {
        name,
        class: "FloatStorage",
        key,
        size,
        offset: 0,
        shape: shape.to_vec(),
        stride,
    }
}

fn header() -> Vec<u8> {
    let mut w = W::default();
    w.proto().op(0x8a).op(10);
    w.0.extend_from_slice(&MAGIC.to_le_bytes()[..10]);
    w.stop();
    w.proto().int(1001).stop();
    w.proto().op(b'}').mark();
    w.str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88);
    w.str("type_sizes").op(b'}').mark();
    w.str("short").int(2).str("int").int(4).str("long").int(4);
    w.op(b'u').op(b'u').stop();
    w.0
}

/// The state-dict pickle, memoizing the OrderedDict and rebuild globals as torch does.
fn state_dict_pickle(ts: &[T]) -> Vec<u8> {
    let mut w = W::default();
    w.proto().global("collections", "OrderedDict").put(0);
    w.op(b')').op(b'R').put(1).mark();
    for (i, t) in ts.iter().enumerate() {
        w.str(t.name);
        if i == 0 {
            w.global("torch._utils", "_rebuild_tensor_v2").put(2);
        } else {
            w.get(2);
        }
        w.mark().mark().str("storage").global("torch", t.class);
        w.str(t.key)
            .str("cpu")
            .int(t.size)
            .op(b'N')
            .op(b't')
            .op(b'Q');
        w.int(t.offset).ints(&t.shape).ints(&t.stride);
        w.op(0x89).get(0).op(b')').op(b'R').op(b't').op(b'R');
    }
    w.op(b'u');
    // OrderedDict state: {'_metadata': OrderedDict()}, applied with BUILD.
    w.op(b'}')
        .str("_metadata")
        .get(0)
        .op(b')')
        .op(b'R')
        .op(b's')
        .op(b'b');
    w.stop();
    w.0
}

fn keys_pickle(keys: &[&str]) -> Vec<u8> {
    let mut w = W::default();
    w.proto().op(b']').put(0).mark();
    for k in keys {
        w.str(k);
    }
    w.op(b'e').stop();
    w.0
}

fn storage(count: i64, bytes: &[u8]) -> Vec<u8> {
    let mut v = count.to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn file(ts: &[T], keys: &[&str], data: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header();
    out.extend(state_dict_pickle(ts));
    out.extend(keys_pickle(keys));
    for d in data {
        out.extend_from_slice(d);
    }
    out
}

/// A BatchNorm-like state dict: weight [2, 3], bias [2], num_batches_tracked (int64 scalar).
fn bn_file() -> Vec<u8> {
    let nbt = T {
        class: "LongStorage",
        ..float("bn.num_batches_tracked", "k2", 1, &[])
    };
    file(
        &[
            float("conv.weight", "k0", 6, &[2, 3]),
            float("conv.bias", "k1", 2, &[2]),
            nbt,
        ],
        &["k0", "k1", "k2"],
        &[
            storage(6, &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            storage(2, &f32s(&[-0.5, 0.25])),
            storage(1, &7i64.to_le_bytes()),
        ],
    )
}

fn pickle_err(bytes: &[u8]) -> String {
    match read_state_dict(bytes) {
        Err(Error::Pickle(m)) => m,
        other => panic!("expected a pickle error, got {other:?}"),
    }
}

#[test]
fn reads_floats_and_records_other_types_in_order() {
    let sd = read_state_dict(&bn_file()).unwrap();
    let names: Vec<&str> = sd.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        ["conv.weight", "conv.bias", "bn.num_batches_tracked"]
    );
    let Some(Entry::F32(w)) = sd.get("conv.weight") else {
        panic!("conv.weight is not f32")
    };
    assert_eq!(w.shape, vec![2, 3]);
    assert_eq!(w.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let Some(Entry::F32(b)) = sd.get("conv.bias") else {
        panic!("conv.bias is not f32")
    };
    assert_eq!(b.data, vec![-0.5, 0.25]);
    let nbt = sd.get("bn.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype(), StorageType::Long);
    assert!(nbt.shape().is_empty());
    assert_eq!(sd.numel(), 6 + 2 + 1);
}

#[test]
fn strided_offset_and_shared_views_are_gathered_row_major() {
    // Storage [0..8): "t" is its transpose-like view [2, 3] with stride [1, 2] at offset 1,
    // "tail" the last 3 elements, "all" the whole storage; all three share one storage.
    let data: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let t = T {
        offset: 1,
        stride: vec![1, 2],
        ..float("t", "s", 8, &[2, 3])
    };
    let tail = T {
        offset: 5,
        ..float("tail", "s", 8, &[3])
    };
    let all = float("all", "s", 8, &[8]);
    let sd = read_state_dict(&file(&[t, tail, all], &["s"], &[storage(8, &f32s(&data))])).unwrap();
    let get = |n: &str| match sd.get(n) {
        Some(Entry::F32(t)) => t.data.clone(),
        e => panic!("{n}: {e:?}"),
    };
    assert_eq!(get("t"), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    assert_eq!(get("tail"), vec![5.0, 6.0, 7.0]);
    assert_eq!(get("all"), data);
}

#[test]
fn every_truncation_is_an_error() {
    let full = bn_file();
    for n in 0..full.len() {
        let r = read_state_dict(&full[..n]);
        assert!(matches!(r, Err(Error::Pickle(_))), "prefix {n}: {r:?}");
    }
}

#[test]
fn unknown_opcode_and_global_are_named() {
    let mut f = header();
    f.extend_from_slice(&[0x80, 2, 0xff]);
    assert!(pickle_err(&f).contains("unknown opcode 0xff"));
    let mut w = W::default();
    w.proto().global("os", "system").stop();
    let mut f = header();
    f.extend(w.0);
    assert!(pickle_err(&f).contains("unknown global os.system"));
}

#[test]
fn storage_shorter_than_its_count_is_an_error() {
    let f = file(
        &[float("w", "k", 4, &[4])],
        &["k"],
        &[storage(4, &f32s(&[1.0, 2.0, 3.0]))],
    );
    assert!(pickle_err(&f).contains("storage k declares 4 Float elements"));
    // A count near i64::MAX must fail before allocating anything.
    let f = file(
        &[float("w", "k", 4, &[4])],
        &["k"],
        &[storage(i64::MAX, &[])],
    );
    assert!(pickle_err(&f).contains("declares"));
    let f = file(&[float("w", "k", 4, &[4])], &["k"], &[storage(-1, &[])]);
    assert!(pickle_err(&f).contains("declares -1"));
}

#[test]
fn missing_storage_and_header_mismatch_are_errors() {
    let f = file(
        &[float("w", "k", 2, &[2]), float("v", "gone", 2, &[2])],
        &["k"],
        &[storage(2, &f32s(&[1.0, 2.0]))],
    );
    assert!(pickle_err(&f).contains("tensor v: storage gone is not in the storage list"));
    let f = file(
        &[float("w", "k", 3, &[2])],
        &["k"],
        &[storage(2, &f32s(&[1.0, 2.0]))],
    );
    assert!(pickle_err(&f).contains("holds 2 elements, its header says 3"));
}

#[test]
fn bad_views_are_errors() {
    let data = [storage(4, &f32s(&[1.0, 2.0, 3.0, 4.0]))];
    let out_of_range = T {
        stride: vec![3, 1],
        ..float("w", "k", 4, &[2, 2])
    };
    let msg = pickle_err(&file(&[out_of_range], &["k"], &data));
    assert!(
        msg.contains("tensor w: shape [2, 2], stride [3, 1]"),
        "{msg}"
    );
    let offset = T {
        offset: 3,
        ..float("w", "k", 4, &[2])
    };
    assert!(pickle_err(&file(&[offset], &["k"], &data)).contains("reaches outside"));
    let rank = T {
        stride: vec![1],
        ..float("w", "k", 4, &[2, 2])
    };
    assert!(pickle_err(&file(&[rank], &["k"], &data)).contains("differ in rank"));
    // Stride 0 would make 1000 elements out of 4: refused, so allocation stays bounded.
    let broadcast = T {
        stride: vec![0],
        ..float("w", "k", 4, &[1000])
    };
    assert!(pickle_err(&file(&[broadcast], &["k"], &data)).contains("reaches outside"));
}

#[test]
fn wrong_headers_are_errors() {
    assert!(pickle_err(b"PK\x03\x04rest").contains("zip-format"));
    let mut w = W::default();
    w.proto().int(5).stop();
    assert!(pickle_err(&w.0).contains("bad magic number"));
    assert!(pickle_err(&[]).contains("truncated"));
    // A BINUNICODE claiming 4 GiB fails on the length check, not on allocation.
    let mut f = header();
    f.extend_from_slice(&[0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff, b'a']);
    assert!(pickle_err(&f).contains("truncated"));
}

#[test]
fn non_tensor_entries_and_bad_memo_are_errors() {
    let mut w = W::default();
    w.proto().op(b'}').str("x").int(3).op(b's').stop();
    let mut f = header();
    f.extend(w.0);
    assert!(pickle_err(&f).contains("entry x is a int, not a tensor"));
    let mut w = W::default();
    w.proto().get(7).stop();
    let mut f = header();
    f.extend(w.0);
    assert!(pickle_err(&f).contains("memo entry 7 was never stored"));
}

#[test]
fn deep_nesting_neither_recurses_nor_overflows() {
    let mut w = W::default();
    w.proto().op(b')');
    for _ in 0..200_000 {
        w.op(0x85);
    }
    w.stop();
    let mut f = header();
    f.extend(w.0);
    assert!(pickle_err(&f).contains("state dict is a tuple"));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::common::proptest_config(64))]
        /// Any corruption of a valid file parses or fails with a pickle error; never panics.
        #[test]
        fn corrupted_files_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut f = bn_file();
            for (i, b) in edits {
                let at = i.index(f.len());
                f[at] = b;
            }
            match read_state_dict(&f) {
                Ok(_) | Err(Error::Pickle(_)) => {}
                Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
            }
        }
    }
}
