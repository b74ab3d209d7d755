//! Decoding a `.tflite` file (TFLite's `schema.fbs`, the subset mote needs) into a [`TfGraph`].
//!
//! Field numbers below are the fields' positions in their `schema.fbs` tables (a union takes
//! two: its type, then its value). Only the main subgraph is read, only the operator codes its
//! operators use are decoded, and only the tensors an operator or the subgraph's inputs and
//! outputs refer to are converted: an unused tensor of a type mote lacks is no error.

use super::flatbuf::{Buf, Table, Vector};
use super::names;
use crate::builder::{Data, Quantization};
use crate::tfgraph::{parse_activation, TfGraph, TfOperator, TfOptions, TfTensor};
use anyhow::{anyhow, bail, ensure, Context, Result};
use mote_core::format::DType;
use mote_core::ops::Padding;

/// The schema version every current `.tflite` file has.
const SCHEMA_VERSION: u32 = 3;

/// `table Model`.
mod model {
    pub const VERSION: u16 = 0;
    pub const OPERATOR_CODES: u16 = 1;
    pub const SUBGRAPHS: u16 = 2;
    pub const BUFFERS: u16 = 4;
}

/// `table OperatorCode`.
mod operator_code {
    pub const DEPRECATED_BUILTIN_CODE: u16 = 0;
    pub const CUSTOM_CODE: u16 = 1;
    pub const VERSION: u16 = 2;
    pub const BUILTIN_CODE: u16 = 3;
}

/// `table SubGraph`.
mod subgraph {
    pub const TENSORS: u16 = 0;
    pub const INPUTS: u16 = 1;
    pub const OUTPUTS: u16 = 2;
    pub const OPERATORS: u16 = 3;
}

/// `table Tensor`.
mod tensor {
    pub const SHAPE: u16 = 0;
    pub const TYPE: u16 = 1;
    pub const BUFFER: u16 = 2;
    pub const NAME: u16 = 3;
    pub const QUANTIZATION: u16 = 4;
    pub const IS_VARIABLE: u16 = 5;
    pub const SPARSITY: u16 = 6;
}

/// `table QuantizationParameters`.
mod quantization {
    pub const SCALE: u16 = 2;
    pub const ZERO_POINT: u16 = 3;
    pub const DETAILS_TYPE: u16 = 4;
    pub const QUANTIZED_DIMENSION: u16 = 6;
}

/// `table Operator`.
mod operator {
    pub const OPCODE_INDEX: u16 = 0;
    pub const INPUTS: u16 = 1;
    pub const OUTPUTS: u16 = 2;
    pub const BUILTIN_OPTIONS_TYPE: u16 = 3;
    pub const BUILTIN_OPTIONS: u16 = 4;
}

/// `table Buffer`.
mod buffer {
    pub const DATA: u16 = 0;
    pub const OFFSET: u16 = 1;
    pub const SIZE: u16 = 2;
}

/// `union BuiltinOptions` member numbers.
mod options {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
    pub const SVDF: u8 = 6;
    pub const ADD: u8 = 11;
    pub const RESHAPE: u8 = 17;
    pub const MUL: u8 = 21;
    pub const REDUCER: u8 = 27;
    pub const CONCATENATION: u8 = 10;
    pub const PAD: u8 = 22;
    pub const TRANSPOSE: u8 = 26;
    pub const PADV2: u8 = 43;
    pub const GATHER: u8 = 23;
    pub const STRIDED_SLICE: u8 = 32;
    pub const SPLIT: u8 = 35;
    pub const SHAPE: u8 = 55;
    pub const PACK: u8 = 59;
    pub const UNPACK: u8 = 64;
    pub const SPLIT_V: u8 = 79;
    pub const SUB: u8 = 28;
    pub const LEAKY_RELU: u8 = 75;
    // RESIZE_*, TRANSPOSE_CONV, DEPTH_TO_SPACE, SPACE_TO_DEPTH.
    pub const RESIZE_BILINEAR: u8 = 15;
    pub const SPACE_TO_DEPTH: u8 = 19;
    pub const TRANSPOSE_CONV: u8 = 49;
    pub const RESIZE_NEAREST_NEIGHBOR: u8 = 74;
    pub const DEPTH_TO_SPACE: u8 = 94;
    pub const UNIDIRECTIONAL_SEQUENCE_LSTM: u8 = 71;
}

