//! Dilated convolutions as converters sometimes write them (a Keras Conv2D or DepthwiseConv2D
//! with `dilation_rate` in a model with a dynamic batch): SPACE_TO_BATCH_ND -> CONV_2D (or
//! DEPTHWISE_CONV_2D), VALID, stride 1 -> BATCH_TO_SPACE_ND. The three become one convolution
//! with the block as its dilation where every output sum stays the same: the paddings minus
//! the crops must be what SAME or VALID pads, and as the pinned TFLite-Micro pads
//! SPACE_TO_BATCH_ND with 0 where a convolution pads with the input's zero point, SAME folds
//! only for a zero point of 0 (VALID reads no padding: the padding for a whole number of
//! blocks only feeds outputs the crops remove). A pattern that does not fold runs as its three
//! operators; the converter leaves the batch of the two inner tensors at 1 (it was dynamic), so
//! they get the shapes TFLite infers.

use super::i32_constant;
use crate::tfgraph::{TfGraph, TfOperator};
use anyhow::{bail, ensure, Context, Result};
use mote_core::ops::Padding;

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let mut k = 0;
    while k < graph.operators.len() {
        if graph.operators[k].name == "SPACE_TO_BATCH_ND" {
            if let Some((conv, b2s)) = pattern(graph, k) {
                let what = || {
                    format!("SPACE_TO_BATCH_ND (operator {k}) -> convolution -> BATCH_TO_SPACE_ND")
                };
                if !fold(graph, k, conv, b2s).with_context(what)? {
                    infer_shapes(graph, k, conv).with_context(what)?;
                }
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
    // The fold and the shapes read SPACE_TO_BATCH_ND's input and every output, whatever the
    // file holds.
    let s = &graph.operators[s2b];
    let wired = s.inputs.first().is_some_and(Option::is_some)
        && [s, c, b].iter().all(|op| op.outputs.len() == 1);
    (wired
        && b.name == "BATCH_TO_SPACE_ND"
        && b.inputs.first() == Some(&c.outputs.first().copied()))
    .then_some((conv, b2s))
}

/// Folds the pattern into one convolution if that is exact; `false` if it is not.
fn fold(graph: &mut TfGraph, s2b: usize, conv: usize, b2s: usize) -> Result<bool> {
    let (s, c, b) = (
        &graph.operators[s2b],
        &graph.operators[conv],
        &graph.operators[b2s],
    );
    let constant = |op: &TfOperator, slot: usize| {
        i32_constant(graph, op.inputs.get(slot).copied().flatten(), "")
    };
    let (Ok(block), Ok(pads), Ok(block_back), Ok(crops)) = (
        constant(s, 1),
        constant(s, 2),
        constant(b, 1),
        constant(b, 2),
    ) else {
        return Ok(false);
    };
    let o = &c.options;
    let plain_conv = o.padding == Padding::Valid
        && (o.stride_h, o.stride_w, o.dilation_h, o.dilation_w) == (1, 1, 1, 1);
    let (Some(input), Some(weights)) = (s.inputs[0], c.inputs.get(1).copied().flatten()) else {
        return Ok(false);
    };
    let (x, between) = (&graph.tensors[input], &graph.tensors[s.outputs[0]]);
    let (conv_out, y) = (&graph.tensors[c.outputs[0]], &graph.tensors[b.outputs[0]]);
    let kernel = &graph.tensors[weights].shape;
    if !(block.len() == 2 && block == block_back && block.iter().all(|&v| v >= 1))
        || !(pads.len() == 4 && crops.len() == 4 && kernel.len() == 4 && x.shape.len() == 4)
        || !plain_conv
        || !(x.quant == between.quant && conv_out.quant == y.quant)
    {
        return Ok(false);
    }
    let mut padding = None;
    for (axis, (&d, &k)) in block.iter().zip(&kernel[1..3]).enumerate() {
        let (before, after) = (pads[2 * axis], pads[2 * axis + 1]);
        let (crop_before, crop_after) = (crops[2 * axis], crops[2 * axis + 1]);
        let total = (k as i64 - 1) * i64::from(d); // SAME's padding at stride 1
        let kept_after = i64::from(after) - i64::from(crop_after);
        let p = match (crop_before, i64::from(before), kept_after) {
            (0, 0, 0) => Padding::Valid,
            (0, b, a) if b == total / 2 && a == total - total / 2 => Padding::Same,
            _ => return Ok(false), // neither SAME nor VALID
        };
        if !(padding.is_none_or(|q| q == p) || total == 0) {
            return Ok(false); // SAME on one axis, VALID on the other
        }
        if total > 0 || padding.is_none() {
            padding = Some(p);
        }
    }
    let zero_point = x
        .quant
        .as_ref()
        .and_then(|q| q.zero_points.first().copied());
    if padding == Some(Padding::Same) && zero_point.unwrap_or(0) != 0 {
        return Ok(false); // SPACE_TO_BATCH_ND's zero padding is not the zero point
    }
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
    Ok(true)
}

/// Sets the shapes of SPACE_TO_BATCH_ND's and the convolution's outputs to what their inputs
/// give (a VALID convolution at stride 1).
fn infer_shapes(graph: &mut TfGraph, s2b: usize, conv: usize) -> Result<()> {
    let (s, c) = (&graph.operators[s2b], &graph.operators[conv]);
    let block = i32_constant(graph, s.inputs.get(1).copied().flatten(), "the block shape")?;
    let pads = i32_constant(graph, s.inputs.get(2).copied().flatten(), "the paddings")?;
    let x = &graph.tensors[s.inputs[0].context("SPACE_TO_BATCH_ND has no input")?].shape;
    let weights = c.inputs.get(1).copied().flatten().context("no filter")?;
    let kernel = &graph.tensors[weights].shape;
    let usize_of = |v: &[i32]| {
        v.iter()
            .map(|&v| usize::try_from(v))
            .collect::<Result<Vec<_>, _>>()
    };
    let (block, pads) = (usize_of(&block)?, usize_of(&pads)?);
    ensure!(
        x.len() == 4 && kernel.len() == 4 && block.len() == 2 && pads.len() == 4,
        "4-D input and filter, two block sizes and four paddings expected"
    );
    let blocks = |axis: usize| {
        let padded = x[axis + 1]
            .checked_add(pads[2 * axis])?
            .checked_add(pads[2 * axis + 1])?;
        (block[axis] > 0 && padded % block[axis] == 0).then(|| padded / block[axis])
    };
    let (Some(h), Some(w)) = (blocks(0), blocks(1)) else {
        bail!("the padded input is not a whole number of blocks");
    };
    let batch = x[0]
        .checked_mul(block[0])
        .and_then(|n| n.checked_mul(block[1]))
        .context("the batch times the blocks is too large")?;
    let channels = match c.name.as_str() {
        "CONV_2D" => kernel[0],
        _ => kernel[3],
    };
    let (oh, ow) = (h + 1)
        .checked_sub(kernel[1])
        .zip((w + 1).checked_sub(kernel[2]))
        .context("the filter is larger than the blocks")?;
    let (between, conv_out) = (s.outputs[0], c.outputs[0]);
    graph.tensors[between].shape = vec![batch, h, w, x[3]];
    graph.tensors[conv_out].shape = vec![batch, oh, ow, channels];
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Data, Quantization};
    use crate::tfgraph::{TfOptions, TfTensor};
    use mote_core::format::DType;

    fn int8(name: &str, shape: &[usize], zero_point: i32, data: Option<Data>) -> TfTensor {
        TfTensor {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: DType::I8,
            quant: Some(Quantization::per_tensor(0.05, zero_point)),
            data,
            variable: false,
        }
    }

    fn int32(v: &[i32], shape: &[usize]) -> TfTensor {
        TfTensor {
            name: "c".into(),
            shape: shape.to_vec(),
            dtype: DType::I32,
            quant: None,
            data: Some(Data::I32(v.to_vec())),
            variable: false,
        }
    }

    fn op(name: &str, inputs: &[usize], output: usize) -> TfOperator {
        TfOperator {
            name: name.into(),
            version: 1,
            inputs: inputs.iter().map(|&i| Some(i)).collect(),
            outputs: vec![output],
            options: TfOptions::default(),
        }
    }

    /// What a converter writes for a 3x3 dilation-2 SAME conv over 9x9 (batch left at 1 in
    /// the two inner tensors), with the input's zero point.
    fn pattern(zero_point: i32) -> TfGraph {
        let mut w = int8("w", &[4, 3, 3, 3], 0, Some(Data::I8(vec![1; 108])));
        w.quant = Some(Quantization::per_tensor(0.01, 0));
        TfGraph {
            tensors: vec![
                int8("x", &[1, 9, 9, 3], zero_point, None),
                int32(&[2, 2], &[2]),
                int32(&[2, 3, 2, 3], &[2, 2]),
                int32(&[0, 1, 0, 1], &[2, 2]),
                w,
                int32(&[0; 4], &[4]),
                int8("between", &[1, 7, 7, 3], zero_point, None),
                int8("conv", &[1, 5, 5, 4], 3, None),
                int8("y", &[1, 9, 9, 4], 3, None),
            ],
            operators: vec![
                op("SPACE_TO_BATCH_ND", &[0, 1, 2], 6),
                op("CONV_2D", &[6, 4, 5], 7),
                op("BATCH_TO_SPACE_ND", &[7, 1, 3], 8),
            ],
            inputs: vec![0],
            outputs: vec![8],
        }
    }

    #[test]
    fn same_padding_at_zero_point_0_folds_to_a_dilated_conv() {
        let mut g = pattern(0);
        run(&mut g).unwrap();
        assert_eq!(g.operators.len(), 1);
        let conv = &g.operators[0];
        assert_eq!((conv.inputs[0], conv.outputs[0]), (Some(0), 8));
        assert_eq!(conv.options.padding, Padding::Same);
        assert_eq!((conv.options.dilation_h, conv.options.dilation_w), (2, 2));
        assert!(pattern(0).to_builder().unwrap().build().is_ok());
    }

    /// Elsewhere SPACE_TO_BATCH_ND pads with 0 but a convolution with the zero point: the three
    /// operators stay, their inner tensors get the batch of 4 the blocks make.
    #[test]
    fn same_padding_at_another_zero_point_stays_unfolded() {
        let mut g = pattern(-1);
        run(&mut g).unwrap();
        assert_eq!(g.operators.len(), 3);
        assert_eq!(g.tensors[6].shape, [4, 7, 7, 3]);
        assert_eq!(g.tensors[7].shape, [4, 5, 5, 4]);
        assert!(pattern(-1).to_builder().unwrap().build().is_ok());
    }

    /// Paddings that are neither SAME nor VALID stay unfolded too.
    #[test]
    fn other_paddings_stay_unfolded() {
        let mut g = pattern(0);
        g.tensors[2] = int32(&[1, 4, 2, 3], &[2, 2]);
        run(&mut g).unwrap();
        assert_eq!(g.operators.len(), 3);
    }
}
