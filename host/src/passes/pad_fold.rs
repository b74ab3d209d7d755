//! PAD folded into the convolution it feeds: a PAD (or PADV2 with the zero point as its
//! value) of only the height and width, read by nothing but the input of a VALID CONV_2D or
//! DEPTHWISE_CONV_2D, becomes that convolution's explicit padding. The convolution's padded
//! taps read the input's zero point, which is what the PAD wrote, so the bytes are the same
//! and the padded copy is never made. Pooling is left alone: TFLite-Micro's pools skip padded
//! cells instead of reading a value there.

use crate::builder::Data;
use crate::tfgraph::{TfGraph, TfOperator};
use anyhow::Result;
use mote_core::ops::{Padding, Shape4, Window};

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let mut k = 0;
    while k < graph.operators.len() {
        match foldable(graph, k) {
            Some((consumer, input, padding)) => {
                let conv = &mut graph.operators[consumer];
                conv.inputs[0] = Some(input);
                conv.options.padding = padding;
                graph.operators.remove(k);
            }
            None => k += 1,
        }
    }
    Ok(())
}

/// For operator `k`, if it is a PAD that folds: its consumer, its input and the padding the
/// consumer takes instead of VALID.
fn foldable(graph: &TfGraph, k: usize) -> Option<(usize, usize, Padding)> {
    let pad = &graph.operators[k];
    if !(pad.name == "PAD" || pad.name == "PADV2") {
        return None;
    }
    let (input, output) = (pad.inputs.first().copied()??, *pad.outputs.first()?);
    let (x, y) = (graph.tensors.get(input)?, graph.tensors.get(output)?);
    // Same quantization: the convolution then reads the PAD's input as it read its output.
    if x.quant != y.quant || x.shape.len() != 4 || graph.outputs.contains(&output) {
        return None;
    }
    let zero_point = *y.quant.as_ref()?.zero_points.first()?;
    let amounts = match &graph.tensors.get(pad.inputs.get(1).copied()??)?.data {
        Some(Data::I32(p)) if p.len() == 8 && p.iter().all(|&v| v >= 0) => p.clone(),
        _ => return None,
    };
    if amounts[..2] != [0, 0] || amounts[6..] != [0, 0] {
        return None;
    }
    if let Some(value) = pad.inputs.get(2).copied().flatten() {
        match &graph.tensors.get(value)?.data {
            Some(Data::I8(v)) if v[..] == [zero_point as i8] => {}
            _ => return None,
        }
    }
    let readers: Vec<usize> = (0..graph.operators.len())
        .filter(|&j| graph.operators[j].inputs.contains(&Some(output)))
        .collect();
    let &[consumer] = &readers[..] else {
        return None;
    };
    let conv = &graph.operators[consumer];
    let is_conv = conv.name == "CONV_2D" || conv.name == "DEPTHWISE_CONV_2D";
    if !is_conv
        || conv.options.padding != Padding::Valid
        || conv.inputs.first() != Some(&Some(output))
        || conv.inputs[1..].contains(&Some(output))
    {
        return None;
    }
    let size = |v: i32| v as usize;
    let padding = Padding::Explicit {
        h: (size(amounts[2]), size(amounts[3])),
        w: (size(amounts[4]), size(amounts[5])),
    };
    fits(graph, conv, &x.shape, padding).then_some((consumer, input, padding))
}

/// Whether the convolution over `input` with `padding` gives its output's height and width.
fn fits(graph: &TfGraph, conv: &TfOperator, input: &[usize], padding: Padding) -> bool {
    let filter = conv.inputs.get(1).copied().flatten();
    let Some(filter) = filter.and_then(|f| graph.tensors.get(f)) else {
        return false;
    };
    let out = conv.outputs.first().and_then(|&o| graph.tensors.get(o));
    let (Some(out), 4, 4) = (out, filter.shape.len(), input.len()) else {
        return false;
    };
    if out.shape.len() != 4 {
        return false;
    }
    let o = &conv.options;
    let fit = Window::for_kernel(
        Shape4::new(input[0], input[1], input[2], input[3]),
        (filter.shape[1], filter.shape[2]),
        padding,
        (o.stride_h, o.stride_w),
        (o.dilation_h, o.dilation_w),
    );
    fit.is_some_and(|f| (f.out_h, f.out_w) == (out.shape[1], out.shape[2]))
}
