//! Graph rewrites run on an imported [`TfGraph`] before it is lowered: each turns a pattern
//! converters write into one mote runs (or runs faster), in TFLite's own vocabulary, so that
//! every operator still lowers through its module in mote-core. A pass must leave the model's
//! output bytes unchanged (the golden cases run through every pass).
//!
//! # Adding a pass
//! Write `passes/<name>.rs` with `pub(crate) fn run(graph: &mut TfGraph) -> Result<()>` and add
//! it to [`PASSES`], in the order they must run.

use crate::tfgraph::TfGraph;
use anyhow::Result;

mod concat_split;
mod pack;
mod pad_fold;

/// A rewrite of the graph in place.
type Pass = fn(&mut TfGraph) -> Result<()>;

/// Every pass, in the order they run.
const PASSES: &[(&str, Pass)] = &[
    ("pack", pack::run),
    ("concat_split", concat_split::run),
    ("pad_fold", pad_fold::run),
];

/// Operators the passes rewrite into others (or fold away), which need no module of their own.
pub const REWRITTEN: &[&str] = &[];

/// Whether the passes take operators named `name` (see [`REWRITTEN`]).
pub fn rewrites(name: &str) -> bool {
    REWRITTEN.contains(&name)
}

/// The graph after every pass.
pub fn simplify(graph: &TfGraph) -> Result<TfGraph> {
    let mut graph = graph.clone();
    for (name, pass) in PASSES {
        pass(&mut graph).map_err(|e| e.context(format!("graph pass {name}")))?;
    }
    Ok(graph)
}

/// Drops the tensors no operator or graph edge names any more (what a fold leaves behind: an
/// orphaned activation would still be given a record, and a constant its bytes), renumbering
/// the rest.
pub(crate) fn drop_unused_tensors(graph: &mut TfGraph) {
    let mut used = vec![false; graph.tensors.len()];
    let named = graph.operators.iter().flat_map(|op| {
        let inputs = op.inputs.iter().flatten();
        inputs.chain(&op.outputs)
    });
    for &t in named.chain(&graph.inputs).chain(&graph.outputs) {
        if let Some(u) = used.get_mut(t) {
            *u = true;
        }
    }
    let mut new_id = vec![usize::MAX; used.len()];
    let mut kept = 0;
    for (id, &u) in used.iter().enumerate() {
        if u {
            new_id[id] = kept;
            kept += 1;
        }
    }
    let mut k = 0;
    graph.tensors.retain(|_| {
        k += 1;
        used[k - 1]
    });
    let renumber = |t: &mut usize| *t = new_id.get(*t).copied().unwrap_or(*t);
    for op in &mut graph.operators {
        op.inputs.iter_mut().flatten().for_each(renumber);
        op.outputs.iter_mut().for_each(renumber);
    }
    graph.inputs.iter_mut().for_each(renumber);
    graph.outputs.iter_mut().for_each(renumber);
}
