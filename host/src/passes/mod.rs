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

/// The graph after every pass.
pub fn simplify(graph: &TfGraph) -> Result<TfGraph> {
    let mut graph = graph.clone();
    for (name, pass) in PASSES {
        pass(&mut graph).map_err(|e| e.context(format!("graph pass {name}")))?;
    }
    Ok(graph)
}
