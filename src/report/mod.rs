//! Output for people, and only that: the tables, lines and JSON objects of `inspect`,
//! `eval`, `quantize` and `ablate`, and the HTML report (the one-line confirmations of
//! `fetch`, `import`, `report` and `export` stay with their commands). Each renderer is a free
//! function of plain data (a [`Graph`], a [`Plan`], an [`EvalReport`], an [`Ablation`]...),
//! never of the model wrapper types, so the words do not move when those do. The CLI
//! computes; these modules say it.
//!
//! - [`plan`]: a quantization plan as a table and as JSON (`quantize`, `quantize --report`,
//!   `inspect`, the HTML page).
//! - [`inspect`]: `inspect` (text and `--json`): nodes, shapes, parameters, and a quantized
//!   model's plan and weight bytes.
//! - [`eval`]: `eval` (text and `--json`), with `--compare`'s per-layer differences.
//! - [`quantize`]: `quantize` (text and `--json`): the plan, time, size, output file.
//! - [`ablation`]: `ablate`: the Markdown table as it streams, its summary, `--json`.
//! - [`bench`]: `bench conv|model|device` as text (their `--json` is the data itself).
//! - [`page`]: the HTML report (summary, per-layer SQNR, clip windows on histograms
//!   ([`windows`]), bits, ablation), drawn with the SVG of [`charts`].
//!
//! [`Graph`]: crate::graph::Graph
//! [`Plan`]: crate::quant::plan::Plan
//! [`EvalReport`]: crate::eval::EvalReport
//! [`Ablation`]: crate::eval::ablate::Ablation

pub mod ablation;
pub mod bench;
pub mod charts;
pub mod eval;
pub mod inspect;
pub mod page;
pub mod plan;
pub mod quantize;
pub mod windows;

pub use page::{render, write, ReportInput};
