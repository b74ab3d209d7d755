//! `.tflite` files the converter wrote for the slicing operators and graph passes (Keras models
//! in `tests/slicing/`, made by `tf.lite.TFLiteConverter` like the golden cases): each imports
//! through the reader's options and the passes, and its outputs are the input's elements where
//! the slice puts them (every slice copies raw elements, so no quantization enters).

use mote_host::tflite::{import_tflite, infer, read_tflite};
use std::path::Path;

fn model(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("slicing")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// An input of `n` distinct bytes.
fn ramp(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

/// The model's outputs for `input`, as `parts` chunks sorted (a converter may order a split's
/// outputs by name).
fn sorted_parts(file: &str, input: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let out = infer(&model(file), input).unwrap();
    let mut chunks: Vec<Vec<u8>> = out.chunks(out.len() / parts).map(<[u8]>::to_vec).collect();
    chunks.sort();
    chunks
}

/// `x[:, 1:5:2, ::-1, :]` of a [1, 6, 6, 3] input.
#[test]
fn strided_slice_steps_and_reverses() {
    let x = ramp(108);
    let out = infer(&model("strided_slice.tflite"), &x).unwrap();
    let mut want = Vec::new();
    for h in [1, 3] {
        for w in (0..6).rev() {
            want.extend_from_slice(&x[(h * 6 + w) * 3..][..3]);
        }
    }
    assert_eq!(out, want);
    let graph = read_tflite(&model("strided_slice.tflite")).unwrap();
    let op = &graph.operators[0];
    assert_eq!(op.name, "STRIDED_SLICE");
    assert_ne!(
        op.options.begin_mask & 0b0100,
        0,
        "the reversed width runs from its end"
    );
}

/// `tf.slice(x, [0, 1, 2, 0], [1, 3, -1, 2])` of a [1, 6, 6, 3] input.
#[test]
fn slice_takes_the_box() {
    let x = ramp(108);
    let out = infer(&model("slice.tflite"), &x).unwrap();
    let mut want = Vec::new();
    for h in 1..4 {
        for w in 2..6 {
            want.extend_from_slice(&x[(h * 6 + w) * 3..][..2]);
        }
    }
    assert_eq!(out, want);
}

/// The channel thirds of a [1, 4, 4, 6] input.
#[test]
fn split_gives_each_part() {
    let x = ramp(96);
    let mut want: Vec<Vec<u8>> = (0..3)
        .map(|k| {
            x.chunks(6)
                .flat_map(|px| px[2 * k..2 * k + 2].to_vec())
                .collect()
        })
        .collect();
    want.sort();
    assert_eq!(sorted_parts("split.tflite", &x, 3), want);
    let graph = read_tflite(&model("split.tflite")).unwrap();
    assert_eq!(graph.operators[0].options.num_splits, 3);
}

/// `tf.split(x, [2, -1, 3], axis=2)` of a [1, 4, 7, 3] input: widths 2, 2 and 3, each model
/// output the part its tensor is in SPLIT_V's output list.
#[test]
fn split_v_resolves_the_minus_one() {
    let x = ramp(84);
    let out = infer(&model("split_v.tflite"), &x).unwrap();
    let parts: Vec<Vec<u8>> = [(0, 2), (2, 4), (4, 7)]
        .iter()
        .map(|&(a, b)| {
            x.chunks(21)
                .flat_map(|row| row[3 * a..3 * b].to_vec())
                .collect()
        })
        .collect();
    let graph = read_tflite(&model("split_v.tflite")).unwrap();
    let op = &graph.operators[0];
    assert_eq!(op.options.num_splits, 3);
    let want: Vec<u8> = graph
        .outputs
        .iter()
        .flat_map(|t| parts[op.outputs.iter().position(|o| o == t).unwrap()].clone())
        .collect();
    assert_eq!(out, want);
}

/// `tf.unstack(x, axis=1)` of a [1, 3, 4, 2] input: its three rows.
#[test]
fn unpack_gives_each_row() {
    let x = ramp(24);
    let mut want: Vec<Vec<u8>> = x.chunks(8).map(<[u8]>::to_vec).collect();
    want.sort();
    assert_eq!(sorted_parts("unpack.tflite", &x, 3), want);
    let graph = read_tflite(&model("unpack.tflite")).unwrap();
    assert_eq!(
        (
            graph.operators[0].options.num,
            graph.operators[0].options.axis
        ),
        (3, 1)
    );
}

/// Flatten + Dense with a dynamic batch: the SHAPE chain folds away; a dilated VALID conv with
/// a dynamic batch folds into one CONV_2D.
#[test]
fn passes_fold_the_dynamic_batch_patterns() {
    let built = import_tflite(&model("shape_chain.tflite")).unwrap();
    let ops = mote_core::Model::parse(mote_host::AlignedBytes::new(&built.bytes).as_slice())
        .unwrap()
        .op_count();
    assert_eq!(ops, 2, "RESHAPE and FULLY_CONNECTED remain");
    let built = import_tflite(&model("dilated_valid.tflite")).unwrap();
    let blob = mote_host::AlignedBytes::new(&built.bytes);
    let parsed = mote_core::Model::parse(blob.as_slice()).unwrap();
    assert_eq!(parsed.op_count(), 1);
    assert_eq!(
        parsed.layer(0).unwrap().opcode(),
        mote_core::format::OpCode::Conv2d
    );
}
