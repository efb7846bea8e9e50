//! Fuzz regressions for the loaders (model file, quantized file, legacy torch pickle, image):
//! every file of the fuzz corpus (`fuzz/corpus/<target>/`) and every crash found so far
//! (`fuzz/crashes/<target>/`) goes through its loader without a panic (an error is fine);
//! the seeds are accepted whole, so the corpus reaches past the parsers; and a short
//! mutation pass (proptest: byte flips, overwrites, inserts, deletions, truncations and
//! boundary numbers in the JSON metadata) runs every loader on mutated seeds. The coverage-guided
//! fuzzer itself is `cargo fuzz` (see `fuzz/README.md`).

mod common;
#[path = "../fuzz/src/harness.rs"]
mod harness;
#[path = "common/pickle_writer.rs"]
mod pickle_writer;
#[path = "fuzz_regress/seeds.rs"]
mod seeds;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;

type Loader = fn(&[u8]) -> Result<(), String>;

const TARGETS: [(&str, Loader); 4] = [
    ("model", harness::model),
    ("qmodel", harness::qmodel),
    ("pickle", harness::pickle),
    ("image", harness::image),
];

fn loader(target: &str) -> Loader {
    TARGETS.iter().find(|(t, _)| *t == target).unwrap().1
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the folder does not exist).
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `f` on `bytes`; a panic becomes `Err` with its message.
fn no_panic(f: Loader, bytes: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        let _ = f(bytes);
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

#[test]
fn corpus_files_load_without_panic() {
    let mut panics = Vec::new();
    let mut n = 0;
    for (target, f) in TARGETS {
        for p in files("corpus", target) {
            n += 1;
            let bytes = std::fs::read(&p).unwrap();
            if let Err(msg) = no_panic(f, &bytes) {
                panics.push(format!("{target} {}: {msg}", p.display()));
            }
        }
    }
    assert!(
        panics.is_empty(),
        "loaders panicked on:\n{}",
        panics.join("\n")
    );
    let seeds = seeds::all().len();
    assert!(
        n >= seeds,
        "{n} corpus files, expected at least the {seeds} seeds"
    );
}

/// Every crash input is a broken file: its loader must reject it with an error. Checking the
/// rejection, not only the absence of a panic, keeps the test meaningful in release builds,
/// where an overflow does not panic but silently gives a wrong value.
#[test]
fn crash_files_are_rejected_without_panic() {
    let mut bad = Vec::new();
    for (target, f) in TARGETS {
        for p in files("crashes", target) {
            let bytes = std::fs::read(&p).unwrap();
            match no_panic(f, &bytes).map(|()| f(&bytes)) {
                Err(msg) => bad.push(format!("{target} {}: panicked: {msg}", p.display())),
                Ok(Ok(())) => bad.push(format!("{target} {}: accepted", p.display())),
                Ok(Err(_)) => {}
            }
        }
    }
    assert!(
        bad.is_empty(),
        "crash inputs not rejected:\n{}",
        bad.join("\n")
    );
}

/// The seeds as built now and as committed are accepted whole (the pickle's state dict is
/// not an EfficientNet, so only the reader must accept it). `PTQ4_FUZZ_WRITE_SEEDS=1`
/// rewrites the committed ones.
#[test]
fn seeds_are_accepted_whole() {
    let write = std::env::var_os("PTQ4_FUZZ_WRITE_SEEDS").is_some();
    for (target, name, bytes) in seeds::all() {
        let path = fuzz_dir().join("corpus").join(target).join(&name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (PTQ4_FUZZ_WRITE_SEEDS=1 writes it)",
                path.display()
            )
        });
        for (what, b) in [("built", &bytes), ("committed", &committed)] {
            let r = match target {
                "pickle" => ptq4::io::pickle::read_state_dict(b)
                    .map(|sd| assert_eq!(sd.len(), 3))
                    .map_err(|e| e.to_string()),
                t => loader(t)(b),
            };
            assert!(r.is_ok(), "{what} seed {target}/{name} rejected: {r:?}");
        }
    }
}

/// One edit of a seed; positions are [`Index`]es into the current bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Set(Index, u8),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// Overwrites bytes with a little-endian boundary value of `width` bytes.
    Boundary(Index, u64, usize),
    /// Replaces the ASCII number at or after the position with a boundary number.
    Number(Index, &'static str),
}

const BOUNDARIES: [u64; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 63,
    u64::MAX,
];
const NUMBERS: [&str; 10] = [
    "0",
    "1",
    "-1",
    "2",
    "65536",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "0.0",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (
            any::<Index>(),
            prop::sample::select(&BOUNDARIES[..]),
            1usize..=8
        )
            .prop_map(|(i, v, w)| Mutation::Boundary(i, v, w)),
        (any::<Index>(), prop::sample::select(&NUMBERS[..]))
            .prop_map(|(i, s)| Mutation::Number(i, s)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    if b.is_empty() {
        if let Mutation::Insert(_, v) = m {
            b.extend_from_slice(v);
        }
        return;
    }
    let len = b.len();
    match m {
        Mutation::Set(i, v) => b[i.index(len)] = *v,
        Mutation::Flip(i, bit) => b[i.index(len)] ^= 1 << bit,
        Mutation::Insert(i, v) => {
            let at = i.index(b.len() + 1);
            b.splice(at..at, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i.index(b.len());
            b.drain(at..(at + n).min(b.len()));
        }
        Mutation::Truncate(i) => b.truncate(i.index(b.len())),
        Mutation::Boundary(i, v, w) => {
            let at = i.index(b.len());
            let end = (at + w).min(b.len());
            b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
        Mutation::Number(i, s) => {
            let from = i.index(b.len());
            let Some(start) = b[from..].iter().position(u8::is_ascii_digit) else {
                return;
            };
            let start = from + start;
            let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            b.splice(start..start + len, s.bytes());
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn mutation_pass(target: &'static str) {
    let seeds: Vec<Vec<u8>> = files("corpus", target)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no corpus for {target}");
    let f = loader(target);
    // Mutated files per loader (`PTQ4_FUZZ_CASES`, CI runs more) from a fixed RNG seed, so a
    // failure reproduces (`PTQ4_FUZZ_SEED` explores other mutations).
    let cfg =
        common::proptest_config_seeded(env_or("PTQ4_FUZZ_CASES", 300), env_or("PTQ4_FUZZ_SEED", 1));
    proptest!(cfg, |(seed in any::<Index>(), edits in prop::collection::vec(mutation(), 1..6))| {
        let mut bytes = seeds[seed.index(seeds.len())].clone();
        for m in &edits {
            apply(&mut bytes, m);
        }
        let r = no_panic(f, &bytes);
        prop_assert!(r.is_ok(), "{} panicked: {:?}", target, r);
    });
}

#[test]
fn mutated_model_files_do_not_panic() {
    mutation_pass("model");
}

#[test]
fn mutated_quantized_files_do_not_panic() {
    mutation_pass("qmodel");
}

#[test]
fn mutated_pickles_do_not_panic() {
    mutation_pass("pickle");
}

#[test]
fn mutated_images_do_not_panic() {
    mutation_pass("image");
}
