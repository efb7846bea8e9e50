//! One error type for the library, grouped by pipeline stage. Messages name the tensor, node,
//! file or adapter involved and, where there is one, what to do next.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- files and IO ---
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Standard output could not be written (a closed pipe is not an error: see the CLI).
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
    #[error("model file {path}: {msg}")]
    ModelFile { path: PathBuf, msg: String },
    #[error("torch pickle: {0}")]
    Pickle(String),
    #[error("import: {0}")]
    Import(String),
    #[error("fetch: {0}")]
    Fetch(String),
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("image {path}: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    // --- graph ---
    #[error("graph: {0}")]
    Graph(String),
    #[error("node {node}: shape mismatch: expected {expected:?}, got {actual:?}")]
    Shape {
        node: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("missing parameter tensor {0}")]
    MissingParam(String),

    // --- quantization ---
    #[error("quantization: {0}")]
    Quant(String),

    // --- execution ---
    #[error("engine: {0}")]
    Engine(String),
    #[error("gpu: {0}")]
    Gpu(String),
    #[error("no GPU adapter: {0}; rerun with --backend cpu")]
    NoAdapter(String),

    // --- reports ---
    #[error("report: {0}")]
    Report(String),

    // --- usage ---
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Writes one line of progress or warning to stderr. Unlike `eprintln!`, a closed or full
/// stderr (`ptq4 ... 2>&1 | head`) is ignored instead of panicking.
pub fn note(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
