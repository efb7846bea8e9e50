//! Debian-package entries of the fetch catalogue (a `.deb` built here with `dpkg-deb --build`
//! stands in for `apt-get download`), and the bundled Fashion-MNIST test set.

mod common;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use ptq4::io::dataset::{Dataset, Labels};
use ptq4::io::fetch::{
    fetch, fetch_entries, known_names, lookup, resolve_in, sha256_hex, Entry, Kind, Member,
    Registry,
};
use ptq4::Result;

const A: &[u8] = b"first member";
const B: &[u8] = b"second member";

/// A `.deb` holding `usr/share/pkg/a.bin` (A) and `usr/share/pkg/b.bin` (B), or `None` (with
/// a loud skip) where dpkg-deb is missing.
fn build_deb(dir: &Path) -> Option<PathBuf> {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/pkg")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: fake\nVersion: 1.0-1\nArchitecture: all\nMaintainer: none <none@none>\n\
         Description: test package\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/share/pkg/a.bin"), A).unwrap();
    std::fs::write(root.join("usr/share/pkg/b.bin"), B).unwrap();
    let deb = dir.join("fake_1.0-1_all.deb");
    let built = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&root)
        .arg(&deb)
        .output();
    match built {
        Ok(o) if o.status.success() => Some(deb),
        other => {
            common::skip_loudly(&format!("dpkg-deb --build unavailable: {other:?}"));
            None
        }
    }
}

fn no_convert(_: &Path, _: &str, _: &Path) -> Result<()> {
    unreachable!("data entries are not converted")
}

/// A download step that copies `deb` into the folder and counts its calls.
fn fake_apt<'a>(
    deb: &'a Path,
    calls: &'a Cell<usize>,
) -> impl Fn(&str, &str, &Path) -> Result<PathBuf> + 'a {
    move |pkg, ver, dir| {
        calls.set(calls.get() + 1);
        assert_eq!((pkg, ver), ("fake", "1.0-1"));
        let dest = dir.join("fake_1.0-1_all.deb");
        std::fs::copy(deb, &dest).unwrap();
        Ok(dest)
    }
}

fn entry<'a>(deb_sha256: &'a str, files: &'a [Member<'a>]) -> Entry<'a> {
    Entry {
        name: "fake-data",
        package: "fake",
        version: "1.0-1",
        registry: Registry::Apt { deb_sha256 },
        kind: Kind::Images,
        files,
    }
}

#[test]
fn deb_members_are_verified_into_the_cache_once() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(deb) = build_deb(scratch.path()) else {
        return;
    };
    let home = scratch.path().join("home");
    let deb_sha = sha256_hex(&std::fs::read(&deb).unwrap());
    let (sa, sb) = (sha256_hex(A), sha256_hex(B));
    let files = [
        Member {
            path: "usr/share/pkg/a.bin",
            sha256: &sa,
        },
        Member {
            path: "usr/share/pkg/b.bin",
            sha256: &sb,
        },
    ];
    let e = entry(&deb_sha, &files);
    let calls = Cell::new(0);
    let dl = fake_apt(&deb, &calls);
    let got = fetch_entries(&[&e], &home, &no_convert, &dl, false).unwrap();
    let dir = home.join("data/fake-data");
    assert_eq!(got["fake-data"], dir);
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), A);
    assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), B);
    fetch_entries(&[&e], &home, &no_convert, &dl, false).unwrap();
    assert_eq!(calls.get(), 1, "a cached entry is not downloaded again");
}

#[test]
fn a_wrong_pin_leaves_no_cache_entry() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(deb) = build_deb(scratch.path()) else {
        return;
    };
    let home = scratch.path().join("home");
    let deb_sha = sha256_hex(&std::fs::read(&deb).unwrap());
    let sa = sha256_hex(A);
    let wrong = sha256_hex(b"other");
    let calls = Cell::new(0);
    let dl = fake_apt(&deb, &calls);
    let good = [Member {
        path: "usr/share/pkg/a.bin",
        sha256: &sa,
    }];
    // The .deb itself.
    let msg = fetch_entries(&[&entry(&wrong, &good)], &home, &no_convert, &dl, false)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sha256 mismatch") && msg.contains(&deb_sha),
        "{msg}"
    );
    // A member.
    let bad = [Member {
        path: "usr/share/pkg/b.bin",
        sha256: &sa,
    }];
    let msg = fetch_entries(&[&entry(&deb_sha, &bad)], &home, &no_convert, &dl, false)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("usr/share/pkg/b.bin") && msg.contains(&sa),
        "{msg}"
    );
    // A missing member.
    let missing = [Member {
        path: "usr/share/pkg/c.bin",
        sha256: &sa,
    }];
    let msg = fetch_entries(
        &[&entry(&deb_sha, &missing)],
        &home,
        &no_convert,
        &dl,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("fake=1.0-1 has no readable file usr/share/pkg/c.bin"),
        "{msg}"
    );
    assert!(!home.join("data/fake-data").exists());
}

#[test]
fn fashion_mnist_is_pinned_and_its_test_set_bundled() {
    let e = lookup("fashion-mnist").unwrap();
    assert!(matches!(e.registry, Registry::Apt { deb_sha256 } if deb_sha256.len() == 64));
    assert_eq!(e.files.len(), 4);
    assert!(known_names().contains(&"fashion-mnist-test"));
    // Bundled: resolved in the source tree, whatever the cache holds, with no download.
    let empty = tempfile::tempdir().unwrap();
    let dir = resolve_in(empty.path(), "fashion-mnist-test").unwrap();
    assert_eq!(
        dir,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist")
    );
    let got = fetch(
        &["fashion-mnist-test".into()],
        empty.path(),
        &no_convert,
        false,
    )
    .unwrap();
    assert_eq!(got["fashion-mnist-test"], dir);
    // The committed files are the package's, byte for byte.
    for m in e.files.iter().filter(|m| m.path.contains("/t10k-")) {
        let base = Path::new(m.path).file_name().unwrap();
        let bytes = std::fs::read(dir.join(base)).unwrap();
        assert_eq!(sha256_hex(&bytes), m.sha256, "{}", m.path);
    }
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!((ds.len(), &ds.labels), (10_000, &Labels::Idx));
    let mut per_class = [0usize; 10];
    for it in &ds.items {
        per_class[it.label.unwrap()] += 1;
    }
    assert_eq!(per_class, [1000; 10]);
}
