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
use mote_core::format::{DType, OpCode, MAGIC};
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

/// Lowers a graph read from a `.tflite` file onto a [`ModelBuilder`]. Operators mote lacks
/// are all named at once, with how many of each the model has.
pub fn lower(graph: &TfGraph) -> Result<ModelBuilder> {
    let simplified = crate::passes::simplify(graph)?;
    let lacking = lacking_operators(&simplified.operators);
    ensure!(lacking.is_empty(), "{}", lacking_message(&lacking, &[]));
    if let Some((k, op)) = first_hybrid(&simplified) {
        bail!(
            "operator {k} ({}) multiplies float32 activations by int8 weights: this is a hybrid \
             (dynamic-range) model, which TFLite-Micro cannot run either. Convert it with \
             full-integer quantization: `converter.optimizations = [tf.lite.Optimize.DEFAULT]`, \
             a `representative_dataset`, and `converter.target_spec.supported_ops = \
             [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]`",
            op.name
        );
    }
    graph.to_builder()
}

/// The first operator that takes a float32 activation and int8 constant weights.
fn first_hybrid(graph: &TfGraph) -> Option<(usize, &crate::tfgraph::TfOperator)> {
    let tensor = |op: &crate::tfgraph::TfOperator, slot: usize| {
        let id = (*op.inputs.get(slot)?)?;
        graph.tensors.get(id)
    };
    graph.operators.iter().enumerate().find(|(_, op)| {
        let float_activation =
            tensor(op, 0).is_some_and(|t| t.data.is_none() && t.dtype == DType::F32);
        let int8_weights = tensor(op, 1).is_some_and(|t| t.data.is_some() && t.dtype == DType::I8);
        float_activation && int8_weights
    })
}

/// Every TFLite builtin operator name the importer takes, sorted.
pub fn supported_operators() -> Vec<&'static str> {
    let mut names: Vec<&str> = OpCode::ALL
        .iter()
        .flat_map(|op| std::iter::once(op.name()).chain(op.tflite_aliases().iter().copied()))
        .chain(crate::passes::REWRITTEN.iter().copied())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The operators mote has no counterpart for (after the graph passes), with their counts.
pub(crate) fn lacking_operators(ops: &[crate::tfgraph::TfOperator]) -> Vec<(String, usize)> {
    reader::count(
        ops.iter()
            .filter(|op| {
                OpCode::from_tflite(&op.name).is_none() && !crate::passes::rewrites(&op.name)
            })
            .map(|op| op.name.clone()),
    )
}

/// One message naming every operator and tensor type mote lacks.
pub(crate) fn lacking_message(ops: &[(String, usize)], types: &[(String, usize)]) -> String {
    let list = |items: &[(String, usize)], unit: &str| {
        items
            .iter()
            .map(|(name, n)| format!("{name} ({n} {unit}{})", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !ops.is_empty() {
        parts.push(format!("operators {}", list(ops, "use")));
    }
    if !types.is_empty() {
        parts.push(format!("tensor types {}", list(types, "tensor")));
    }
    format!(
        "mote does not support {} in this model (`mote import --help` lists what it does)",
        parts.join("; and ")
    )
}

/// Reads a `.tflite` file, lowers it and builds the `.mote` blob (constants precomputed, arena
/// planned, blob validated by mote-core's parser).
pub fn import_tflite(bytes: &[u8]) -> Result<BuiltModel> {
    let graph = read_tflite(bytes)?;
    lower(&graph)?.build()
}

/// Runs input vectors through a model given as a `.mote` blob or a `.tflite` file (told apart
/// by their magic numbers). `input` holds the vectors back to back, each the model's inputs'
/// bytes in input order, each in its own type (little-endian: int8, uint8, int16, int32 or
/// float32); the result holds the outputs the same way, one vector after another
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
        .map(|i| edge_bytes(model.input(i), "input", i))
        .collect::<Result<Vec<_>>>()?;
    let out_sizes = (0..model.output_count())
        .map(|i| edge_bytes(model.output(i), "output", i))
        .collect::<Result<Vec<_>>>()?;
    let vector_len: usize = in_sizes.iter().sum();
    ensure!(vector_len > 0, "the model has no input bytes");
    ensure!(
        !input.is_empty() && input.len() % vector_len == 0,
        "the input is {} bytes, not a whole number of {vector_len}-byte input vectors",
        input.len()
    );
    let vectors = input.len() / vector_len;

    let mut arena = crate::arena_for(&model)?;
    let arena_bytes = arena.as_mut_slice();
    let mut interpreter =
        Interpreter::new(model, arena_bytes).map_err(|e| anyhow!("cannot bind the arena: {e}"))?;
    let mut out = Vec::with_capacity(vectors * out_sizes.iter().sum::<usize>());
    for (v, vector) in input.chunks_exact(vector_len).enumerate() {
        let mut at = 0;
        for (i, &size) in in_sizes.iter().enumerate() {
            interpreter
                .input_bytes(i as u16)
                .map_err(|e| anyhow!("model input {i}: {e}"))?
                .copy_from_slice(&vector[at..at + size]);
            at += size;
        }
        interpreter
            .invoke()
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("vector {v}"))?;
        for o in 0..out_sizes.len() {
            let got = interpreter
                .output_bytes(o as u16)
                .map_err(|e| anyhow!("model output {o}: {e}"))?;
            out.extend_from_slice(got);
        }
    }
    Ok(out)
}

/// The byte size of a model input or output (any element type).
fn edge_bytes(t: Result<TensorInfo, mote_core::Error>, what: &str, i: u16) -> Result<usize> {
    let t = t.map_err(|e| anyhow!("model {what} {i}: {e}"))?;
    Ok(t.arena_range().len())
}
