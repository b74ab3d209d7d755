//! CONCATENATION of more than four inputs (mote's records hold four) as a chain: groups of
//! up to four are concatenated into intermediate tensors, which are concatenated in turn.
//! TFLite-Micro requires every input quantized like the output and copies raw codes, so
//! intermediates quantized like the output give the same bytes.

use crate::tfgraph::{TfGraph, TfOperator, TfTensor};
use anyhow::{ensure, Context, Result};
use mote_core::format::MAX_OP_INPUTS;

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let mut operators = Vec::with_capacity(graph.operators.len());
    for mut op in std::mem::take(&mut graph.operators) {
        if op.name == "CONCATENATION" && op.inputs.len() > MAX_OP_INPUTS {
            split(graph, &mut op, &mut operators)?;
        }
        operators.push(op);
    }
    graph.operators = operators;
    Ok(())
}

/// Replaces `op`'s inputs by at most four, pushing the operators that make them to `out`.
fn split(graph: &mut TfGraph, op: &mut TfOperator, out: &mut Vec<TfOperator>) -> Result<()> {
    let output = *op
        .outputs
        .first()
        .context("CONCATENATION without an output")?;
    let template = graph
        .tensors
        .get(output)
        .context("no output tensor")?
        .clone();
    let rank = template.shape.len() as i64;
    let axis = i64::from(op.options.axis);
    ensure!(
        (-rank..rank).contains(&axis),
        "CONCATENATION axis {axis} is out of range for rank {rank}"
    );
    let axis = axis.rem_euclid(rank) as usize;
    let along = |graph: &TfGraph, id: Option<usize>| -> Result<usize> {
        let t = id.and_then(|i| graph.tensors.get(i));
        let dims = t.map(|t| &t.shape).context("CONCATENATION input missing")?;
        ensure!(
            dims.len() == rank as usize,
            "CONCATENATION inputs must share the rank"
        );
        Ok(dims[axis])
    };
    while op.inputs.len() > MAX_OP_INPUTS {
        let mut next = Vec::new();
        for (k, group) in op.inputs.chunks(MAX_OP_INPUTS).enumerate() {
            if group.len() == 1 {
                next.push(group[0]);
                continue;
            }
            let mut shape = template.shape.clone();
            shape[axis] = group
                .iter()
                .map(|&i| along(graph, i))
                .sum::<Result<usize>>()?;
            graph.tensors.push(TfTensor {
                name: format!("{}/part{k}", template.name),
                shape,
                data: None,
                ..template.clone()
            });
            let part = graph.tensors.len() - 1;
            out.push(TfOperator {
                name: op.name.clone(),
                version: op.version,
                inputs: group.to_vec(),
                outputs: vec![part],
                options: op.options,
            });
            next.push(Some(part));
        }
        op.inputs = next;
    }
    Ok(())
}
