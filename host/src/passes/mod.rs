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

/// A rewrite of the graph in place.
type Pass = fn(&mut TfGraph) -> Result<()>;

/// Every pass, in the order they run.
const PASSES: &[(&str, Pass)] = &[];

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
