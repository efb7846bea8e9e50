//! Importing foreign weights: a legacy torch state dict plus an architecture name from the
//! zoo becomes a validated [`Graph`]. The graph is returned unfolded (BatchNorm nodes and
//! their running statistics kept); `graph::passes::prepare` folds them later.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::io::pickle::{self, Entry, StateDict};
use crate::zoo::efficientnet::{self, LiteVariant};

/// BatchNorm's step counter: an integer buffer with no role at inference.
const SKIPPED_SUFFIX: &str = ".num_batches_tracked";

/// Reads a legacy `torch.save` state dict from `path` and builds architecture `arch`
/// (`efficientnet-lite0` .. `efficientnet-lite4`) with its weights.
pub fn import_pth(path: &Path, arch: &str) -> Result<Graph> {
    let variant: LiteVariant = arch.parse()?;
    let bytes = crate::io::model::read_capped(path)?;
    let sd = pickle::read_state_dict(&bytes).map_err(|e| match e {
        Error::Pickle(m) => Error::Pickle(format!("{}: {m}", path.display())),
        e => e,
    })?;
    graph_from_state_dict(sd, variant)
}

/// Builds `variant` from a parsed state dict. Float tensors become parameters under their
/// state-dict names; `*.num_batches_tracked` is skipped; any other non-float tensor, and any
/// unknown, missing or misshapen tensor, is an [`Error::Import`].
pub fn graph_from_state_dict(sd: StateDict, variant: LiteVariant) -> Result<Graph> {
    let mut params = BTreeMap::new();
    for (name, entry) in sd.into_entries() {
        match entry {
            Entry::F32(t) => {
                params.insert(name, t);
            }
            Entry::Other { .. } if name.ends_with(SKIPPED_SUFFIX) => {}
            Entry::Other { dtype, shape } => {
                return Err(Error::Import(format!(
                    "tensor {name} of shape {shape:?} has element type {dtype:?}; float32 expected"
                )));
            }
        }
    }
    efficientnet::build_with_params(variant, params)
}

/// Imports a `.pth` file and saves it as a model file: the conversion step of `fetch`.
pub fn convert_pth(pth: &Path, arch: &str, out: &Path) -> Result<()> {
    crate::io::model::save_graph(&import_pth(pth, arch)?, out)
}
