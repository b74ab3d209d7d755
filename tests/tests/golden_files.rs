//! The committed golden cases (`tests/goldens/*.json`) are complete and self-consistent: every
//! file parses, shapes, quantization, operator indices and vectors agree with each other, and
//! the cases together cover every operator and option the int8 engine must match.

use mote_tests::golden::{self, check_dtype, DType, GoldenCase, GoldenTensor};
use std::collections::BTreeSet;

/// Every case `tools/goldens/generate.py` writes; a missing file fails `every_case_is_present`.
const CASES: &[&str] = &[
    "add_bcast_channel_relu",
    "add_bcast_rank2_scalar",
    "add_bcast_rank3",
    "add_bcast_rows_none",
    "add_const_bias_relu6",
    "add_const_scalar",
    "add_flat_same_range_relu6",
    "add_two_scales_none",
    "add_two_scales_relu",
    "avgpool_2x2_valid_s2",
    "batch_to_space_crop_2x2",
    "avgpool_2x3_valid_s1_relu",
    "avgpool_3x3_same_s1",
    "avgpool_3x3_same_s2",
    "avgpool_global_5x7",
    "concat_7_inputs_split",
    "concat_batch_axis0",
    "concat_channels",
    "concat_height_3_inputs",
    "concat_rank2_negative_axis",
    "concat_rank3_axis1",
    "concat_width_4_inputs",
    "conv2d_1x1_same_s2_relu",
    "conv2d_1x1_valid_1x1_image_relu6",
    "conv2d_1x1_valid_s1_none",
    "conv2d_2x2_same_s3_relu",
    "conv2d_2x2_valid_s3_none",
    "conv2d_3x3_same_1x1_image",
    "conv2d_3x3_same_batch2_relu",
    "conv2d_3x3_same_c1_relu",
    "conv2d_3x3_same_dil2_none",
    "conv2d_3x3_same_nobias",
    "conv2d_3x3_same_s1_none",
    "conv2d_3x3_same_s1_relu",
    "conv2d_3x3_same_s1_relu6",
    "conv2d_3x3_same_s2_relu",
    "conv2d_3x3_valid_dil2_relu",
    "conv2d_3x3_valid_s1_none",
    "conv2d_3x3_valid_s2_relu6",
    "conv2d_4x4_same_s1_none",
    "conv2d_4x4_same_s2_relu6",
    "conv2d_5x3_same_s1_relu",
    "conv2d_5x3_valid_s2_none",
    "conv2d_huge_scales",
    "conv2d_multiplier_gt_one",
    "conv2d_saturate",
    "conv2d_tiny_multiplier",
    "conv2d_tiny_scales",
    "depth_to_space_b2",
    "depth_to_space_b2_c1",
    "depth_to_space_b3_batch2",
    "dilated_conv_same_s2b",
    "dilated_conv_valid_s2b",
    "dilated_conv_same_s2b_zp0",
    "dilated_dwconv_same_s2b_zp0",
    "depth_to_space_block2",
    "depth_to_space_block3_batch2",
    "dwconv_1x3_valid_s2_m2_relu",
    "dwconv_3x1_same_s1_m1_none",
    "dwconv_3x3_same_dil2_m1_relu6",
    "dwconv_3x3_same_nobias",
    "dwconv_3x3_same_s1_m1_relu",
    "dwconv_3x3_same_s1_m3_c1_relu",
    "dwconv_3x3_same_s2_m1_none",
    "dwconv_3x3_valid_dil2_m2_none",
    "dwconv_3x3_valid_s1_m2_none",
    "dwconv_3x3_valid_s2_m3_relu6",
    "dwconv_5x1_same_s2_m1_relu6",
    "dwconv_5x5_same_s2_m1_none",
    "dwconv_10x1_valid_hx1_m1_none",
    "dwconv_15x1_valid_hx1_m1_relu",
    "dwconv_1x15_same_s2_m2_relu6",
    "dwconv_10x8_same_s2_m8_c1_relu",
    "dwconv_7x1_same_dil3_m2_none",
    "dwconv_huge_scales_relu",
    "fc_per_channel_11x5_batch3_none",
    "fc_per_channel_13x7_none",
    "fc_per_channel_33x11_relu",
    "fc_per_channel_7x3_nobias_none",
    "fc_per_channel_keep_num_dims",
    "fc_per_tensor_13x7_relu",
    "fc_per_tensor_16x10_none",
    "fc_per_tensor_1x1_none",
    "fc_per_tensor_64x8_scale_product",
    "fc_per_tensor_9x5_nobias_relu6",
    "fc_saturate",
    "float_io_conv_3x3_relu",
    "float_io_fc_12x6",
    "float_io_softmax",
    "maximum_bcast_channel",
    "maximum_const_scalar",
    "maximum_same_shape",
    "hard_swish_narrow",
    "hard_swish_range4",
    "hard_swish_wide_asym",
    "leaky_relu_0",
    "leaky_relu_0p1",
    "leaky_relu_0p3_asym",
    "leaky_relu_2p5",
    "logistic_narrow",
    "logistic_range4",
    "logistic_wide_asym",
    "maxpool_2x2_valid_s2",
    "maxpool_2x2_valid_s3_relu6",
    "maxpool_3x3_same_s1_c1",
    "maxpool_3x3_same_s2",
    "mean_all_batch2",
    "mean_axes12",
    "mean_axes12_keep",
    "mean_axes12_same_quantization",
    "mean_axis1_keep",
    "mean_axis2",
    "mean_axis3_keep",
    "mean_axis_neg1_neg3",
    "mean_global_average_pooling",
    "minimum_bcast_rows",
    "minimum_const_channel",
    "minimum_rank2",
    "model_ds_cnn",
    "model_residual_block",
    "lstm_seq_6x5_u7",
    "lstm_last_8x4_u6",
    "lstm_batch2_5x3_u4",
    "lstm_saturating_6x8_u12",
    "lstm_time_major_6x5_u8",
    "lstm_cell_clip_7x4_u5",
    "model_lstm_classifier",
    "model_lstm_stacked",
    "pack_axis0",
    "pack_axis1_6_inputs",
    "pack_axis_last",
    "pad_batch_and_channels",
    "pad_big",
    "pad_rank2",
    "pad_rank3_all_axes",
    "pad_zeropad2d_asym",
    "padfold_asym_conv_s2",
    "padfold_asym_dwconv_s2",
    "padfold_not_into_maxpool",
    "padfold_zeropad_conv_valid",
    "padv2_value_channels",
    "padv2_value_rank3",
    "mul_bcast_channel_relu",
    "mul_bcast_rank3",
    "mul_bcast_rows_relu6",
    "mul_const_channel_relu6",
    "mul_const_scalar",
    "mul_same_shape_none",
    "prelu_per_channel",
    "prelu_per_pixel",
    "prelu_rank2",
    "prelu_shared",
    "quantize_int8_to_int8_fc",
    "reduce_max_all_batch2",
    "reduce_max_axes12",
    "reduce_max_axis1_keep",
    "reduce_max_axis2",
    "reduce_max_axis3_keep",
    "model_decoder_upsample",
    "model_subpixel_resize",
    "relu6_narrow",
    "relu6_standalone",
    "relu_asym_range",
    "relu_negative_range",
    "relu_positive_range",
    "relu_reshape_6x8",
    "relu_standalone_4x4x3",
    "reshape_4x4x3_to_6x8",
    "reshape_flatten_4x4x3",
    "shape_flatten_dense_dynamic_batch",
    "shape_reshape_dynamic_batch",
    "slice_2d",
    "slice_4d_size_to_end",
    "resize_bilinear_5to7_align_corners",
    "resize_bilinear_5to7_half_pixel",
    "resize_bilinear_5to7_v1",
    "resize_bilinear_7to5_resizing_layer",
    "resize_bilinear_7to5_v1",
    "resize_bilinear_7x5_to_5x8_align_corners_batch2",
    "resize_bilinear_upsampling2d_x2",
    "resize_nearest_5to7_half_pixel",
    "resize_nearest_5to7_v1",
    "resize_nearest_5x4_to_7x9_align_corners_batch2",
    "resize_nearest_7to5_align_corners",
    "resize_nearest_7to5_half_pixel",
    "resize_nearest_up2_half_pixel",
    "softmax_10_range0p1",
    "softmax_10_range1",
    "softmax_10_range32",
    "softmax_10_range8",
    "softmax_3_asym",
    "softmax_4d_2x3x5",
    "transpose_batch_moves",
    "transpose_nchw_to_nhwc",
    "transpose_nhwc_to_nchw",
    "transpose_rank2",
    "transpose_rank3",
    "space_to_batch_pad_2x3",
    "split_channels_3",
    "split_v_minus_one",
    "split_width_2",
    "strided_slice_2d_negative_end",
    "strided_slice_2d_shrink_last",
    "strided_slice_3d_negative",
    "strided_slice_4d_channel_step",
    "strided_slice_4d_shrink",
    "strided_slice_4d_step2_reverse",
    "unpack_axis1",
    "squared_difference_bcast_channel",
    "squared_difference_const",
    "squared_difference_same_shape",
    "sub_bcast_channel_none",
    "sub_bcast_rows_relu6",
    "sub_const_channel_relu",
    "sub_const_from_scalar",
    "sub_same_shape_relu",
    "sum_all_batch2_keep",
    "sum_axes12_keep",
    "sum_axis1",
    "sum_axis2_keep",
    "sum_axis3",
    "tanh_narrow",
    "tanh_range3",
    "tanh_wide_asym",
    "uint8_io_conv_3x3_relu",
    "uint8_io_fc_12x6",
    "uint8_io_logistic_asym",
    "space_to_depth_block2",
    "space_to_depth_block3_batch2",
    "tconv_2x2_same_s2_nobias",
    "tconv_2x2_valid_s2",
    "tconv_3x2_valid_s3x1",
    "tconv_3x3_same_s1",
    "tconv_3x3_same_s2",
    "tconv_3x3_same_s2_patched_relu",
    "tconv_3x3_valid_s2_relu",
    "tconv_4x4_same_s2_relu6",
    "squeeze_axis2_relu",
    "expand_dims_axis2_relu",
    "svdf_int16_rank1",
    "svdf_int16_rank2_batch2_zero_bias",
    "svdf_int8_rank1_relu",
    "svdf_int8_rank2_batch2",
    "quantize_int16_to_int8",
    "quantize_int16_to_int32",
    "softmax_int8_to_int16",
    "model_int16_edges",
];

