//! What a model costs: per-layer multiply-accumulates, weights, and arena placement.

use mote_core::format::{Storage, NO_TENSOR};
use mote_core::{Error, Model};
use std::fmt::Write;

/// One operator's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    /// Operator name (TFLite's spelling).
    pub op: &'static str,
    /// Output shape, NHWC.
    pub output_shape: [usize; 4],
    /// Multiply-accumulates (convolutions and fully connected layers; 0 for the rest).
    pub macs: u64,
    /// Bytes of constants the layer reads (weights, biases).
    pub weight_bytes: usize,
    /// The output's arena offset and size.
    pub arena: (usize, usize),
    /// The kernel's scratch: arena offset and size (size 0: none).
    pub scratch: (usize, usize),
}

/// Per-layer figures for every operator of `model`.
pub fn layers(model: &Model<'_>) -> Result<Vec<LayerStats>, Error> {
    (0..model.op_count())
        .map(|i| {
            let op = model.op(i)?;
            let out = model.tensor(op.output)?;
            let s = out.shape;
            let layer = model.layer(i)?;
            let macs = layer.macs(model)?;
            let mut weight_bytes = 0;
            for t in op.inputs.iter().filter(|&&t| t != NO_TENSOR) {
                let t = model.tensor(*t)?;
                if t.record.storage == Storage::Constant {
                    weight_bytes += t.record.byte_len as usize;
                }
            }
            Ok(LayerStats {
                op: op.opcode.name(),
                output_shape: [s.n, s.h, s.w, s.c],
                macs,
                weight_bytes,
                arena: (out.record.offset as usize, out.record.byte_len as usize),
                scratch: (layer.scratch().offset, layer.scratch().len),
            })
        })
        .collect()
}

/// What an arena block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// An operator's output, read by later operators.
    Activation,
    /// A model input or output (written or read by the caller).
    Io,
    /// A variable (state) tensor: live for the whole run, kept between invokes.
    State,
    /// A kernel's scratch, live during its operator only.
    Scratch,
    /// A RESHAPE's output, planned onto its input's bytes on purpose.
    Alias,
}

/// One planned arena buffer: its bytes and the operator steps it is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaBlock {
    /// Short name: `t12`, `input 0`, `scratch 3`.
    pub label: String,
    /// What it holds.
    pub kind: BlockKind,
    /// Arena offset.
    pub offset: usize,
    /// Bytes.
    pub size: usize,
    /// First operator step it is live (0 for what the caller provides).
    pub first: usize,
    /// Last step it is live, inclusive (`op_count` for model outputs and state).
    pub last: usize,
}

/// The memory plan of a model: the arena and every buffer in it over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaMap {
    /// Planned arena bytes.
    pub arena_size: usize,
    /// Operator names, in execution order.
    pub ops: Vec<&'static str>,
    /// Tensors and scratch buffers.
    pub blocks: Vec<ArenaBlock>,
}

/// The arena plan stored in `model`: each arena tensor's offset, size and lifetime as the
/// builder planned them (the records' `live_from..=live_to`), and each kernel's scratch.
/// Tensors no operator or caller touches are left out (they take no planned space).
pub fn arena_map(model: &Model<'_>) -> Result<ArenaMap, Error> {
    let stats = layers(model)?;
    let mut used = vec![false; model.tensor_count() as usize];
    let mut aliases = Vec::new();
    for i in 0..model.op_count() {
        let op = model.op(i)?;
        for t in op.inputs.iter().chain([&op.output]) {
            if let Some(u) = used.get_mut(*t as usize) {
                *u = true;
            }
        }
        if op.opcode.aliases_input() {
            aliases.push(op.output);
        }
    }
    let mut io = Vec::new();
    for i in 0..model.input_count() {
        io.push((model.input(i)?.index, format!("input {i}")));
    }
    for i in 0..model.output_count() {
        io.push((model.output(i)?.index, format!("output {i}")));
    }
    let mut blocks = Vec::new();
    for i in 0..model.tensor_count() {
        let t = model.tensor(i)?;
        let named = io.iter().find(|(at, _)| *at == i).map(|(_, n)| n.clone());
        let touched = used[i as usize] || named.is_some() || t.record.variable;
        if t.record.storage != Storage::Arena || !touched {
            continue;
        }
        let kind = match () {
            _ if t.record.variable => BlockKind::State,
            // A RESHAPE output shares its input's bytes even when the caller reads it.
            _ if aliases.contains(&i) => BlockKind::Alias,
            _ if named.is_some() => BlockKind::Io,
            _ => BlockKind::Activation,
        };
        let range = t.arena_range();
        blocks.push(ArenaBlock {
            label: named.unwrap_or(format!("t{i}")),
            kind,
            offset: range.start,
            size: range.len(),
            first: t.record.live_from as usize,
            last: t.record.live_to as usize,
        });
    }
    for (k, l) in stats.iter().enumerate() {
        if l.scratch.1 > 0 {
            blocks.push(ArenaBlock {
                label: format!("scratch {k}"),
                kind: BlockKind::Scratch,
                offset: l.scratch.0,
                size: l.scratch.1,
                first: k,
                last: k,
            });
        }
    }
    Ok(ArenaMap {
        arena_size: model.arena_size(),
        ops: stats.iter().map(|l| l.op).collect(),
        blocks,
    })
}

