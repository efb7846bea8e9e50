//! The module map has no import cycles: between the stages (the crate's top-level modules),
//! and inside `engine/` file by file (ARCHITECTURE.md). A reference is any `crate::…`,
//! `super::…` or `self::…` path in a source file outside comments, including grouped `use`
//! items; it points at the longest module path that is a file of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` with its module path (`engine::exec::int_cpu`; `mod.rs` and
/// `lib.rs` name their directory's module).
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            let mut sub = prefix.to_vec();
            sub.push(stem);
            modules(&p, &sub, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let mut m = prefix.to_vec();
            if !matches!(stem.as_str(), "mod" | "lib" | "main") {
                m.push(stem);
            }
            out.insert(m, p);
        }
    }
}

/// Code without `//` comments and string literals' contents.
fn code(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths a source file refers to: `crate::a::b`, `super::x`, `self::y`, expanded through
/// one level of `{…}` groups.
fn paths(code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let start_ok = i == 0 || !ident(b[i - 1] as char) && b[i - 1] != b':';
        let root = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|r| rest.starts_with(r));
        if root.is_none() || !start_ok {
            i += 1;
            continue;
        }
        // Read `a::b::c` or `a::b::{x, y::z}`.
        let mut j = i;
        let mut segs = Vec::new();
        loop {
            let s = j;
            while j < b.len() && ident(b[j] as char) {
                j += 1;
            }
            segs.push(code[s..j].to_string());
            if code[j..].starts_with("::") {
                j += 2;
                if code[j..].starts_with('{') {
                    let end = code[j..].find('}').map_or(b.len(), |e| j + e);
                    for item in code[j + 1..end].split(',') {
                        let item: Vec<String> = item
                            .trim()
                            .split("::")
                            .map(|s| s.trim().split(' ').next().unwrap_or("").to_string())
                            .filter(|s| !s.is_empty() && s != "self" && s != "{")
                            .collect();
                        out.push([segs.clone(), item].concat());
                    }
                    j = end;
                    break;
                }
            } else {
                out.push(segs);
                break;
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// The unit a module belongs to: files of `engine/` are units of their own, every other
/// module belongs to its stage (top-level module).
fn unit(m: &[String]) -> String {
    if m.first().is_some_and(|s| s == "engine") {
        m.join("::")
    } else {
        m.first().cloned().unwrap_or_else(|| "lib".into())
    }
}

#[test]
fn no_import_cycles_between_stages_or_inside_engine() {
    let mut mods = BTreeMap::new();
    modules(Path::new("src"), &[], &mut mods);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, file) in &mods {
        if m.is_empty() {
            continue; // lib.rs / main.rs declare the stages
        }
        let src = std::fs::read_to_string(file).unwrap();
        // A file`s module path drops `mod.rs`, so `super` is always one `pop`.
        for p in paths(&code(&src)) {
            let mut abs: Vec<String> = match p[0].as_str() {
                "crate" => Vec::new(),
                "self" => m.clone(),
                _ => {
                    let mut base = m.clone();
                    for _ in p.iter().take_while(|s| *s == "super") {
                        base.pop();
                    }
                    base
                }
            };
            abs.extend(
                p.iter()
                    .skip_while(|s| matches!(s.as_str(), "crate" | "self" | "super"))
                    .cloned(),
            );
            let target = (1..=abs.len())
                .rev()
                .map(|k| abs[..k].to_vec())
                .find(|k| mods.contains_key(k));
            let Some(t) = target else { continue };
            let (from, to) = (unit(m), unit(&t));
            // A file's own children are part of it (a parent module declares them).
            if from != to && !t.starts_with(m) {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    // Strongly connected components (Tarjan, iterative enough for a few hundred nodes).
    let nodes: Vec<String> = edges
        .keys()
        .chain(edges.values().flatten())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut cycles = Vec::new();
    for n in &nodes {
        // Nodes reachable from n that reach n back.
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(x) = stack.pop() {
                for y in edges.get(&x).into_iter().flatten() {
                    if seen.insert(y.clone()) {
                        stack.push(y.clone());
                    }
                }
            }
            seen
        };
        if reach(n).contains(n) {
            let back: Vec<&String> = edges[n].iter().filter(|y| reach(y).contains(n)).collect();
            cycles.push(format!("{n} -> {back:?}"));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles (unit -> the units it imports that import it back):\n{}",
        cycles.join("\n")
    );
}

/// Names of the files in `dir` with extension `ext`, without it.
fn stems(dir: &str, ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect()
}

#[test]
fn one_launcher_per_shader_named_like_it() {
    let shaders = stems("shaders", "wgsl");
    let mut launchers = stems("src/engine/gpu", "rs");
    launchers.remove("mod");
    assert_eq!(
        shaders, launchers,
        "shaders/<k>.wgsl and src/engine/gpu/<k>.rs must pair up"
    );
    for k in &shaders {
        let src = std::fs::read_to_string(format!("src/engine/gpu/{k}.rs")).unwrap();
        let include = format!("shaders/{k}.wgsl\")");
        assert!(
            src.contains(&include),
            "src/engine/gpu/{k}.rs does not include shaders/{k}.wgsl"
        );
        let others: Vec<&String> = shaders
            .iter()
            .filter(|o| *o != k && src.contains(&format!("shaders/{o}.wgsl\")")))
            .collect();
        assert!(
            others.is_empty(),
            "src/engine/gpu/{k}.rs also launches {others:?}"
        );
    }
}

/// The files the module map in docs/ARCHITECTURE.md lists: an indented tree (two spaces a
/// level) whose lines start with comma-separated names, directories ending in `/`, then
/// (after two spaces) a description.
fn mapped_files(doc: &str) -> BTreeSet<String> {
    let block = doc
        .split("<!-- module-map -->")
        .nth(1)
        .and_then(|b| b.split("<!-- /module-map -->").next())
        .expect("docs/ARCHITECTURE.md has a <!-- module-map --> block");
    let mut dirs: Vec<String> = Vec::new();
    let mut files = BTreeSet::new();
    for line in block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("```"))
    {
        let level = (line.len() - line.trim_start().len()) / 2;
        let names = line.trim_start().split("  ").next().unwrap_or("");
        dirs.truncate(level);
        for name in names.split(", ").map(str::trim) {
            if let Some(d) = name.strip_suffix('/') {
                dirs.push(d.to_string());
            } else if name.ends_with(".rs") {
                let mut p = dirs.clone();
                p.push(name.to_string());
                files.insert(p.join("/"));
            }
        }
    }
    files
}

#[test]
fn module_map_in_the_docs_matches_the_tree() {
    fn rs_files(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rs_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.insert(p.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut tree = BTreeSet::new();
    rs_files(Path::new("src"), &mut tree);
    let doc = std::fs::read_to_string("docs/ARCHITECTURE.md").unwrap();
    let mapped = mapped_files(&doc);
    let missing: Vec<_> = tree.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&tree).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/ARCHITECTURE.md module map: files missing from it {missing:?}, listed but absent {stale:?}"
    );
}
