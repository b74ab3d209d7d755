//! `.tflite` import: reading a TFLite flatbuffer into a [`TfGraph`], building it into a `.mote`
//! blob, and running int8 vectors through either kind of file.
//!
//! The reader is written against TFLite's `schema.fbs` (schema version 3) and reads the file in
//! place: every offset, length and index is checked, so any byte string gives a graph or an
//! error, never a panic or an out-of-bounds read.

mod flatbuf;
mod names;
mod reader;

use crate::builder::{BuiltModel, ModelBuilder};
use crate::tfgraph::TfGraph;
use crate::AlignedBytes;
use anyhow::{anyhow, bail, ensure, Context, Result};
use mote_core::format::{DType, MAGIC};
use mote_core::{Interpreter, Model, TensorInfo};

/// Whether `bytes` looks like a `.tflite` file (a flatbuffer with TFLite's `TFL3` identifier).
pub fn is_tflite(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"TFL3".as_slice())
}

/// Whether `bytes` looks like a `.mote` blob (it starts with the `MOTE` magic).
pub fn is_mote(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(MAGIC.as_slice())
}

/// Reads the main subgraph of a `.tflite` file.
///
/// Operators keep their order and their TFLite names and versions (a custom operator is named
/// `CUSTOM(<custom code>)`); builtin options become [`crate::tfgraph::TfOptions`]. Only the
/// tensors that an operator or the subgraph's inputs and outputs refer to are kept, in their
/// original order (indices are renumbered accordingly); tensors whose buffer holds data are
/// constants, and per-channel quantization keeps its `quantized_dimension` as the axis.
/// Operator codes that no operator uses are ignored.
///
/// Errors name what is wrong: the operator (index, name, version) whose option is unsupported,
/// the tensor (index, name, first use) whose type mote lacks, or the malformed part of the file.
pub fn read_tflite(bytes: &[u8]) -> Result<TfGraph> {
    reader::read(bytes)
}

/// Lowers a graph read from a `.tflite` file onto a [`ModelBuilder`]; an operator mote lacks
/// is reported as `operator <index>: <NAME> v<version> is not supported by mote`.
pub fn lower(graph: &TfGraph) -> Result<ModelBuilder> {
    graph.to_builder().map_err(|e| {
        // `to_builder` names the failing operator in its outermost context; when the cause is
        // that mote has no such operator, say it in one line.
        let outer = e.to_string();
        let cause = e.root_cause().to_string();
        graph
            .operators
            .iter()
            .enumerate()
            .find(|(k, op)| {
                outer == format!("operator {k} ({} v{})", op.name, op.version)
                    && cause == format!("operator {} is not supported by mote", op.name)
            })
            .map_or(e, |(k, op)| {
                anyhow!(
                    "operator {k}: {} v{} is not supported by mote",
                    op.name,
                    op.version
                )
            })
    })
}

/// Reads a `.tflite` file, lowers it and builds the `.mote` blob (constants precomputed, arena
/// planned, blob validated by mote-core's parser).
pub fn import_tflite(bytes: &[u8]) -> Result<BuiltModel> {
    let graph = read_tflite(bytes)?;
    lower(&graph)?.build()
}

/// Runs int8 vectors through a model given as a `.mote` blob or a `.tflite` file (told apart
/// by their magic numbers). `input` holds the vectors back to back, each the model's inputs'
/// bytes in input order; the result holds the outputs the same way, one vector after another
/// (the layout of the MLPerf Tiny golden files).
pub fn infer(model_bytes: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    let blob = if is_mote(model_bytes) {
        AlignedBytes::new(model_bytes)
    } else if is_tflite(model_bytes) {
        AlignedBytes::new(&import_tflite(model_bytes)?.bytes)
    } else {
        bail!("the model is neither a .mote blob (`MOTE` magic) nor a .tflite file (`TFL3` identifier)")
    };
    let model = Model::parse(blob.as_slice()).map_err(|e| anyhow!("invalid .mote blob: {e}"))?;
    let in_sizes = (0..model.input_count())
        .map(|i| int8_bytes(model.input(i), "input", i))
        .collect::<Result<Vec<_>>>()?;
    let out_sizes = (0..model.output_count())
        .map(|i| int8_bytes(model.output(i), "output", i))
        .collect::<Result<Vec<_>>>()?;
    let vector_len: usize = in_sizes.iter().sum();
    ensure!(vector_len > 0, "the model has no input bytes");
    ensure!(
        !input.is_empty() && input.len() % vector_len == 0,
        "the input is {} bytes, not a whole number of {vector_len}-byte input vectors",
        input.len()
    );
    let vectors = input.len() / vector_len;

    let mut arena = crate::AlignedBytes::zeroed(model.arena_size());
    let arena_bytes = arena.as_mut_slice();
    let mut interpreter =
        Interpreter::new(model, arena_bytes).map_err(|e| anyhow!("cannot bind the arena: {e}"))?;
    let mut out = Vec::with_capacity(vectors * out_sizes.iter().sum::<usize>());
    for (v, vector) in input.chunks_exact(vector_len).enumerate() {
        let mut at = 0;
        for (i, &size) in in_sizes.iter().enumerate() {
            let slot = interpreter
                .input_i8(i as u16)
                .map_err(|e| anyhow!("model input {i}: {e}"))?;
            for (dst, &src) in slot.iter_mut().zip(&vector[at..at + size]) {
                *dst = src as i8;
            }
            at += size;
        }
        interpreter
            .invoke()
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("vector {v}"))?;
        for o in 0..out_sizes.len() {
            let got = interpreter
                .output_i8(o as u16)
                .map_err(|e| anyhow!("model output {o}: {e}"))?;
            out.extend(got.iter().map(|&x| x as u8));
        }
    }
    Ok(out)
}

/// The byte size of a model input or output, which must be int8.
fn int8_bytes(t: Result<TensorInfo, mote_core::Error>, what: &str, i: u16) -> Result<usize> {
    let t = t.map_err(|e| anyhow!("model {what} {i}: {e}"))?;
    ensure!(
        t.dtype() == DType::I8,
        "model {what} {i} is {:?}; only int8 vectors can be run",
        t.dtype()
    );
    Ok(t.arena_range().len())
}