/// `enum TensorType` codes mote has.
mod tensor_type {
    pub const FLOAT32: i8 = 0;
    pub const INT32: i8 = 2;
    pub const INT8: i8 = 9;
    pub const UINT8: i8 = 3;
    pub const INT16: i8 = 7;
}

/// Ranks above this are refused before their dimensions are read.
const MAX_RANK: usize = 8;

/// Caps the elements copied out of the file (shapes, quantization parameters, constants,
/// operator tensor lists): a crafted file whose tables all share one large vector would
/// otherwise make the reader copy it once per reference.
struct Budget(usize);

impl Budget {
    fn take(&mut self, n: usize) -> Result<()> {
        self.0 = self.0.checked_sub(n).ok_or_else(|| {
            anyhow!("the file refers to far more data than it holds (shared vectors?)")
        })?;
        Ok(())
    }
}

/// Reads the main subgraph of a `.tflite` file.
pub(crate) fn read(bytes: &[u8]) -> Result<TfGraph> {
    ensure!(
        bytes.len() >= 8,
        "not a .tflite file: {} bytes is shorter than a flatbuffer header",
        bytes.len()
    );
    ensure!(
        &bytes[4..8] == b"TFL3",
        "not a .tflite file: no `TFL3` identifier at byte 4"
    );
    let buf = Buf(bytes);
    let mut budget = Budget(bytes.len().saturating_mul(16).saturating_add(1 << 20));
    let root = Table::at(buf, buf.follow(0)?).context("the model table")?;
    let version = root.u32(model::VERSION, 0).context("the model's version")?;
    ensure!(
        version == SCHEMA_VERSION,
        "schema version {version} is not supported (TFLite's is {SCHEMA_VERSION})"
    );
    let codes = root
        .vector(model::OPERATOR_CODES, 4)
        .context("the model's operator codes")?;
    let subgraphs = root
        .vector(model::SUBGRAPHS, 4)
        .context("the model's subgraphs")?;
    ensure!(!subgraphs.is_empty(), "the model has no subgraph");
    let buffers = root
        .vector(model::BUFFERS, 4)
        .context("the model's buffers")?;
    let sg = subgraphs.table(0).context("subgraph 0")?;
    let tensors = sg
        .vector(subgraph::TENSORS, 4)
        .context("subgraph 0's tensors")?;
    let n_tensors = tensors.len();

    let index_list = |v: Vector, what: &str, budget: &mut Budget| -> Result<Vec<usize>> {
        budget.take(v.len())?;
        (0..v.len())
            .map(|i| {
                let t = v.i32(i)?;
                usize::try_from(t)
                    .ok()
                    .filter(|&t| t < n_tensors)
                    .ok_or_else(|| {
                        anyhow!("{what} {i} names tensor {t}; the subgraph has {n_tensors} tensors")
                    })
            })
            .collect()
    };
    let inputs = index_list(
        sg.vector(subgraph::INPUTS, 4)
            .context("subgraph 0's inputs")?,
        "subgraph input",
        &mut budget,
    )?;
    let outputs = index_list(
        sg.vector(subgraph::OUTPUTS, 4)
            .context("subgraph 0's outputs")?,
        "subgraph output",
        &mut budget,
    )?;

    // Operators, decoding each operator code the first time an operator uses it.
    let ops = sg
        .vector(subgraph::OPERATORS, 4)
        .context("subgraph 0's operators")?;
    let mut opcodes: Vec<Option<(String, u32)>> = vec![None; codes.len()];
    let mut operators = Vec::with_capacity(ops.len());
    for k in 0..ops.len() {
        let op = ops.table(k).with_context(|| format!("operator {k}"))?;
        let index = op
            .u32(operator::OPCODE_INDEX, 0)
            .with_context(|| format!("operator {k}"))? as usize;
        let slot = opcodes.get_mut(index).ok_or_else(|| {
            anyhow!(
                "operator {k} uses operator code {index}; the model lists {}",
                codes.len()
            )
        })?;
        if slot.is_none() {
            *slot = Some(
                codes
                    .table(index)
                    .and_then(operator_code)
                    .with_context(|| format!("operator {k}: operator code {index}"))?,
            );
        }
        let (name, version) = slot.clone().unwrap_or_default();
        let decoded = decode_operator(op, &name, n_tensors, &mut budget)
            .with_context(|| format!("operator {k} ({name} v{version})"))?;
        operators.push(TfOperator {
            name,
            version,
            inputs: decoded.0,
            outputs: decoded.1,
            options: decoded.2,
        });
    }

    // The tensors anything refers to, and the first such use (for error messages).
    let mut first_use: Vec<Option<String>> = vec![None; n_tensors];
    let mut note = |t: usize, what: &dyn Fn() -> String| {
        if first_use[t].is_none() {
            first_use[t] = Some(what());
        }
    };
    for (i, &t) in inputs.iter().enumerate() {
        note(t, &|| format!("subgraph input {i}"));
    }
    for (i, &t) in outputs.iter().enumerate() {
        note(t, &|| format!("subgraph output {i}"));
    }
    for (k, op) in operators.iter().enumerate() {
        let who = || format!("operator {k}, {} v{}", op.name, op.version);
        for (slot, t) in op.inputs.iter().enumerate() {
            if let Some(t) = *t {
                note(t, &|| format!("input {slot} of {}", who()));
            }
        }
        for (slot, &t) in op.outputs.iter().enumerate() {
            note(t, &|| format!("output {slot} of {}", who()));
        }
    }

    // " `name`" of tensor i, for messages ("" if it has none).
    let label = |i: usize| {
        tensors
            .table(i)
            .and_then(|t| t.string(tensor::NAME))
            .ok()
            .flatten()
            .map(|n| format!(" `{}`", String::from_utf8_lossy(n)))
            .unwrap_or_default()
    };
    let lacking_type = |i: usize| {
        let code = tensors
            .table(i)
            .ok()?
            .i8(tensor::TYPE, tensor_type::FLOAT32)
            .ok()?;
        dtype(code).is_none().then(|| names::tensor_type(code))
    };
    let lacking: Vec<(usize, String)> = (0..n_tensors)
        .filter(|&i| first_use[i].is_some())
        .filter_map(|i| Some((i, lacking_type(i)?)))
        .collect();
    let lacking_types = count(lacking.iter().map(|(_, name)| name.clone()));
    if let Some((first, _)) = lacking.first() {
        let ops = super::lacking_operators(&operators);
        let used = first_use[*first].as_deref().unwrap_or("unused");
        let message = super::lacking_message(&ops, &lacking_types);
        bail!(
            "{message}; the first is tensor {first}{} ({used})",
            label(*first)
        );
    }

    let mut renumber = vec![usize::MAX; n_tensors];
    let mut graph_tensors = Vec::new();
    for (i, used) in first_use.iter().enumerate() {
        let Some(used) = used else { continue };
        let t = tensors
            .table(i)
            .and_then(|t| decode_tensor(buf, t, buffers, &mut budget))
            .with_context(|| format!("tensor {i}{} ({used})", label(i)))?;
        renumber[i] = graph_tensors.len();
        graph_tensors.push(t);
    }
    let map = |ids: &[usize]| ids.iter().map(|&t| renumber[t]).collect::<Vec<_>>();
    for op in &mut operators {
        for t in op.inputs.iter_mut().flatten() {
            *t = renumber[*t];
        }
        op.outputs = map(&op.outputs);
    }
    Ok(TfGraph {
        tensors: graph_tensors,
        operators,
        inputs: map(&inputs),
        outputs: map(&outputs),
    })
}

