//! Validation of a quantized model read from a file (and of every model before it is
//! written): quantizers, codes, biases and the match between the plan and the graph. The
//! messages name the tensor, node or value concerned.

use std::collections::{HashMap, HashSet};

use crate::graph::Graph;
use crate::quant::plan::{ActQuant, Plan};
use crate::quant::scheme::MAX_BITS;
use crate::quant::QParams;

/// Checks one quantizer: bits 0..=8, scale finite and positive, zero point in `[0, qmax]`
/// (0-bit constants: −1, 0 or 1, see `quant::scheme`).
pub fn check_qparams(p: &QParams, what: &str) -> Result<(), String> {
    if p.bits > MAX_BITS {
        return Err(format!("{what}: {} bits; at most {MAX_BITS}", p.bits));
    }
    if !p.scale.is_finite() || p.scale <= 0.0 {
        return Err(format!(
            "{what}: scale {} must be finite and positive",
            p.scale
        ));
    }
    let (lo, hi) = if p.bits == 0 { (-1, 1) } else { (0, p.qmax()) };
    if !(lo..=hi).contains(&p.zero_point) {
        return Err(format!(
            "{what}: zero point {} outside {lo}..={hi} for {} bits",
            p.zero_point, p.bits
        ));
    }
    Ok(())
}

/// Checks the quantizers of a weight tensor `key` and that every code fits its channel's
/// bit-width (codes channel by channel, `codes.len() / params.len()` each).
fn check_weights(params: &[QParams], codes: &[u8], key: &str) -> Result<(), String> {
    if params.is_empty() || !codes.len().is_multiple_of(params.len()) {
        return Err(format!(
            "{key}: {} codes for {} channel quantizers",
            codes.len(),
            params.len()
        ));
    }
    let per = codes.len() / params.len();
    for (c, (p, row)) in params.iter().zip(codes.chunks(per.max(1))).enumerate() {
        check_qparams(p, &format!("{key}.scale/zero/bits[{c}]"))?;
        let qmax = if p.bits == 0 { 0 } else { p.qmax() };
        if let Some(&q) = row.iter().find(|&&q| i32::from(q) > qmax) {
            return Err(format!(
                "{key}.codes: code {q} in channel {c} exceeds {qmax} ({} bits)",
                p.bits
            ));
        }
    }
    Ok(())
}

fn check_act(a: &ActQuant, shapes: &HashMap<String, Vec<usize>>) -> Result<(), String> {
    let what = format!("activation quantizer of {}", a.value);
    let shape = shapes
        .get(&a.value)
        .ok_or_else(|| format!("{what}: {} is not a value of the graph", a.value))?;
    let want = if a.per_channel { shape[0] } else { 1 };
    if a.params.len() != want {
        return Err(format!(
            "{what}: {} quantizers, {want} expected",
            a.params.len()
        ));
    }
    for (i, p) in a.params.iter().enumerate() {
        check_qparams(p, &format!("{what} [{i}]"))?;
    }
    if a.sqnr_db.is_some_and(|v| !v.is_finite()) {
        return Err(format!("{what}: SQNR is not finite"));
    }
    Ok(())
}

/// Checks `plan` against the prepared graph `g` (its structure: weights, if any, are not
/// read): one layer per conv/linear node and no other, codes and quantizers valid, biases
/// finite and of the layer's width, activation quantizers on existing values with valid
/// parameters.
pub fn check_plan(g: &Graph, plan: &Plan) -> Result<(), String> {
    let c = &plan.config;
    if !(1..=MAX_BITS).contains(&c.wbits) || !(1..=MAX_BITS).contains(&c.abits) {
        return Err(format!(
            "plan: bit-widths W{} A{} outside 1..={MAX_BITS}",
            c.wbits, c.abits
        ));
    }
    let shapes = g.validate_structure().map_err(|e| e.to_string())?;
    // Conv and linear layers with their weight shapes.
    let layers: HashMap<&str, Vec<usize>> = g
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.op.weight_shape()?)))
        .collect();
    let mut seen = HashSet::new();
    for l in &plan.layers {
        let Some(shape) = layers.get(l.node.as_str()) else {
            return Err(format!(
                "plan layer {}: not a conv or linear node of the graph",
                l.node
            ));
        };
        if !seen.insert(l.node.as_str()) {
            return Err(format!("plan layer {} appears twice", l.node));
        }
        if l.info.node != l.node || !l.info.sqnr_db.is_finite() {
            return Err(format!("plan layer {}: inconsistent layer info", l.node));
        }
        let cout = shape[0];
        let numel = crate::limits::checked_numel(shape, &l.node).map_err(|e| e.to_string())?;
        if l.params.len() != cout || l.codes.len() != numel {
            return Err(format!(
                "{}.weight: {} quantizers and {} codes for shape {:?}",
                l.node,
                l.params.len(),
                l.codes.len(),
                shape
            ));
        }
        check_weights(&l.params, &l.codes, &format!("{}.weight", l.node))?;
        if let Some((p2, c2)) = &l.second {
            if p2.len() != cout || c2.len() != numel {
                return Err(format!("{}.weight2: does not match the weight", l.node));
            }
            check_weights(p2, c2, &format!("{}.weight2", l.node))?;
        }
        if l.bias.len() != cout {
            return Err(format!(
                "{}.bias: {} values for {cout} channels",
                l.node,
                l.bias.len()
            ));
        }
        if let Some(i) = l.bias.iter().position(|b| !b.is_finite()) {
            return Err(format!("{}.bias: value {i} is not finite", l.node));
        }
    }
    if let Some(missing) = layers.keys().find(|n| !seen.contains(*n)) {
        return Err(format!(
            "layer {missing} of the graph has no quantized weights in the plan"
        ));
    }
    let mut values = HashSet::new();
    for a in &plan.acts {
        if !values.insert(a.value.as_str()) {
            return Err(format!("activation quantizer of {} appears twice", a.value));
        }
        check_act(a, &shapes)?;
    }
    Ok(())
}
