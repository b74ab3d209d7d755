//! Dilated convolutions as converters sometimes write them (a Keras Conv2D or DepthwiseConv2D
//! with `dilation_rate` in a model with a dynamic batch): SPACE_TO_BATCH_ND -> CONV_2D (or
//! DEPTHWISE_CONV_2D), VALID, stride 1 -> BATCH_TO_SPACE_ND. The three become one convolution
//! with the block as its dilation, and every output sum is the same where the padding is: the
//! paddings minus the crops must be what SAME or VALID pads (anything else is refused). The
//! pinned TFLite-Micro pads SPACE_TO_BATCH_ND with 0 where a convolution pads with the input's
//! zero point, so SAME folds only for a zero point of 0; VALID reads no padding (the padding
//! for a whole number of blocks only feeds outputs the crops remove).

use super::i32_constant;
use crate::tfgraph::{TfGraph, TfOperator};
use anyhow::{bail, ensure, Context, Result};
use mote_core::ops::Padding;

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let mut k = 0;
    while k < graph.operators.len() {
        if graph.operators[k].name == "SPACE_TO_BATCH_ND" {
            if let Some((conv, b2s)) = pattern(graph, k) {
                fold(graph, k, conv, b2s).with_context(|| {
                    format!("SPACE_TO_BATCH_ND (operator {k}) -> convolution -> BATCH_TO_SPACE_ND")
                })?;
            }
        }
        k += 1;
    }
    Ok(())
}

/// Operators reading tensor `t`.
fn readers(graph: &TfGraph, t: usize) -> Vec<usize> {
    let reads = |op: &TfOperator| op.inputs.contains(&Some(t));
    (0..graph.operators.len())
        .filter(|&k| reads(&graph.operators[k]))
        .collect()
}

/// The convolution and BATCH_TO_SPACE_ND after SPACE_TO_BATCH_ND `s2b`, each the only reader
/// of the tensor before it.
fn pattern(graph: &TfGraph, s2b: usize) -> Option<(usize, usize)> {
    let only_reader = |t: usize| match readers(graph, t)[..] {
        [k] if !graph.outputs.contains(&t) => Some(k),
        _ => None,
    };
    let conv = only_reader(*graph.operators[s2b].outputs.first()?)?;
    let c = &graph.operators[conv];
    let is_conv = matches!(c.name.as_str(), "CONV_2D" | "DEPTHWISE_CONV_2D");
    if !is_conv || c.inputs.first() != Some(&graph.operators[s2b].outputs.first().copied()) {
        return None;
    }
    let b2s = only_reader(*c.outputs.first()?)?;
    let b = &graph.operators[b2s];
    (b.name == "BATCH_TO_SPACE_ND" && b.inputs.first() == Some(&c.outputs.first().copied()))
        .then_some((conv, b2s))
}

fn fold(graph: &mut TfGraph, s2b: usize, conv: usize, b2s: usize) -> Result<()> {
    let (s, c, b) = (
        &graph.operators[s2b],
        &graph.operators[conv],
        &graph.operators[b2s],
    );
    let block = i32_constant(graph, s.inputs.get(1).copied().flatten(), "the block shape")?;
    let pads = i32_constant(graph, s.inputs.get(2).copied().flatten(), "the paddings")?;
    let block_back = i32_constant(graph, b.inputs.get(1).copied().flatten(), "the block shape")?;
    let crops = i32_constant(graph, b.inputs.get(2).copied().flatten(), "the crops")?;
    ensure!(
        block.len() == 2 && block == block_back && block.iter().all(|&v| v >= 1),
        "block shapes {block:?} and {block_back:?} must be the same two positive sizes"
    );
    ensure!(
        pads.len() == 4 && crops.len() == 4,
        "paddings and crops must be 2x2"
    );
    let o = &c.options;
    ensure!(
        o.padding == Padding::Valid
            && (o.stride_h, o.stride_w, o.dilation_h, o.dilation_w) == (1, 1, 1, 1),
        "the convolution must be VALID with stride and dilation 1"
    );
    let input = s.inputs[0].context("SPACE_TO_BATCH_ND has no input")?;
    let (x, between) = (&graph.tensors[input], &graph.tensors[s.outputs[0]]);
    let (conv_out, y) = (&graph.tensors[c.outputs[0]], &graph.tensors[b.outputs[0]]);
    ensure!(
        x.quant == between.quant && conv_out.quant == y.quant,
        "SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND must keep the quantization"
    );
    let weights = c.inputs.get(1).copied().flatten().context("no filter")?;
    let kernel = &graph.tensors[weights].shape;
    ensure!(
        kernel.len() == 4 && x.shape.len() == 4,
        "4-D input and filter expected"
    );
    let mut padding = None;
    for (axis, (&d, &k)) in block.iter().zip(&kernel[1..3]).enumerate() {
        let (before, after) = (pads[2 * axis], pads[2 * axis + 1]);
        let (crop_before, crop_after) = (crops[2 * axis], crops[2 * axis + 1]);
        let total = (k as i64 - 1) * i64::from(d); // SAME's padding at stride 1
        let p = match (
            crop_before,
            i64::from(before),
            i64::from(after) - i64::from(crop_after),
        ) {
            (0, 0, 0) => Padding::Valid,
            (0, b, a) if b == total / 2 && a == total - total / 2 => Padding::Same,
            _ => bail!("paddings {pads:?} with crops {crops:?} are neither SAME nor VALID padding"),
        };
        ensure!(
            padding.is_none_or(|q| q == p) || total == 0,
            "SAME on one axis and VALID on the other"
        );
        if total > 0 || padding.is_none() {
            padding = Some(p);
        }
    }
    let zero_point = x
        .quant
        .as_ref()
        .and_then(|q| q.zero_points.first().copied());
    ensure!(
        padding != Some(Padding::Same) || zero_point.unwrap_or(0) == 0,
        "SAME padding with input zero point {}: TFLite-Micro pads SPACE_TO_BATCH_ND with 0, \
         a convolution pads with the zero point",
        zero_point.unwrap_or(0)
    );
    let (dil_h, dil_w) = (block[0] as usize, block[1] as usize);
    let output = b.outputs[0];
    let c = &mut graph.operators[conv];
    c.inputs[0] = Some(input);
    c.outputs = vec![output];
    c.options.padding = padding.unwrap_or(Padding::Valid);
    (c.options.dilation_h, c.options.dilation_w) = (dil_h, dil_w);
    // Removing the later one first keeps the earlier index valid.
    graph.operators.remove(b2s);
    graph.operators.remove(s2b);
    Ok(())
}