/// An operator code's name and version. The builtin code is the larger of the two code
/// fields, as TFLite reads it (old files only have the one-byte field, new ones both).
fn operator_code(code: Table) -> Result<(String, u32)> {
    let deprecated = i32::from(code.i8(operator_code::DEPRECATED_BUILTIN_CODE, 0)?);
    let builtin = code.i32(operator_code::BUILTIN_CODE, 0)?;
    let builtin = builtin.max(deprecated);
    let version = code.i32(operator_code::VERSION, 1)?;
    let version =
        u32::try_from(version).map_err(|_| anyhow!("operator version {version} is negative"))?;
    let name = if builtin == names::CUSTOM {
        let custom = code.string(operator_code::CUSTOM_CODE)?.unwrap_or_default();
        format!("CUSTOM({})", String::from_utf8_lossy(custom))
    } else {
        names::builtin_operator(builtin)
    };
    Ok((name, version))
}

type DecodedOperator = (Vec<Option<usize>>, Vec<usize>, TfOptions);

fn decode_operator(
    op: Table,
    name: &str,
    n_tensors: usize,
    budget: &mut Budget,
) -> Result<DecodedOperator> {
    let check = |t: i32, what: &str, slot: usize| -> Result<usize> {
        usize::try_from(t)
            .ok()
            .filter(|&t| t < n_tensors)
            .ok_or_else(|| {
                anyhow!("{what} {slot} names tensor {t}; the subgraph has {n_tensors} tensors")
            })
    };
    let ins = op.vector(operator::INPUTS, 4)?;
    let outs = op.vector(operator::OUTPUTS, 4)?;
    budget.take(ins.len() + outs.len())?;
    let inputs = (0..ins.len())
        .map(|i| match ins.i32(i)? {
            -1 => Ok(None), // an omitted optional input
            t => check(t, "input", i).map(Some),
        })
        .collect::<Result<Vec<_>>>()?;
    let outputs = (0..outs.len())
        .map(|i| check(outs.i32(i)?, "output", i))
        .collect::<Result<Vec<_>>>()?;
    let options = decode_options(op, name)?;
    Ok((inputs, outputs, options))
}

