//! Headless Chromium for tests that look at a page as a person would: a screenshot, the
//! DOM after parsing, and the console messages. Skips loudly without a browser unless
//! `REQUIRE_BROWSER=1` (as in CI).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds one browser run may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The browser executable, or `None` (printing why) when there is none and CI does not
/// require one.
pub fn chromium() -> Option<PathBuf> {
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("REQUIRE_BROWSER=1 but no chromium in PATH (apt-get install chromium)");
    }
    eprintln!("SKIP: no chromium in PATH; install it (apt-get install chromium) or set REQUIRE_BROWSER=1 to fail instead");
    None
}

/// What the browser made of a page.
pub struct Seen {
    /// The screenshot.
    pub png: image::RgbImage,
    /// The serialized DOM after loading.
    pub dom: String,
    /// Console lines (log level ≥ info from the page) and uncaught errors.
    pub console: Vec<String>,
}

fn run(exe: &Path, args: &[String]) -> (String, String) {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (o, e) = (read(Box::new(out)), read(Box::new(err)));
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waiting for chromium").is_some() {
            break;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("chromium took more than {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        o.join().expect("stdout reader"),
        e.join().expect("stderr reader"),
    )
}

/// Loads `page` in a fresh headless profile at `size` (width, height).
pub fn look(exe: &Path, page: &Path, size: (u32, u32)) -> Seen {
    let dir = tempfile::tempdir().expect("temp dir");
    let png = dir.path().join("shot.png");
    let url = format!(
        "file://{}",
        page.canonicalize().expect("page path").display()
    );
    let common = |profile: &str| -> Vec<String> {
        let mut v: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!(
            "--user-data-dir={}",
            dir.path().join(profile).display()
        ));
        v.push(format!("--window-size={},{}", size.0, size.1));
        v
    };
    let mut shot = common("shot");
    shot.push(format!("--screenshot={}", png.display()));
    shot.push(url.clone());
    let (_, err1) = run(exe, &shot);
    let mut dump = common("dom");
    dump.push("--dump-dom".into());
    dump.push(url);
    let (dom, err2) = run(exe, &dump);
    let console = err1
        .lines()
        .chain(err2.lines())
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    let png = image::open(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {} ({e}); stderr:\n{err1}", png.display()))
        .to_rgb8();
    Seen { png, dom, console }
}
