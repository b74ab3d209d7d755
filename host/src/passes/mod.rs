//! Graph rewrites run on an imported [`TfGraph`] before it is lowered: each turns a pattern
//! converters write into one mote runs (or runs faster), in TFLite's own vocabulary, so that
//! every operator still lowers through its module in mote-core. A pass must leave the model's
//! output bytes unchanged (the golden cases run through every pass).
//!
//! # Adding a pass
//! Write `passes/<name>.rs` with `pub(crate) fn run(graph: &mut TfGraph) -> Result<()>` and add
//! it to [`PASSES`], in the order they must run.

mod concat_split;
mod const_fold;
mod dilated_conv;
mod pack;
mod pad_fold;
mod split;

use crate::builder::Data;
use crate::tfgraph::{TfGraph, TfTensor};
use anyhow::{anyhow, Result};
use mote_core::format::DType;

/// A rewrite of the graph in place.
type Pass = fn(&mut TfGraph) -> Result<()>;

/// Every pass, in the order they run: constants first (a folded SHAPE chain leaves a constant
/// PACK's inputs), then the rewrites into operators mote runs, then the folds into them.
const PASSES: &[(&str, Pass)] = &[
    ("const_fold", const_fold::run),
    ("split", split::run),
    ("dilated_conv", dilated_conv::run),
    ("pack", pack::run),
    ("concat_split", concat_split::run),
    ("pad_fold", pad_fold::run),
];

/// Operators the passes rewrite into others (or fold away), which need no module of their own.
pub const REWRITTEN: &[&str] = &["SHAPE", "SPLIT", "SPLIT_V", "UNPACK", "PACK"];

/// Whether the passes take operators named `name` (see [`REWRITTEN`]).
pub fn rewrites(name: &str) -> bool {
    REWRITTEN.contains(&name)
}

/// The graph after every pass.
pub fn simplify(graph: &TfGraph) -> Result<TfGraph> {
    let mut out = graph.clone();
    for (name, pass) in PASSES {
        pass(&mut out).map_err(|e| e.context(format!("graph pass {name}")))?;
    }
    drop_orphans(graph, &mut out);
    Ok(out)
}

/// Whether each tensor is read or written by an operator or is a graph input or output.
fn referenced(graph: &TfGraph) -> Vec<bool> {
    let mut used = vec![false; graph.tensors.len()];
    let ops = graph.operators.iter();
    let ids = ops.flat_map(|op| op.inputs.iter().flatten().chain(&op.outputs));
    for &t in ids.chain(&graph.inputs).chain(&graph.outputs) {
        if let Some(u) = used.get_mut(t) {
            *u = true;
        }
    }
    used
}

/// Removes the tensors the passes left unreferenced (a folded chain's constants, a split's
/// axis), renumbering the rest; a graph no pass changed keeps its tensor ids.
fn drop_orphans(before: &TfGraph, after: &mut TfGraph) {
    let (was, is) = (referenced(before), referenced(after));
    let orphan = |t: usize| !is[t] && was.get(t).copied().unwrap_or(true);
    if !(0..is.len()).any(orphan) {
        return;
    }
    let mut renumber = vec![usize::MAX; is.len()];
    let mut kept = Vec::new();
    for (t, tensor) in std::mem::take(&mut after.tensors).into_iter().enumerate() {
        if !orphan(t) {
            renumber[t] = kept.len();
            kept.push(tensor);
        }
    }
    after.tensors = kept;
    for op in &mut after.operators {
        for t in op.inputs.iter_mut().flatten().chain(&mut op.outputs) {
            *t = renumber[*t];
        }
    }
    for t in after.inputs.iter_mut().chain(&mut after.outputs) {
        *t = renumber[*t];
    }
}

/// Adds an int32 constant of `shape` to the graph; its id.
pub(crate) fn add_i32(graph: &mut TfGraph, name: String, shape: Vec<usize>, v: Vec<i32>) -> usize {
    graph.tensors.push(TfTensor {
        name,
        shape,
        dtype: DType::I32,
        quant: None,
        data: Some(Data::I32(v)),
        variable: false,
    });
    graph.tensors.len() - 1
}

/// The elements of int32 constant `id` (an operator's shape, axis or index operand).
pub(crate) fn i32_constant(graph: &TfGraph, id: Option<usize>, what: &str) -> Result<Vec<i32>> {
    let t = id.and_then(|id| graph.tensors.get(id));
    match t.and_then(|t| t.data.as_ref()) {
        Some(Data::I32(v)) => Ok(v.clone()),
        _ => Err(anyhow!("{what} must be an int32 constant")),
    }
}

/// `axis` of a rank-`rank` tensor, negative counting from the end.
pub(crate) fn axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    match (-r..r).contains(&axis) {
        true => Ok(axis.rem_euclid(r.max(1)) as usize),
        false => Err(anyhow!("axis {axis} is outside a rank-{rank} tensor")),
    }
}