/// One line per model input and output: type, shape, quantization and arena bytes.
fn edges(s: &mut String, model: &Model<'_>) -> Result<(), Error> {
    let inputs = (0..model.input_count()).map(|i| ("input", i, model.input(i)));
    let outputs = (0..model.output_count()).map(|i| ("output", i, model.output(i)));
    for (what, i, t) in inputs.chain(outputs) {
        let t = t?;
        let sh = t.shape;
        let quant = match t.scale() {
            0.0 => String::new(),
            scale => format!(", scale {scale:e}, zero point {}", t.zero_point()),
        };
        let range = t.arena_range();
        let _ = writeln!(
            s,
            "{what} {i}: {:?} [{}, {}, {}, {}]{quant}, arena {}+{}",
            t.dtype(),
            sh.n,
            sh.h,
            sh.w,
            sh.c,
            range.start,
            range.len()
        );
    }
    Ok(())
}

/// The variable (state) tensors: how many, and their bytes (kept in the arena for the whole
/// model, carried from one invoke to the next).
pub fn state_bytes(model: &Model<'_>) -> Result<(usize, usize), Error> {
    let mut count = 0;
    let mut bytes = 0;
    for i in 0..model.tensor_count() {
        let t = model.tensor(i)?;
        if t.record.variable {
            count += 1;
            bytes += t.record.byte_len as usize;
        }
    }
    Ok((count, bytes))
}

/// A printable per-layer table with the model's inputs and outputs and totals.
pub fn table(model: &Model<'_>) -> Result<String, Error> {
    let layers = layers(model)?;
    let mut s = String::new();
    let width = layers.iter().map(|l| l.op.len()).fold(18, usize::max);
    let _ = writeln!(
        s,
        "{:>3}  {:<width$} {:<16} {:>10} {:>9} {:>14} {:>16}",
        "#", "operator", "output", "MACs", "weights", "arena at+size", "scratch at+size"
    );
    for (i, l) in layers.iter().enumerate() {
        let shape = format!("{:?}", l.output_shape);
        let arena = format!("{}+{}", l.arena.0, l.arena.1);
        let scratch = match l.scratch {
            (_, 0) => "-".to_string(),
            (at, len) => format!("{at}+{len}"),
        };
        let _ = writeln!(
            s,
            "{i:>3}  {:<width$} {:<16} {:>10} {:>9} {:>14} {:>16}",
            l.op, shape, l.macs, l.weight_bytes, arena, scratch
        );
    }
    edges(&mut s, model)?;
    let (count, bytes) = state_bytes(model)?;
    if count > 0 {
        let _ = writeln!(
            s,
            "state: {bytes} B in {count} variable tensors (in the arena, kept between invokes)"
        );
    }
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    let weights: usize = layers.iter().map(|l| l.weight_bytes).sum();
    let _ = writeln!(
        s,
        "total: {macs} MACs, {weights} weight bytes, blob {} bytes, arena {} bytes (lower bound {})",
        model.bytes().len(),
        model.arena_size(),
        model.arena_lower_bound()
    );
    Ok(s)
}