/// The builtin options lowering uses, by operator; every other operator keeps the defaults.
/// An option value mote cannot honour (a TANH fused activation, a zero stride) is an error
/// that names it.
fn decode_options(op: Table, name: &str) -> Result<TfOptions> {
    let kind = op.u8(operator::BUILTIN_OPTIONS_TYPE, 0)?;
    let table = |want: u8, what: &str, required: bool| -> Result<Option<Table>> {
        let table = if kind == want {
            op.table(operator::BUILTIN_OPTIONS)?
        } else {
            None
        };
        ensure!(table.is_some() || !required, "{name} has no {what}");
        Ok(table)
    };
    let mut o = TfOptions::default();
    match name {
        "CONV_2D" => {
            if let Some(t) = table(options::CONV_2D, "Conv2DOptions", true)? {
                o.padding = padding(t.i8(0, 0)?)?;
                o.stride_w = positive(t.i32(1, 0)?, "stride_w")?;
                o.stride_h = positive(t.i32(2, 0)?, "stride_h")?;
                o.activation = activation(t.u8(3, 0)?)?;
                o.dilation_w = positive(t.i32(4, 1)?, "dilation_w_factor")?;
                o.dilation_h = positive(t.i32(5, 1)?, "dilation_h_factor")?;
                let bias_type = t.i8(6, 0)?;
                ensure!(
                    bias_type == 0 || bias_type == tensor_type::INT32,
                    "quantized_bias_type {} is not supported (INT32 is)",
                    names::tensor_type(bias_type)
                );
            }
        }
        "DEPTHWISE_CONV_2D" => {
            if let Some(t) = table(options::DEPTHWISE_CONV_2D, "DepthwiseConv2DOptions", true)? {
                o.padding = padding(t.i8(0, 0)?)?;
                o.stride_w = positive(t.i32(1, 0)?, "stride_w")?;
                o.stride_h = positive(t.i32(2, 0)?, "stride_h")?;
                // Field 3, depth_multiplier, is redundant: lowering derives it from the shapes.
                o.activation = activation(t.u8(4, 0)?)?;
                o.dilation_w = positive(t.i32(5, 1)?, "dilation_w_factor")?;
                o.dilation_h = positive(t.i32(6, 1)?, "dilation_h_factor")?;
            }
        }
        "AVERAGE_POOL_2D" | "MAX_POOL_2D" => {
            if let Some(t) = table(options::POOL_2D, "Pool2DOptions", true)? {
                o.padding = padding(t.i8(0, 0)?)?;
                o.stride_w = positive(t.i32(1, 0)?, "stride_w")?;
                o.stride_h = positive(t.i32(2, 0)?, "stride_h")?;
                o.filter_w = positive(t.i32(3, 0)?, "filter_width")?;
                o.filter_h = positive(t.i32(4, 0)?, "filter_height")?;
                o.activation = activation(t.u8(5, 0)?)?;
            }
        }
        "FULLY_CONNECTED" => {
            if let Some(t) = table(options::FULLY_CONNECTED, "FullyConnectedOptions", false)? {
                o.activation = activation(t.u8(0, 0)?)?;
                let format = t.i8(1, 0)?;
                ensure!(
                    format == 0,
                    "weights_format {} is not supported (DEFAULT is)",
                    if format == 1 {
                        "SHUFFLED4x16INT8".to_string()
                    } else {
                        format!("code {format}")
                    }
                );
                // keep_num_dims (2) only shapes the output tensor, which the file gives.
                let bias_type = t.i8(4, 0)?;
                ensure!(
                    bias_type == 0 || bias_type == tensor_type::INT32,
                    "quantized_bias_type {} is not supported (INT32 is)",
                    names::tensor_type(bias_type)
                );
            }
        }
        "ADD" => {
            if let Some(t) = table(options::ADD, "AddOptions", false)? {
                o.activation = activation(t.u8(0, 0)?)?;
            }
        }
        // SubOptions' pot_scale_int16 (field 1) only matters for int16 activations.
        "SUB" => {
            if let Some(t) = table(options::SUB, "SubOptions", false)? {
                o.activation = activation(t.u8(0, 0)?)?;
            }
        }
        "MUL" => {
            if let Some(t) = table(options::MUL, "MulOptions", false)? {
                o.activation = activation(t.u8(0, 0)?)?;
            }
        }
        // MaximumMinimumOptions and SquaredDifferenceOptions have no fields.
        "SOFTMAX" => {
            // TFLite reads an absent beta (or absent options) as 0.
            o.beta = match table(options::SOFTMAX, "SoftmaxOptions", false)? {
                Some(t) => t.f32(0, 0.0)?,
                None => 0.0,
            };
        }
        "SVDF" => {
            if let Some(t) = table(options::SVDF, "SVDFOptions", true)? {
                o.rank = positive(t.i32(0, 0)?, "rank")?;
                o.activation = activation(t.u8(1, 0)?)?;
                ensure!(
                    !t.bool(2, false)?,
                    "asymmetric_quantize_inputs is for hybrid SVDF, which mote does not run"
                );
            }
        }
        "MEAN" | "SUM" | "REDUCE_MAX" => {
            if let Some(t) = table(options::REDUCER, "ReducerOptions", false)? {
                o.keep_dims = t.bool(0, false)?;
            }
        }
        "STRIDED_SLICE" => {
            if let Some(t) = table(options::STRIDED_SLICE, "StridedSliceOptions", false)? {
                o.begin_mask = t.i32(0, 0)?;
                o.end_mask = t.i32(1, 0)?;
                o.ellipsis_mask = t.i32(2, 0)?;
                o.new_axis_mask = t.i32(3, 0)?;
                o.shrink_axis_mask = t.i32(4, 0)?;
                o.offset = t.bool(5, false)?;
            }
        }
        "SPLIT" | "SPLIT_V" => {
            let (member, what) = match name {
                "SPLIT" => (options::SPLIT, "SplitOptions"),
                _ => (options::SPLIT_V, "SplitVOptions"),
            };
            if let Some(t) = table(member, what, false)? {
                o.num_splits = non_negative(t.i32(0, 0)?, "num_splits")?;
            }
        }
        "UNPACK" | "PACK" => {
            let (member, what) = match name {
                "UNPACK" => (options::UNPACK, "UnpackOptions"),
                _ => (options::PACK, "PackOptions"),
            };
            if let Some(t) = table(member, what, false)? {
                o.num = non_negative(t.i32(0, 0)?, "num")?;
                o.axis = t.i32(1, 0)?;
            }
        }
        "CONCATENATION" => {
            if let Some(t) = table(options::CONCATENATION, "ConcatenationOptions", false)? {
                o.axis = t.i32(0, 0)?;
                o.activation = activation(t.u8(1, 0)?)?;
            }
        }
        // PadOptions, PadV2Options and TransposeOptions have no fields.
        "PAD" => {
            table(options::PAD, "PadOptions", false)?;
        }
        "PADV2" => {
            table(options::PADV2, "PadV2Options", false)?;
        }
        "TRANSPOSE" => {
            table(options::TRANSPOSE, "TransposeOptions", false)?;
        }
        "GATHER" => {
            if let Some(t) = table(options::GATHER, "GatherOptions", false)? {
                o.axis = t.i32(0, 0)?;
                o.batch_dims = t.i32(1, 0)?;
            }
        }
        "SHAPE" => {
            if let Some(t) = table(options::SHAPE, "ShapeOptions", false)? {
                let out_type = t.i8(0, tensor_type::INT32)?;
                ensure!(
                    out_type == tensor_type::INT32,
                    "SHAPE out_type {} is not supported (INT32 is)",
                    names::tensor_type(out_type)
                );
            }
        }
        "LEAKY_RELU" => {
            // TFLite reads absent options as alpha 0.
            o.alpha = match table(options::LEAKY_RELU, "LeakyReluOptions", false)? {
                Some(t) => t.f32(0, 0.0)?,
                None => 0.0,
            };
        }
        // Fields 0 and 1 of ResizeBilinearOptions are the deprecated new_height/new_width.
        "RESIZE_BILINEAR" => {
            if let Some(t) = table(options::RESIZE_BILINEAR, "ResizeBilinearOptions", false)? {
                o.align_corners = t.bool(2, false)?;
                o.half_pixel_centers = t.bool(3, false)?;
            }
        }
        "RESIZE_NEAREST_NEIGHBOR" => {
            let what = "ResizeNearestNeighborOptions";
            if let Some(t) = table(options::RESIZE_NEAREST_NEIGHBOR, what, false)? {
                o.align_corners = t.bool(0, false)?;
                o.half_pixel_centers = t.bool(1, false)?;
            }
        }
        "TRANSPOSE_CONV" => {
            if let Some(t) = table(options::TRANSPOSE_CONV, "TransposeConvOptions", true)? {
                o.padding = padding(t.i8(0, 0)?)?;
                o.stride_w = positive(t.i32(1, 0)?, "stride_w")?;
                o.stride_h = positive(t.i32(2, 0)?, "stride_h")?;
                o.activation = activation(t.u8(3, 0)?)?;
                let bias_type = t.i8(4, 0)?;
                ensure!(
                    bias_type == 0 || bias_type == tensor_type::INT32,
                    "quantized_bias_type {} is not supported (INT32 is)",
                    names::tensor_type(bias_type)
                );
            }
        }
        "DEPTH_TO_SPACE" | "SPACE_TO_DEPTH" => {
            let (member, what) = match name {
                "DEPTH_TO_SPACE" => (options::DEPTH_TO_SPACE, "DepthToSpaceOptions"),
                _ => (options::SPACE_TO_DEPTH, "SpaceToDepthOptions"),
            };
            if let Some(t) = table(member, what, true)? {
                o.block_size = positive(t.i32(0, 0)?, "block_size")?;
            }
        }
        "UNIDIRECTIONAL_SEQUENCE_LSTM" => {
            let what = "UnidirectionalSequenceLSTMOptions";
            if let Some(t) = table(options::UNIDIRECTIONAL_SEQUENCE_LSTM, what, true)? {
                let cell_activation = names::activation(t.u8(0, 0)?);
                ensure!(
                    cell_activation == "TANH",
                    "an LSTM cell activation {cell_activation} is not supported (TANH is)"
                );
                o.cell_clip = t.f32(1, 0.0)?;
                o.proj_clip = t.f32(2, 0.0)?;
                o.time_major = t.bool(3, false)?;
                ensure!(
                    !t.bool(4, false)?,
                    "asymmetric_quantize_inputs (a hybrid LSTM) is not supported: convert with \
                     full integer quantization"
                );
                ensure!(
                    !t.bool(5, false)?,
                    "diagonal_recurrent_tensors is not supported (TFLite-Micro has no such LSTM)"
                );
            }
        }
        // new_shape duplicates the output tensor's shape, which lowering uses.
        "RESHAPE" => {
            table(options::RESHAPE, "ReshapeOptions", false)?;
        }
        _ => {}
    }
    Ok(o)
}

