//! The graph IR: a DAG of [`Node`]s over a closed op set ([`Op`]), stored in topological
//! order, with named f32 parameters and the preprocessing its inputs need.
//!
//! Values are named after the node that produces them; the graph input is named
//! [`Graph::INPUT`]. Shapes are per sample (no batch axis): `[C, H, W]` for feature maps,
//! `[F]` after `Flatten`/`GlobalAvgPool`... (GlobalAvgPool keeps `[C, 1, 1]`).

pub mod op;
pub mod passes;
mod shape;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use op::{same_padding, shuffle_source, Activation, Conv2d, Linear, Op, Pool, Unary};

use crate::error::{Error, Result};
use crate::limits;
use crate::tensor::Tensor;

/// The optional conv parameter of per-channel upper bounds on its fused ReLU
/// ([`Graph::act_max`]).
pub const ACT_MAX: &str = "act_max";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
    pub inputs: Vec<String>,
}

/// How raw images become input tensors. Pixels are on the 0..255 scale; the input is
/// `(pixel − mean) / std` per channel. Resize the shorter side to `resize`, then
/// center-crop `size × size`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub size: usize,
    pub resize: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// 3 for RGB, 1 for grey.
    pub channels: usize,
}

impl Preprocess {
    /// EfficientNet-Lite: `(x − 127) / 128`, shorter side to 256·size/224, center crop.
    pub fn efficientnet(size: usize) -> Self {
        Preprocess {
            size,
            resize: (256 * size).div_ceil(224),
            mean: [127.0; 3],
            std: [128.0; 3],
            channels: 3,
        }
    }

    /// Checks the metadata before any image is read, so a bad model is blamed on the model
    /// (named `model`) rather than on the first image: sizes within
    /// [`limits::MAX_SPATIAL`], 1 or 3 channels, `0 < size ≤ resize`, a `resize × resize`
    /// view within [`MAX_RESIZED_PIXELS`], finite means and positive finite stds for the
    /// channels used. Called at load and again where images are prepared.
    ///
    /// [`MAX_RESIZED_PIXELS`]: crate::limits::MAX_RESIZED_PIXELS
    pub fn validate(&self, model: &str) -> Result<()> {
        use crate::limits::MAX_RESIZED_PIXELS;
        let c = self.channels;
        let limit =
            limits::check_size(self.size, limits::MAX_SPATIAL, "preprocess size").and_then(|()| {
                limits::check_size(self.resize, limits::MAX_SPATIAL, "preprocess resize")
            });
        let problem = if let Err(e) = limit {
            e.to_string()
        } else if c != 1 && c != 3 {
            format!("{c} channels (1 or 3 supported)")
        } else if self.size == 0 || self.resize < self.size {
            format!(
                "size {} and resize {} (need 0 < size ≤ resize)",
                self.size, self.resize
            )
        } else if (self.resize as u64).saturating_mul(self.resize as u64) > MAX_RESIZED_PIXELS {
            format!(
                "resize {} over the {MAX_RESIZED_PIXELS} px a view may have",
                self.resize
            )
        } else if let Some(k) = (0..c).find(|&k| !self.mean[k].is_finite()) {
            format!("mean[{k}] = {}", self.mean[k])
        } else if let Some(k) = (0..c).find(|&k| !(self.std[k].is_finite() && self.std[k] > 0.0)) {
            format!("std[{k}] = {} (need a positive finite value)", self.std[k])
        } else {
            return Ok(());
        };
        Err(Error::Graph(format!(
            "{model}'s preprocessing metadata is invalid: {problem}; fix or re-import the model"
        )))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    /// Per-sample input shape `[C, H, W]`.
    pub input_shape: Vec<usize>,
    pub nodes: Vec<Node>,
    pub output: String,
    pub params: BTreeMap<String, Tensor>,
    pub preprocess: Preprocess,
}

impl Graph {
    pub const INPUT: &'static str = "input";