/// Every operator `mote import` takes (mote-core's list, its aliases and what the graph passes
/// rewrite): each must appear in some case, and a case may contain no other.
fn supported_ops() -> Vec<&'static str> {
    mote_host::tflite::supported_operators()
}

const MAX_FILE_BYTES: u64 = 300_000;
const MAX_TOTAL_BYTES: u64 = 6_000_000;

fn cases() -> Vec<GoldenCase> {
    golden::load_all()
}

#[test]
fn every_case_is_present() {
    let names: BTreeSet<String> = cases().into_iter().map(|c| c.name).collect();
    let missing: Vec<&&str> = CASES.iter().filter(|n| !names.contains(**n)).collect();
    assert!(missing.is_empty(), "missing golden cases: {missing:?}");
}

#[test]
fn names_are_unique_and_match_file_names() {
    let mut seen = BTreeSet::new();
    for path in golden::case_files() {
        let case = golden::load(&path);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            case.name,
            stem,
            "{}: name differs from the file name",
            path.display()
        );
        assert!(
            seen.insert(case.name.clone()),
            "duplicate case name {}",
            case.name
        );
        assert!(
            !case.description.trim().is_empty(),
            "{}: no description",
            case.name
        );
    }
    assert!(seen.len() >= CASES.len(), "only {} case files", seen.len());
}