fn padding(code: i8) -> Result<Padding> {
    match code {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        other => bail!("padding code {other} is not SAME (0) or VALID (1)"),
    }
}

fn activation(code: u8) -> Result<mote_core::ops::Activation> {
    parse_activation(&names::activation(code))
}

fn non_negative(v: i32, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| anyhow!("{what} is {v}; it must not be negative"))
}

fn positive(v: i32, what: &str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| anyhow!("{what} is {v}; it must be at least 1"))
}

/// mote's element type for a TFLite tensor type code, if it has one.
fn dtype(code: i8) -> Option<DType> {
    Some(match code {
        tensor_type::INT8 => DType::I8,
        tensor_type::INT32 => DType::I32,
        tensor_type::FLOAT32 => DType::F32,
        tensor_type::UINT8 => DType::U8,
        tensor_type::INT16 => DType::I16,
        _ => return None,
    })
}

/// How often each name occurs, in order of first occurrence.
pub(crate) fn count(names: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in names {
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts
}

fn decode_tensor(buf: Buf, t: Table, buffers: Vector, budget: &mut Budget) -> Result<TfTensor> {
    let name = String::from_utf8_lossy(t.string(tensor::NAME)?.unwrap_or_default()).into_owned();
    let type_code = t.i8(tensor::TYPE, tensor_type::FLOAT32)?;
    let dtype = dtype(type_code).ok_or_else(|| {
        anyhow!(
            "type {} is not supported (mote has INT8, UINT8, INT16, INT32 and FLOAT32)",
            names::tensor_type(type_code)
        )
    })?;
    ensure!(
        t.table(tensor::SPARSITY)?.is_none(),
        "the tensor is stored sparse (the converter's `EXPERIMENTAL_SPARSITY` optimization), \
         which TFLite-Micro cannot run either: convert without it"
    );

    let dims = t.vector(tensor::SHAPE, 4)?;
    ensure!(
        dims.len() <= MAX_RANK,
        "rank {} is not supported",
        dims.len()
    );
    budget.take(dims.len())?;
    let raw: Vec<i32> = (0..dims.len())
        .map(|i| dims.i32(i))
        .collect::<Result<_>>()?;
    let shape = raw
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| anyhow!("shape {raw:?} has an unknown dimension; mote needs static shapes"))?;

    let quant = match t.table(tensor::QUANTIZATION)? {
        Some(q) => quantization_params(q, shape.len(), budget)?,
        None => None,
    };
    if let (DType::I8, Some(q)) = (dtype, &quant) {
        let bad = q.zero_points.iter().find(|z| i8::try_from(**z).is_err());
        ensure!(
            bad.is_none(),
            "zero point {} is outside the int8 range",
            bad.copied().unwrap_or_default()
        );
    }

    let variable = t.u8(tensor::IS_VARIABLE, 0)? != 0;
    let index = t.u32(tensor::BUFFER, 0)? as usize;
    // A variable tensor starts at its zero point, as in TFLite-Micro, whatever its buffer.
    let initial = match variable {
        true => None,
        false => buffer_bytes(buf, buffers, index)?,
    };
    let data = match initial {
        Some(bytes) => {
            budget.take(bytes.len())?;
            let elements = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| anyhow!("shape {shape:?} is too large"))?;
            ensure!(
                Some(bytes.len()) == elements.checked_mul(dtype.size()),
                "buffer {index} holds {} bytes; shape {shape:?} of {} needs {}",
                bytes.len(),
                names::tensor_type(type_code),
                elements.saturating_mul(dtype.size())
            );
            Some(match dtype {
                DType::I8 => Data::I8(bytes.iter().map(|&b| b as i8).collect()),
                DType::U8 => Data::U8(bytes.to_vec()),
                DType::I16 => Data::I16(
                    bytes
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                ),
                DType::I32 => Data::I32(
                    bytes
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                DType::F32 => Data::F32(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
            })
        }
        None => None,
    };
    Ok(TfTensor {
        name,
        shape,
        dtype,
        quant,
        data,
        variable,
    })
}

/// A buffer's bytes, or `None` if it is empty (the tensor is not a constant). Buffers of
/// models over 2 GB keep their bytes outside the flatbuffer, at `offset` from the file start.
fn buffer_bytes<'a>(buf: Buf<'a>, buffers: Vector<'a>, index: usize) -> Result<Option<&'a [u8]>> {
    ensure!(
        index < buffers.len(),
        "names buffer {index}; the model has {}",
        buffers.len()
    );
    let b = buffers
        .table(index)
        .with_context(|| format!("buffer {index}"))?;
    let data = b.vector(buffer::DATA, 1)?;
    if !data.is_empty() {
        return Ok(Some(data.bytes()));
    }
    let offset = b.u64(buffer::OFFSET, 0)?;
    if offset > 1 {
        let size = b.u64(buffer::SIZE, 0)?;
        let (offset, size) = (usize::try_from(offset), usize::try_from(size));
        let bytes = match (offset, size) {
            (Ok(offset), Ok(size)) => buf.slice(offset, size).ok(),
            _ => None,
        };
        let bytes = bytes
            .ok_or_else(|| anyhow!("buffer {index} lies outside the {}-byte file", buf.0.len()))?;
        return Ok((!bytes.is_empty()).then_some(bytes));
    }
    Ok(None)
}

fn quantization_params(q: Table, rank: usize, budget: &mut Budget) -> Result<Option<Quantization>> {
    let details = q.u8(quantization::DETAILS_TYPE, 0)?;
    ensure!(
        details == 0,
        "custom quantization (details type {details}) is not supported"
    );
    let scale = q.vector(quantization::SCALE, 4)?;
    if scale.is_empty() {
        return Ok(None); // parameters without scales: not quantized
    }
    let zero_point = q.vector(quantization::ZERO_POINT, 8)?;
    ensure!(
        zero_point.len() == scale.len(),
        "{} scales but {} zero points",
        scale.len(),
        zero_point.len()
    );
    budget.take(2 * scale.len())?;
    let scales = (0..scale.len())
        .map(|i| scale.f32(i))
        .collect::<Result<Vec<_>>>()?;
    let zero_points = (0..zero_point.len())
        .map(|i| {
            let z = zero_point.i64(i)?;
            i32::try_from(z).map_err(|_| anyhow!("zero point {z} does not fit 32 bits"))
        })
        .collect::<Result<Vec<_>>>()?;
    // A rank-1 tensor has one dimension to be per-channel along, whatever the file says: old
    // converters wrote the weights' axis (3) on biases, and TFLite-Micro ignores it there.
    let axis = if scales.len() > 1 && rank > 1 {
        let dim = q.i32(quantization::QUANTIZED_DIMENSION, 0)?;
        usize::try_from(dim)
            .ok()
            .filter(|&d| d < rank)
            .ok_or_else(|| {
                anyhow!("quantized_dimension {dim} is not a dimension of this rank-{rank} tensor")
            })?
    } else {
        0
    };
    Ok(Some(Quantization {
        scales,
        zero_points,
        axis,
    }))
}
