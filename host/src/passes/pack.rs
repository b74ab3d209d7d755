//! PACK as CONCATENATION: stacking `n` tensors along a new axis `a` is concatenating them
//! along `a` once each has a dimension of one inserted there. Each input gets a RESHAPE to
//! that view (free: its output aliases its input) and the PACK becomes a CONCATENATION.

use crate::tfgraph::{TfGraph, TfOperator, TfTensor};
use anyhow::{bail, ensure, Result};

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let mut operators = Vec::with_capacity(graph.operators.len());
    for op in std::mem::take(&mut graph.operators) {
        if op.name != "PACK" {
            operators.push(op);
            continue;
        }
        let (Some(&output), false) = (op.outputs.first(), op.inputs.is_empty()) else {
            bail!("PACK needs inputs and an output");
        };
        let rank = graph.tensors.get(output).map_or(0, |t| t.shape.len());
        ensure!(rank >= 1, "PACK's output must have a rank");
        let axis = i64::from(op.options.axis);
        ensure!(
            (-(rank as i64)..rank as i64).contains(&axis),
            "PACK axis {axis} is out of range for a rank-{rank} output"
        );
        let axis = axis.rem_euclid(rank as i64) as usize;
        let mut views: Vec<Option<usize>> = Vec::with_capacity(op.inputs.len());
        for (k, &input) in op.inputs.iter().enumerate() {
            // An input stacked again reads the view made for it (two views of one tensor
            // would be two aliases live at once).
            if let Some(j) = op.inputs[..k].iter().position(|&i| i == input) {
                views.push(views[j]);
                continue;
            }
            let Some(x) = input.and_then(|i| graph.tensors.get(i)).cloned() else {
                bail!("PACK input missing");
            };
            ensure!(
                x.data.is_none(),
                "PACK of a constant input is not supported"
            );
            ensure!(
                x.shape.len() + 1 == rank,
                "PACK inputs must have one axis fewer than the output"
            );
            let mut shape = x.shape.clone();
            shape.insert(axis, 1);
            graph.tensors.push(TfTensor {
                name: format!("{}/packed", x.name),
                shape,
                ..x
            });
            let view = graph.tensors.len() - 1;
            operators.push(TfOperator {
                name: "RESHAPE".into(),
                version: 1,
                inputs: vec![input],
                outputs: vec![view],
                options: Default::default(),
            });
            views.push(Some(view));
        }
        let mut options = op.options;
        options.axis = axis as i32;
        operators.push(TfOperator {
            name: "CONCATENATION".into(),
            version: 1,
            inputs: views,
            outputs: op.outputs,
            options,
        });
    }
    graph.operators = operators;
    Ok(())
}