#[test]
fn files_stay_small() {
    let mut total = 0;
    for path in golden::case_files() {
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= MAX_FILE_BYTES, "{} is {len} bytes", path.display());
        total += len;
    }
    assert!(total <= MAX_TOTAL_BYTES, "goldens total {total} bytes");
}

/// Whether int8 constant `index` of `case` is read as weights, which the converter quantizes
/// symmetrically: not an element-wise operator's operand, nor PADV2's pad value.
fn is_weights(case: &GoldenCase, index: usize) -> bool {
    let elementwise = [
        "ADD",
        "SUB",
        "MUL",
        "SQUARED_DIFFERENCE",
        "MAXIMUM",
        "MINIMUM",
    ];
    let index = index as i64;
    !case.operators.iter().any(|op| {
        let operand = elementwise.contains(&op.op.as_str()) && op.inputs.contains(&index);
        let pad_value = op.op == "PADV2" && op.inputs.get(2) == Some(&index);
        operand || pad_value
    })
}

fn check_tensor(case: &GoldenCase, index: usize, t: &GoldenTensor) {
    let weights = is_weights(case, index);
    // Shape arithmetic after a SHAPE is the one int32 computation (mote folds it); a
    // QUANTIZE may write an int32 model output.
    let shape_arithmetic = case.operators.iter().any(|op| op.op == "SHAPE");
    let int32_output = case
        .operators
        .iter()
        .any(|op| op.op == "QUANTIZE" && op.outputs.contains(&index));
    let case = &case.name;
    let what = format!("{case}: tensor {index} ({})", t.name);
    if let Some(data) = &t.data {
        assert_eq!(
            data.len(),
            t.elements(),
            "{what}: data length vs shape {:?}",
            t.shape
        );
        check_dtype(data, t.dtype).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    assert_eq!(
        t.scale.len(),
        t.zero_point.len(),
        "{what}: scale vs zero_point length"
    );
    for &s in &t.scale {
        assert!(s.is_finite() && s > 0.0, "{what}: scale {s}");
    }
    if t.is_per_channel() {
        assert!(
            t.quantized_dimension < t.shape.len(),
            "{what}: quantized_dimension out of range"
        );
        assert_eq!(
            t.scale.len(),
            t.shape[t.quantized_dimension],
            "{what}: per-channel scales vs dimension {}",
            t.quantized_dimension
        );
    }
    match t.dtype {
        DType::Int8 => {
            assert!(t.is_quantized(), "{what}: int8 tensor without quantization");
            for &z in &t.zero_point {
                assert!((-128..=127).contains(&z), "{what}: zero point {z}");
            }
            if t.data.is_some() && weights {
                assert!(
                    t.zero_point.iter().all(|&z| z == 0),
                    "{what}: weights must be symmetric"
                );
            }
        }
        DType::Int32 => {
            assert!(
                t.data.is_some() || shape_arithmetic || int32_output,
                "{what}: int32 activations are not expected outside shape arithmetic"
            );
            assert!(
                t.zero_point.iter().all(|&z| z == 0),
                "{what}: bias zero point"
            );
        }
        DType::Float32 => assert!(!t.is_quantized(), "{what}: quantized float tensor"),
        DType::Uint8 => {
            assert!(
                t.is_quantized(),
                "{what}: uint8 tensor without quantization"
            );
            for &z in &t.zero_point {
                assert!((0..=255).contains(&z), "{what}: zero point {z}");
            }
        }
        DType::Int16 => assert!(
            t.is_quantized(),
            "{what}: int16 tensor without quantization"
        ),
    }
}

#[test]
fn tensors_are_consistent() {
    for case in cases() {
        assert!(!case.tensors.is_empty(), "{}: no tensors", case.name);
        for (i, t) in case.tensors.iter().enumerate() {
            check_tensor(&case, i, t);
        }
    }
}

#[test]
fn operators_reference_valid_tensors_and_options() {
    for case in cases() {
        let n = case.tensors.len();
        assert!(!case.operators.is_empty(), "{}: no operators", case.name);
        for (k, op) in case.operators.iter().enumerate() {
            let what = format!("{}: operator {k} {}", case.name, op.op);
            assert!(
                supported_ops().contains(&op.op.as_str()),
                "{what}: unknown operator"
            );
            assert!(op.version >= 1, "{what}: version {}", op.version);
            assert!(
                !op.inputs.is_empty() && !op.outputs.is_empty(),
                "{what}: no inputs/outputs"
            );
            for &i in &op.inputs {
                assert!(
                    i == -1 || (0..n as i64).contains(&i),
                    "{what}: input index {i}"
                );
            }
            assert!(op.inputs[0] >= 0, "{what}: first input omitted");
            for &o in &op.outputs {
                assert!(o < n, "{what}: output index {o}");
                assert!(case.tensors[o].data.is_none(), "{what}: writes a constant");
            }
            check_options(&what, op);
        }
        for &i in case.inputs.iter().chain(&case.outputs) {
            assert!(i < n, "{}: subgraph input/output index {i}", case.name);
            assert!(
                case.tensors[i].data.is_none(),
                "{}: subgraph I/O {i} is constant",
                case.name
            );
        }
        assert!(
            !case.inputs.is_empty() && !case.outputs.is_empty(),
            "{}: no I/O",
            case.name
        );
    }
}

fn check_options(what: &str, op: &golden::GoldenOperator) {
    let activation = || {
        let a = op.option_str("fused_activation_function");
        assert!(
            matches!(a, Some("NONE" | "RELU" | "RELU6")),
            "{what}: fused_activation_function {a:?}"
        );
    };
    let padding = || {
        let p = op.option_str("padding");
        assert!(matches!(p, Some("SAME" | "VALID")), "{what}: padding {p:?}");
    };
    let positive = |key: &str| {
        let v = op.option_u64(key);
        assert!(v.is_some_and(|v| v >= 1), "{what}: {key} = {v:?}");
    };
    match op.op.as_str() {
        "CONV_2D" | "DEPTHWISE_CONV_2D" => {
            padding();
            activation();
            for key in [
                "stride_w",
                "stride_h",
                "dilation_w_factor",
                "dilation_h_factor",
            ] {
                positive(key);
            }
            if op.op == "DEPTHWISE_CONV_2D" {
                positive("depth_multiplier");
            }
            assert!(op.inputs.len() == 3, "{what}: expects input, filter, bias");
        }
        "FULLY_CONNECTED" => {
            activation();
            assert!(
                op.option_bool("keep_num_dims").is_some(),
                "{what}: keep_num_dims"
            );
            assert!(op.inputs.len() == 3, "{what}: expects input, weights, bias");
        }
        "AVERAGE_POOL_2D" | "MAX_POOL_2D" => {
            padding();
            activation();
            for key in ["stride_w", "stride_h", "filter_width", "filter_height"] {
                positive(key);
            }
        }
        "ADD" | "SUB" | "MUL" => activation(),
        "SQUARED_DIFFERENCE" | "MAXIMUM" | "MINIMUM" => {
            assert!(op.options.is_empty(), "{what}: options {:?}", op.options);
            assert!(op.inputs.len() == 2, "{what}: expects two inputs");
        }
        "SOFTMAX" => {
            let beta = op.option_f32("beta");
            assert!(beta.is_some_and(|b| b > 0.0), "{what}: beta {beta:?}");
        }
        "MEAN" => assert!(op.option_bool("keep_dims").is_some(), "{what}: keep_dims"),
        "STRIDED_SLICE" => {
            for key in ["begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask"] {
                assert!(op.option_i64(key).is_some(), "{what}: {key}");
            }
            assert!(
                op.option_i64("shrink_axis_mask").is_some(),
                "{what}: shrink"
            );
            assert!(op.option_bool("offset").is_some(), "{what}: offset");
            assert!(
                op.inputs.len() == 4,
                "{what}: expects input, begin, end, strides"
            );
        }
        "SPLIT" | "SPLIT_V" => {
            let n = op.option_u64("num_splits");
            assert_eq!(n, Some(op.outputs.len() as u64), "{what}: num_splits");
        }
        "UNPACK" => {
            let n = op.option_u64("num");
            assert_eq!(n, Some(op.outputs.len() as u64), "{what}: num");
            assert!(op.option_i64("axis").is_some(), "{what}: axis");
        }
        "RESIZE_NEAREST_NEIGHBOR" | "RESIZE_BILINEAR" => {
            for key in ["align_corners", "half_pixel_centers"] {
                assert!(op.option_bool(key).is_some(), "{what}: {key}");
            }
            assert!(op.inputs.len() == 2, "{what}: expects input, size");
        }
        "TRANSPOSE_CONV" => {
            padding();
            activation();
            positive("stride_w");
            positive("stride_h");
            assert!(
                matches!(op.inputs.len(), 3 | 4),
                "{what}: expects output shape, weights, input, maybe bias"
            );
        }
        "DEPTH_TO_SPACE" | "SPACE_TO_DEPTH" => positive("block_size"),
        "SVDF" => {
            activation();
            positive("rank");
            assert!(
                op.inputs.len() == 5,
                "{what}: expects input, weights_feature, weights_time, bias, state"
            );
        }
        "RELU" | "RELU6" => {
            assert!(op.options.is_empty(), "{what}: options {:?}", op.options);
            assert!(op.inputs.len() == 1, "{what}: expects one input");
        }
        "PAD" | "PADV2" | "TRANSPOSE" => {
            assert!(op.options.is_empty(), "{what}: options {:?}", op.options);
            let inputs = if op.op == "PADV2" { 3 } else { 2 };
            assert!(op.inputs.len() == inputs, "{what}: expects {inputs} inputs");
        }
        "CONCATENATION" => {
            activation();
            assert!(op.option_i64("axis").is_some(), "{what}: axis");
        }
        "PACK" => {
            assert!(op.option_i64("axis").is_some(), "{what}: axis");
            let count = op.option_u64("values_count");
            assert_eq!(count, Some(op.inputs.len() as u64), "{what}: values_count");
        }
        _ => {}
    }
}

#[test]
fn vectors_match_the_subgraph_inputs_and_outputs() {
    for case in cases() {
        assert!(
            case.vectors.len() >= 3,
            "{}: only {} vectors",
            case.name,
            case.vectors.len()
        );
        let stateful = case.tensors.iter().any(|t| t.variable);
        assert!(
            case.sequence >= 1 && case.vectors.len() % case.sequence == 0,
            "{}: {} vectors are not whole sequences of {}",
            case.name,
            case.vectors.len(),
            case.sequence
        );
        assert_eq!(
            stateful,
            case.sequence > 1,
            "{}: a case with state runs sequences, and only such a case",
            case.name
        );
        for (v, vector) in case.vectors.iter().enumerate() {
            let what = format!("{} vector {v}", case.name);
            assert_eq!(
                vector.inputs.len(),
                case.inputs.len(),
                "{what}: input count"
            );
            assert_eq!(
                vector.outputs.len(),
                case.outputs.len(),
                "{what}: output count"
            );
            let pairs = vector
                .inputs
                .iter()
                .zip(&case.inputs)
                .chain(vector.outputs.iter().zip(&case.outputs));
            for (values, &t) in pairs {
                let tensor = case.tensor(t);
                assert_eq!(values.len(), tensor.elements(), "{what}: tensor {t} length");
                check_dtype(values, tensor.dtype).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn helpers_read_a_case() {
    let case = golden::load_case("fc_per_tensor_9x5_nobias_relu6");
    let op = &case.operators[0];
    assert_eq!(op.op, "FULLY_CONNECTED");
    assert_eq!(op.input(2), None, "bias is omitted");
    let weights = case.tensor(op.input(1).unwrap());
    assert_eq!(weights.data_i8().len(), 45);
    assert!(weights.scale_f32() > 0.0);
    assert_eq!(case.input_i8(0, 0).len(), 9);
    assert_eq!(case.output_i8(0, 0).len(), 5);
    assert_eq!(op.option_str("fused_activation_function"), Some("RELU6"));

    let float = golden::load_case("float_io_fc_12x6");
    assert_eq!(float.input_tensor(0).dtype, DType::Float32);
    assert_eq!(float.input_f32(0, 0).len(), 12);
    assert_eq!(float.output_f32(0, 0).len(), 6);
}

/// Everything the int8 engine must reproduce appears in at least one case.
#[test]
fn cases_cover_the_required_operators_and_options() {
    let cases = cases();
    let ops: BTreeSet<&str> = cases.iter().flat_map(|c| c.op_names()).collect();
    for op in supported_ops() {
        assert!(ops.contains(op), "no case covers {op}");
    }

    let all_ops = || {
        cases
            .iter()
            .flat_map(|c| c.operators.iter().map(move |o| (c, o)))
    };
    let has = |name: &str, pred: &dyn Fn(&GoldenCase, &golden::GoldenOperator) -> bool| {
        all_ops().any(|(c, o)| o.op == name && pred(c, o))
    };
    let opt = |o: &golden::GoldenOperator, k: &str| o.option_u64(k).unwrap_or(0);
    let filter_shape =
        |c: &GoldenCase, o: &golden::GoldenOperator| c.tensor(o.input(1).unwrap()).shape.clone();

    for conv in ["CONV_2D", "DEPTHWISE_CONV_2D"] {
        for act in ["NONE", "RELU", "RELU6"] {
            assert!(
                has(conv, &|_, o| o.option_str("fused_activation_function")
                    == Some(act)),
                "{conv} with {act}"
            );
        }
        for pad in ["SAME", "VALID"] {
            assert!(
                has(conv, &|_, o| o.option_str("padding") == Some(pad)),
                "{conv} {pad}"
            );
        }
        assert!(
            has(conv, &|_, o| opt(o, "stride_w") == 2),
            "{conv} stride 2"
        );
        assert!(
            has(conv, &|_, o| opt(o, "dilation_w_factor") == 2),
            "{conv} dilation 2"
        );
        assert!(
            has(conv, &|c, o| {
                let f = filter_shape(c, o);
                f[1] != f[2]
            }),
            "{conv} with a non-square kernel"
        );
    }
    assert!(
        has("CONV_2D", &|c, o| opt(o, "stride_w") as usize
            > filter_shape(c, o)[2]),
        "CONV_2D with stride larger than kernel"
    );
    assert!(
        has("CONV_2D", &|c, o| filter_shape(c, o)[1] == 1),
        "CONV_2D 1x1"
    );
    for channels in [1, 3, 5, 7, 8] {
        assert!(
            has("CONV_2D", &|c, o| filter_shape(c, o)[0] == channels),
            "CONV_2D with {channels} output channels"
        );
    }
    assert!(
        has("CONV_2D", &|c, o| {
            let s = &c.tensor(o.input(0).unwrap()).shape;
            s[1] == 1 && s[2] == 1
        }),
        "CONV_2D on a 1x1 image"
    );
    for m in [1, 2, 3] {
        assert!(
            has("DEPTHWISE_CONV_2D", &|_, o| opt(o, "depth_multiplier") == m),
            "multiplier {m}"
        );
    }

    let fc_weights =
        |c: &GoldenCase, o: &golden::GoldenOperator| c.tensor(o.input(1).unwrap()).scale.len();
    assert!(
        has("FULLY_CONNECTED", &|c, o| fc_weights(c, o) == 1),
        "per-tensor FC weights"
    );
    assert!(
        has("FULLY_CONNECTED", &|c, o| fc_weights(c, o) > 1),
        "per-channel FC weights"
    );
    assert!(
        has("FULLY_CONNECTED", &|_, o| o.input(2).is_none()),
        "FC without bias (-1)"
    );
    assert!(
        has("FULLY_CONNECTED", &|_, o| o.option_bool("keep_num_dims")
            == Some(true)),
        "FC keep_num_dims"
    );
    assert!(
        has("FULLY_CONNECTED", &|_, o| o
            .option_str("fused_activation_function")
            == Some("RELU")),
        "FC with RELU"
    );

    for pool in ["AVERAGE_POOL_2D", "MAX_POOL_2D"] {
        for pad in ["SAME", "VALID"] {
            assert!(
                has(pool, &|_, o| o.option_str("padding") == Some(pad)),
                "{pool} {pad}"
            );
        }
    }
    assert!(
        has("AVERAGE_POOL_2D", &|c, o| {
            let out = &c.tensor(o.outputs[0]).shape;
            out[1] == 1 && out[2] == 1
        }),
        "global AVERAGE_POOL_2D"
    );
    assert!(
        has("ADD", &|c, o| {
            let (a, b) = (c.tensor(o.input(0).unwrap()), c.tensor(o.input(1).unwrap()));
            a.scale != b.scale && a.zero_point != b.zero_point
        }),
        "ADD of inputs with different scales and zero points"
    );
    assert!(
        has("ADD", &|_, o| o.option_str("fused_activation_function")
            == Some("RELU")),
        "ADD with RELU"
    );
    // The int8 RELU requantizes; TFLite-Micro's int8 RELU6 clamps input codes and ignores the
    // output quantization, which the converter still sets apart from the input's.
    for relu in ["RELU", "RELU6"] {
        assert!(
            has(relu, &|c, o| {
                let (i, out) = (c.tensor(o.input(0).unwrap()), c.tensor(o.outputs[0]));
                i.scale != out.scale && i.zero_point != out.zero_point
            }),
            "{relu} whose output quantization differs from its input's"
        );
    }
    let softmax_scales: BTreeSet<u32> = all_ops()
        .filter(|(_, o)| o.op == "SOFTMAX")
        .map(|(c, o)| c.tensor(o.input(0).unwrap()).scale[0].to_bits())
        .collect();
    assert!(softmax_scales.len() >= 4, "SOFTMAX at several input scales");

    assert!(
        cases
            .iter()
            .any(|c| c.input_tensor(0).dtype == DType::Float32
                && c.output_tensor(0).dtype == DType::Float32),
        "a float32-in, float32-out model"
    );
    for name in ["conv2d_saturate", "fc_saturate", "conv2d_multiplier_gt_one"] {
        let case = cases.iter().find(|c| c.name == name).expect(name);
        let outs: Vec<i8> = (0..case.vectors.len())
            .flat_map(|v| case.output_i8(v, 0))
            .collect();
        assert!(
            outs.contains(&-128) && outs.contains(&127),
            "{name}: outputs should saturate at both -128 and 127"
        );
    }
    // SVDF: both state types, rank 1 and 2, batch 1 and 2, state carried over sequences with
    // a state zero point other than 0 (int8), and a fused RELU the integer kernel ignores.
    fn state_type<'c>(c: &'c GoldenCase, o: &golden::GoldenOperator) -> &'c GoldenTensor {
        c.tensor(o.input(4).unwrap())
    }
    for dtype in [DType::Int16, DType::Int8] {
        assert!(
            has("SVDF", &|c, o| state_type(c, o).dtype == dtype
                && c.sequence >= 4),
            "SVDF with {dtype:?} state over sequences"
        );
    }
    for rank in [1, 2] {
        assert!(
            has("SVDF", &|_, o| opt(o, "rank") == rank),
            "SVDF rank {rank}"
        );
    }
    assert!(
        has("SVDF", &|c, o| c.tensor(o.input(0).unwrap()).shape[0] == 2),
        "SVDF batch 2"
    );
    assert!(
        has("SVDF", &|c, o| state_type(c, o).zero_point[0] != 0),
        "SVDF int8 state with a zero point"
    );
    assert!(
        has("SVDF", &|_, o| o.option_str("fused_activation_function")
            == Some("RELU")),
        "SVDF with RELU"
    );
    assert!(
        has("SOFTMAX", &|c, o| c.tensor(o.outputs[0]).dtype
            == DType::Int16),
        "SOFTMAX to int16"
    );
    for (from, to) in [(DType::Int16, DType::Int8), (DType::Int16, DType::Int32)] {
        assert!(
            has("QUANTIZE", &|c, o| c.tensor(o.input(0).unwrap()).dtype
                == from
                && c.tensor(o.outputs[0]).dtype == to),
            "QUANTIZE {from:?} -> {to:?}"
        );
    }
    assert!(
        cases.iter().any(|c| c.operators.len() >= 7),
        "a multi-operator model (the depthwise-separable CNN)"
    );
}