    /// The value `deploy` integer execution leaves in f32 (its logits): the output, less an
    /// output `Softmax` (applied afterwards in f32) and a `Flatten` of a global average pool
    /// before it (SqueezeNet's head: the pool's f32 means are the logits).
    pub fn logits(&self) -> &str {
        let single = |v: &str, op: fn(&Op) -> bool| match self.node(v) {
            Some(n) if op(&n.op) && n.inputs.len() == 1 => Some(n.inputs[0].as_str()),
            _ => None,
        };
        let v = single(&self.output, |o| matches!(o, Op::Softmax)).unwrap_or(&self.output);
        match single(v, |o| matches!(o, Op::Flatten)) {
            Some(i) if matches!(self.node(i).map(|n| &n.op), Some(Op::GlobalAvgPool)) => i,
            _ => v,
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The parameter `<node>.<param>`.
    pub fn param(&self, node: &str, param: &str) -> Result<&Tensor> {
        let key = format!("{node}.{param}");
        self.params.get(&key).ok_or(Error::MissingParam(key))
    }

    pub fn param_opt(&self, node: &str, param: &str) -> Option<&Tensor> {
        self.params.get(&format!("{node}.{param}"))
    }

    /// The per-channel upper bounds `<node>.act_max` ([`ACT_MAX`]) of a conv's fused ReLU:
    /// y = min(max(x, 0), act_max[c]) (an equalized ReLU6, `quant::equalize`); `None` for an
    /// activation without them.
    pub fn act_max(&self, node: &str) -> Option<&[f32]> {
        self.param_opt(node, ACT_MAX).map(|t| t.data.as_slice())
    }

    /// Total number of parameter values.
    pub fn param_count(&self) -> usize {
        self.params.values().map(|t| t.numel()).sum()
    }

    /// Checks names, topological order, parameter presence and shapes, and returns the
    /// per-sample shape of every value. A bad model fails here, before any compute.
    pub fn validate(&self) -> Result<HashMap<String, Vec<usize>>> {
        self.validate_with(true)
    }

    /// [`validate`](Self::validate) without parameters: the structure alone (a quantized
    /// file's graph, whose weights come from its codes).
    pub fn validate_structure(&self) -> Result<HashMap<String, Vec<usize>>> {
        self.validate_with(false)
    }

    fn validate_with(&self, params: bool) -> Result<HashMap<String, Vec<usize>>> {
        if self.nodes.len() > limits::MAX_NODES {
            return Err(Error::Graph(format!(
                "{} nodes; at most {} are supported",
                self.nodes.len(),
                limits::MAX_NODES
            )));
        }
        let mut seen: HashSet<&str> = HashSet::new();
        seen.insert(Self::INPUT);
        for n in &self.nodes {
            if n.name == Self::INPUT || !seen.insert(n.name.as_str()) {
                return Err(Error::Graph(format!("duplicate node name {}", n.name)));
            }
        }
        let mut defined: HashSet<&str> = HashSet::new();
        defined.insert(Self::INPUT);
        for n in &self.nodes {
            for i in &n.inputs {
                if !defined.contains(i.as_str()) {
                    return Err(Error::Graph(format!(
                        "node {} reads {i}, which is not defined before it",
                        n.name
                    )));
                }
            }
            defined.insert(n.name.as_str());
        }
        if !defined.contains(self.output.as_str()) {
            return Err(Error::Graph(format!(
                "output {} is not a node",
                self.output
            )));
        }
        shape::infer(self, params)
    }

    /// Checks parameter values of a loaded FP32 graph: every value finite, BatchNorm
    /// variances non-negative. The error names the tensor.
    pub fn check_values(&self) -> Result<()> {
        for (key, t) in &self.params {
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Graph(format!(
                    "tensor {key}: value {} at index {i} is not finite",
                    t.data[i]
                )));
            }
        }
        for n in &self.nodes {
            if let Op::BatchNorm { .. } = n.op {
                let var = self.param(&n.name, "running_var")?;
                if let Some(i) = var.data.iter().position(|&v| v < 0.0) {
                    return Err(Error::Graph(format!(
                        "tensor {}.running_var: variance {} at channel {i} is negative",
                        n.name, var.data[i]
                    )));
                }
            }
        }
        Ok(())
    }

    /// Removes nodes whose values never reach the output (an importer's dead branches).
    pub fn prune(&mut self) {
        let mut live: HashSet<String> = HashSet::new();
        live.insert(self.output.clone());
        for n in self.nodes.iter().rev() {
            if live.contains(&n.name) {
                live.extend(n.inputs.iter().cloned());
            }
        }
        let dead: HashSet<String> = self
            .nodes
            .iter()
            .filter(|n| !live.contains(&n.name))
            .map(|n| n.name.clone())
            .collect();
        self.nodes.retain(|n| live.contains(&n.name));
        // Keys are `<node>.<param>` and parameter names have no dot.
        self.params
            .retain(|k, _| k.rsplit_once('.').is_none_or(|(n, _)| !dead.contains(n)));
    }
}
