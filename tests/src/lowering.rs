//! Turning a golden case into the TFLite-vocabulary graph that mote-host lowers, and the demo
//! model the firmware embeds by default.

use crate::golden::{self, GoldenCase};
use mote_core::format::DType;
use mote_host::builder::{Data, Quantization};
use mote_host::tfgraph::{
    parse_activation, parse_padding, TfGraph, TfOperator, TfOptions, TfTensor,
};

/// The graph of a golden case, as the `.tflite` importer would produce it.
pub fn to_graph(case: &GoldenCase) -> TfGraph {
    let tensors = case
        .tensors
        .iter()
        .map(|t| {
            let dtype = match t.dtype {
                golden::DType::Int8 => DType::I8,
                golden::DType::Int32 => DType::I32,
                golden::DType::Float32 => DType::F32,
                golden::DType::Uint8 => DType::U8,
                golden::DType::Int16 => DType::I16,
            };
            let quant = t.is_quantized().then(|| Quantization {
                scales: t.scale.clone(),
                zero_points: t.zero_point.iter().map(|&z| z as i32).collect(),
                axis: t.quantized_dimension,
            });
            let data = t.data.as_ref().map(|_| match dtype {
                DType::I8 => Data::I8(t.data_i8()),
                DType::I32 => Data::I32(t.data_i32()),
                DType::F32 => Data::F32(t.data_f32()),
                DType::U8 => Data::U8(t.data_u8()),
                DType::I16 => Data::I16(t.data_i16()),
            });
            TfTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype,
                quant,
                data,
                variable: t.variable,
            }
        })
        .collect();
    let operators = case
        .operators
        .iter()
        .map(|op| {
            let mut o = TfOptions::default();
            let num = |k: &str, d: usize| op.option_u64(k).map_or(d, |v| v as usize);
            if let Some(p) = op.option_str("padding") {
                o.padding = parse_padding(p).unwrap();
            }
            // An LSTM's TANH is its cell activation, the only one it has.
            let fused = op.option_str("fused_activation_function");
            if let Some(a) = fused.filter(|_| op.op != "UNIDIRECTIONAL_SEQUENCE_LSTM") {
                o.activation = parse_activation(a).unwrap();
            }
            o.stride_h = num("stride_h", 1);
            o.stride_w = num("stride_w", 1);
            o.dilation_h = num("dilation_h_factor", 1);
            o.dilation_w = num("dilation_w_factor", 1);
            o.filter_h = num("filter_height", 1);
            o.filter_w = num("filter_width", 1);
            o.beta = op.option_f32("beta").unwrap_or(1.0);
            o.keep_dims = op.option_bool("keep_dims").unwrap_or(false);
            // STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, PACK.
            let int = |k: &str| op.option_i64(k).map_or(0, |v| v as i32);
            o.begin_mask = int("begin_mask");
            o.end_mask = int("end_mask");
            o.ellipsis_mask = int("ellipsis_mask");
            o.new_axis_mask = int("new_axis_mask");
            o.shrink_axis_mask = int("shrink_axis_mask");
            o.offset = op.option_bool("offset").unwrap_or(false);
            o.num_splits = num("num_splits", 0);
            o.num = num("num", num("values_count", 0));
            o.axis = int("axis");
            o.alpha = op.option_f32("alpha").unwrap_or(0.0);
            o.align_corners = op.option_bool("align_corners").unwrap_or(false);
            o.half_pixel_centers = op.option_bool("half_pixel_centers").unwrap_or(false);
            o.block_size = num("block_size", 0);
            o.time_major = op.option_bool("time_major").unwrap_or(false);
            o.cell_clip = op.option_f32("cell_clip").unwrap_or(0.0);
            o.proj_clip = op.option_f32("proj_clip").unwrap_or(0.0);
            o.rank = num("rank", 0);
            TfOperator {
                name: op.op.clone(),
                version: op.version,
                inputs: op.inputs.iter().map(|&i| usize::try_from(i).ok()).collect(),
                outputs: op.outputs.clone(),
                options: o,
            }
        })
        .collect();
    let mut graph = TfGraph {
        tensors,
        operators,
        inputs: case.inputs.clone(),
        outputs: case.outputs.clone(),
    };
    // As the `.tflite` reader does.
    mote_host::passes::drop_unreferenced(&mut graph);
    graph
}

/// The golden case the firmware runs by default: a depthwise-separable CNN converted by the
/// TFLite converter.
pub const DEMO_CASE: &str = "model_ds_cnn";

/// The demo model's blob, its input vectors (raw int8, back to back) and TFLite-Micro's
/// expected outputs for them.
pub fn demo_model() -> (Vec<u8>, Vec<u8>, Vec<Vec<i8>>) {
    let case = golden::load_case(DEMO_CASE);
    let built = to_graph(&case)
        .to_builder()
        .and_then(|b| b.build())
        .expect("demo model builds");
    let inputs = (0..case.vectors.len())
        .flat_map(|v| case.input_i8(v, 0))
        .map(|x| x as u8)
        .collect();
    let outputs = (0..case.vectors.len())
        .map(|v| case.output_i8(v, 0))
        .collect();
    (built.bytes, inputs, outputs)
}
