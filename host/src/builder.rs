//! The model builder: the only writer of `.mote` blobs. It takes a graph of tensors and
//! operators with float quantization parameters (as a `.tflite` file or mote's own quantizer
//! has them), precomputes every integer constant the kernels need exactly as TFLite-Micro's
//! `Prepare` steps do, plans the arena, writes the blob, and parses it back with mote-core.

use crate::planner::{self, Buffer};
use anyhow::{anyhow, bail, ensure, Context, Result};
use mote_core::format::{
    DType, Header, OpCode, OpRecord, Storage, TensorRecord, CRC_OFFSET, HEADER_LEN, MAX_OP_INPUTS,
    NO_TENSOR, OP_FLAG_TRAINABLE, OP_PARAMS, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION,
};
pub use mote_core::ops::lower::TfOptions;
use mote_core::ops::lower::{LowerError, LowerGraph, LowerSink, Lowering, TensorView};
use mote_core::ops::record::{SCRATCH_LEN, SCRATCH_OFFSET};
use mote_core::ops::Shape4;
use mote_core::quant::QuantizedMultiplier;

/// A tensor's identity in a [`ModelBuilder`].
pub type TensorId = usize;

/// Quantization parameters: one scale and zero point, or one per channel along `axis`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// Scales.
    pub scales: Vec<f32>,
    /// Zero points (same length as `scales`).
    pub zero_points: Vec<i32>,
    /// Axis of the per-channel parameters, in the tensor's own rank.
    pub axis: usize,
}

impl Quantization {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i32) -> Self {
        Self {
            scales: vec![scale],
            zero_points: vec![zero_point],
            axis: 0,
        }
    }
}

/// A constant tensor's elements.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// int8 elements.
    I8(Vec<i8>),
    /// int32 elements.
    I32(Vec<i32>),
    /// f32 elements.
    F32(Vec<f32>),
    /// uint8 elements.
    U8(Vec<u8>),
    /// int16 elements.
    I16(Vec<i16>),
}

/// A tensor: an activation (no data) or a constant.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDef {
    /// Name, for error messages and inspection.
    pub name: String,
    /// Shape, rank 1 to 4 (NHWC for images).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Quantization, for int8 tensors.
    pub quant: Option<Quantization>,
    /// Elements of a constant tensor.
    pub data: Option<Data>,
}

/// An operator in TFLite's vocabulary: which one, its tensors, its options. Its module in
/// mote-core lowers it to a record ([`mote_core::ops::lower`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OpDef {
    /// The operator.
    pub op: OpCode,
    /// Input tensors in TFLite's order; an omitted optional input is `None`.
    pub inputs: Vec<Option<TensorId>>,
    /// The output tensor.
    pub output: TensorId,
    /// Its options (those it does not read keep their defaults).
    pub options: TfOptions,
}

impl OpDef {
    /// Operator `op` reading `inputs` and writing `output`, with `options`.
    pub fn new(op: OpCode, inputs: &[TensorId], output: TensorId, options: TfOptions) -> Self {
        Self {
            op,
            inputs: inputs.iter().copied().map(Some).collect(),
            output,
            options,
        }
    }

    /// The same with an optional bias as the third input.
    pub fn with_bias(mut self, bias: Option<TensorId>) -> Self {
        self.inputs.push(bias);
        self
    }
}

/// An operator lowered to its record: inputs, parameters, requantization constants.
struct LoweredOp {
    opcode: OpCode,
    inputs: [Option<usize>; MAX_OP_INPUTS],
    output: TensorId,
    params: [i32; OP_PARAMS],
    requant: Vec<QuantizedMultiplier>,
    trainable: bool,
}

/// Where one operator's lowering puts its constants.
struct Sink<'b> {
    tensors: &'b [TensorDef],
    /// Constant tensors computed by the lowerings so far, not yet in the graph.
    added: &'b mut Vec<Vec<u8>>,
    requant: Vec<QuantizedMultiplier>,
}

impl LowerSink for Sink<'_> {
    fn requant(&mut self, q: QuantizedMultiplier) {
        self.requant.push(q);
    }

    fn constant_u8(&mut self, bytes: &mut dyn Iterator<Item = u8>) -> usize {
        let bytes: &[u8] = &bytes.collect::<Vec<u8>>();
        let same = |t: &TensorDef| matches!(&t.data, Some(Data::U8(v)) if v[..] == *bytes);
        if let Some(id) = self.tensors.iter().position(same) {
            return id;
        }
        let pending = self.added.iter().position(|v| v[..] == *bytes);
        let k = pending.unwrap_or_else(|| {
            self.added.push(bytes.to_vec());
            self.added.len() - 1
        });
        self.tensors.len() + k
    }
}

/// The builder's tensors as mote-core's lowerings see them.
struct Graph<'b> {
    tensors: &'b [TensorDef],
    shapes: &'b [Shape4],
    variables: &'b [TensorId],
}

impl LowerGraph for Graph<'_> {
    fn tensor(&self, id: usize) -> Option<TensorView<'_>> {
        let t = self.tensors.get(id)?;
        let (scales, zero_points) = match &t.quant {
            Some(q) => (&q.scales[..], &q.zero_points[..]),
            None => (&[][..], &[][..]),
        };
        Some(TensorView {
            dims: &t.shape,
            shape: *self.shapes.get(id)?,
            dtype: t.dtype,
            scales,
            zero_points,
            i32_data: match &t.data {
                Some(Data::I32(v)) => Some(v),
                _ => None,
            },
            i8_data: match &t.data {
                Some(Data::I8(v)) => Some(v),
                _ => None,
            },
            i16_data: match &t.data {
                Some(Data::I16(v)) => Some(v),
                _ => None,
            },
            constant: t.data.is_some(),
            variable: self.variables.contains(&id),
        })
    }
}

/// Builds a `.mote` blob from tensors and operators.
#[derive(Debug, Clone, Default)]
pub struct ModelBuilder {
    tensors: Vec<TensorDef>,
    ops: Vec<(OpDef, bool)>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    variables: Vec<TensorId>,
}

/// A written blob and what the planner found.
#[derive(Debug, Clone)]
pub struct BuiltModel {
    /// The `.mote` bytes.
    pub bytes: Vec<u8>,
    /// Planned arena bytes.
    pub arena_size: usize,
    /// The most activation and kernel-scratch bytes live at once: no plan can be smaller.
    pub arena_lower_bound: usize,
    /// Arena offset of each tensor (`None` for constants), by [`TensorId`].
    pub arena_offsets: Vec<Option<usize>>,
}

impl ModelBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor.
    pub fn tensor(&mut self, def: TensorDef) -> TensorId {
        self.tensors.push(def);
        self.tensors.len() - 1
    }

    /// Adds an operator; operators run in the order they are added.
    pub fn op(&mut self, op: OpDef) -> usize {
        self.ops.push((op, false));
        self.ops.len() - 1
    }

    /// Marks operator `index` as trainable on the device.
    pub fn set_trainable(&mut self, index: usize, trainable: bool) -> Result<()> {
        let op = self
            .ops
            .get_mut(index)
            .ok_or_else(|| anyhow!("no operator {index}"))?;
        op.1 = trainable;
        Ok(())
    }

    /// Marks tensor `id` variable: state an operator reads and updates in place, kept from
    /// one invoke to the next (live for the whole model, set to its zero point at reset).
    pub fn set_variable(&mut self, id: TensorId) -> Result<()> {
        self.check_id(id)?;
        ensure!(
            self.tensors[id].data.is_none(),
            "tensor `{}` is constant and cannot be variable",
            self.tensors[id].name
        );
        if !self.variables.contains(&id) {
            self.variables.push(id);
        }
        Ok(())
    }

    /// Declares the model's inputs.
    pub fn inputs(&mut self, ids: &[TensorId]) {
        self.inputs = ids.to_vec();
    }

    /// Declares the model's outputs.
    pub fn outputs(&mut self, ids: &[TensorId]) {
        self.outputs = ids.to_vec();
    }

    /// The tensors added so far.
    pub fn tensors(&self) -> &[TensorDef] {
        &self.tensors
    }

    /// The tensors added so far, to adjust before building.
    pub fn tensors_mut(&mut self) -> &mut [TensorDef] {
        &mut self.tensors
    }

    /// Computes every constant, plans the arena, writes the blob and checks it parses.
    pub fn build(&self) -> Result<BuiltModel> {
        ensure!(!self.inputs.is_empty(), "the model has no inputs");
        ensure!(!self.outputs.is_empty(), "the model has no outputs");
        ensure!(self.tensors.len() < NO_TENSOR as usize, "too many tensors");
        ensure!(self.ops.len() < u16::MAX as usize, "too many operators");
        let shapes = self
            .tensors
            .iter()
            .map(|t| to_shape4(&t.shape).with_context(|| format!("tensor `{}`", t.name)))
            .collect::<Result<Vec<_>>>()?;
        for (id, t) in self.tensors.iter().enumerate() {
            check_data(t)?;
            if t.quant.is_some() {
                self.quant(id)?;
            }
        }
        let (lowered, added) = self.lower(&shapes)?;
        if !added.is_empty() {
            // Lookup tables the lowerings computed: built again with them as constants, which
            // the second lowering finds and shares.
            let mut full = self.clone();
            for (k, bytes) in added.into_iter().enumerate() {
                full.tensor(TensorDef {
                    name: format!("computed_table_{k}"),
                    shape: vec![bytes.len()],
                    dtype: DType::U8,
                    quant: None,
                    data: Some(Data::U8(bytes)),
                });
            }
            return full.build();
        }

        // Lifetimes, following the operator order.
        let n_ops = lowered.len();
        let mut first = vec![usize::MAX; self.tensors.len()];
        let mut last = vec![0usize; self.tensors.len()];
        for &i in &self.inputs {
            self.check_id(i)?;
            first[i] = 0;
        }
        for &v in &self.variables {
            first[v] = 0;
            last[v] = n_ops;
        }
        for (k, op) in lowered.iter().enumerate() {
            for i in op.inputs.into_iter().flatten() {
                if self.tensors[i].data.is_none() {
                    ensure!(
                        first[i] != usize::MAX,
                        "operator {k} ({}) reads `{}` before anything writes it",
                        op.opcode.name(),
                        self.tensors[i].name
                    );
                    last[i] = last[i].max(k);
                }
            }
            let out = op.output;
            ensure!(
                !self.variables.contains(&out),
                "operator {k} ({}) writes variable tensor `{}` as its output",
                op.opcode.name(),
                self.tensors[out].name
            );
            ensure!(
                first[out] == usize::MAX,
                "tensor `{}` is written twice (or is a model input)",
                self.tensors[out].name
            );
            ensure!(
                self.tensors[out].data.is_none(),
                "operator {k} writes a constant"
            );
            first[out] = k;
            last[out] = last[out].max(k);
        }
        for &o in &self.outputs {
            self.check_id(o)?;
            ensure!(
                first[o] != usize::MAX,
                "model output `{}` is never written",
                self.tensors[o].name
            );
            last[o] = n_ops;
        }

        // RESHAPE outputs share their input's buffer: plan each alias group once.
        let mut group: Vec<usize> = (0..self.tensors.len()).collect();
        for op in &lowered {
            if let (true, Some(input)) = (op.opcode.aliases_input(), op.inputs[0]) {
                group[op.output] = group[input];
            }
        }
        let mut buffers = Vec::new();
        let mut buffer_of = vec![None; self.tensors.len()];
        for (i, t) in self.tensors.iter().enumerate() {
            if t.data.is_some() || first[i] == usize::MAX {
                continue;
            }
            let size = shapes[i].elements().unwrap_or(0) * t.dtype.size();
            let root = group[i];
            let slot = match buffer_of[root] {
                Some(slot) => slot,
                None => {
                    buffers.push(Buffer {
                        size: 0,
                        first: usize::MAX,
                        last: 0,
                    });
                    buffers.len() - 1
                }
            };
            buffer_of[root] = Some(slot);
            buffer_of[i] = Some(slot);
            let b: &mut Buffer = &mut buffers[slot];
            b.size = b.size.max(size.next_multiple_of(planner::ALIGN));
            b.first = b.first.min(first[i]);
            b.last = b.last.max(last[i]);
        }
        // Constants no record reads (TFLite inputs a lowering consumed: a RESHAPE's shape, SVDF's
        // time weights and bias it folded into one constant) stay out of the blob; the rest are
        // numbered in order.
        let mut read = vec![false; self.tensors.len()];
        for i in lowered
            .iter()
            .flat_map(|op| op.inputs.into_iter().flatten())
        {
            read[i] = true;
        }
        let mut renumber = vec![None; self.tensors.len()];
        let mut next = 0;
        for (i, t) in self.tensors.iter().enumerate() {
            if t.data.is_none() || read[i] {
                renumber[i] = Some(next);
                next += 1;
            }
        }
        // Each kernel's scratch is a buffer live during its operator only, sized by mote-core
        // from the decoded operator (the same sizing its kernels check): a first pass writes
        // the blob without scratch to read those sizes, a second one plans them in.
        let tensor_buffers = buffers;
        let mut scratch = vec![0usize; n_ops];
        for _pass in 0..2 {
            let mut buffers = tensor_buffers.clone();
            let mut scratch_of = vec![None; n_ops];
            for (k, &bytes) in scratch.iter().enumerate() {
                if bytes > 0 {
                    scratch_of[k] = Some(buffers.len());
                    buffers.push(Buffer {
                        size: bytes.next_multiple_of(planner::ALIGN),
                        first: k,
                        last: k,
                    });
                }
            }
            let plan = planner::plan(&buffers);

            let mut writer = Writer::default();
            let mut records = Vec::with_capacity(self.tensors.len());
            for (i, t) in self.tensors.iter().enumerate() {
                if renumber[i].is_none() {
                    continue;
                }
                records.push(self.tensor_record(i, t, &shapes, &mut writer, |i| {
                    buffer_of[i].map(|s| (plan.offsets[s], first[i], last[i]))
                })?);
            }
            let mut op_records = Vec::with_capacity(n_ops);
            for (k, op) in lowered.iter().enumerate() {
                let mut rec = op.record(&mut writer, &renumber);
                if let Some(slot) = scratch_of[k] {
                    rec.params[SCRATCH_OFFSET] = i32::try_from(plan.offsets[slot])?;
                    rec.params[SCRATCH_LEN] = i32::try_from(buffers[slot].size)?;
                }
                op_records.push(rec);
            }

            let io = |ids: &[TensorId]| -> Vec<TensorId> {
                ids.iter().map(|&i| renumber[i].unwrap_or(i)).collect()
            };
            let bytes = assemble(
                &records,
                &op_records,
                &io(&self.inputs),
                &io(&self.outputs),
                &writer.data,
                &plan,
            )?;
            let aligned = crate::AlignedBytes::new(&bytes);
            let model = mote_core::Model::parse(aligned.as_slice())
                .map_err(|e| anyhow!("the written blob does not validate: {e} (a builder bug)"))?;
            let needed = (0..model.op_count())
                .map(|k| model.kernel_scratch(k).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!("sizing kernel scratch: {e} (a builder bug)"))?;
            if needed == scratch {
                return Ok(BuiltModel {
                    bytes,
                    arena_size: plan.arena_size,
                    arena_lower_bound: plan.lower_bound,
                    arena_offsets: (0..self.tensors.len())
                        .map(|i| buffer_of[i].map(|s| plan.offsets[s]))
                        .collect(),
                });
            }
            scratch = needed;
        }
        bail!("kernel scratch sizes did not settle (a builder bug)")
    }

    fn check_id(&self, id: TensorId) -> Result<()> {
        ensure!(id < self.tensors.len(), "no tensor {id}");
        Ok(())
    }

    fn tensor_record(
        &self,
        i: usize,
        t: &TensorDef,
        shapes: &[Shape4],
        writer: &mut Writer,
        placement: impl Fn(usize) -> Option<(usize, usize, usize)>,
    ) -> Result<TensorRecord> {
        let shape = shapes[i];
        let byte_len = shape.elements().unwrap_or(0) * t.dtype.size();
        let (scale, zero_point) = match &t.quant {
            Some(q) if q.scales.len() == 1 => (q.scales[0], q.zero_points[0]),
            _ => (0.0, 0),
        };
        let (channel_axis, channel_scales) = match &t.quant {
            Some(q) if q.scales.len() > 1 => {
                let axis = q.axis + 4 - t.shape.len();
                ensure!(
                    q.scales.len() == [shape.n, shape.h, shape.w, shape.c][axis],
                    "tensor `{}`: {} per-channel scales for a dimension of {}",
                    t.name,
                    q.scales.len(),
                    [shape.n, shape.h, shape.w, shape.c][axis]
                );
                (axis as u8, writer.f32s(&q.scales))
            }
            _ => (0, 0),
        };
        let (storage, offset, live_from, live_to) = match (&t.data, placement(i)) {
            (Some(data), _) => (Storage::Constant, writer.data(data), 0, 0),
            (None, Some((offset, first, last))) => (Storage::Arena, offset as u32, first, last),
            // An activation nothing reads or writes: give it no space.
            (None, None) => (Storage::Arena, 0, 0, 0),
        };
        Ok(TensorRecord {
            dtype: t.dtype,
            storage,
            channel_axis,
            shape: [shape.n, shape.h, shape.w, shape.c].map(|d| d as u32),
            offset,
            byte_len: byte_len as u32,
            scale,
            zero_point,
            channel_scales,
            live_from: live_from as u16,
            live_to: live_to as u16,
            variable: self.variables.contains(&i),
        })
    }

    fn quant(&self, id: TensorId) -> Result<&Quantization> {
        let t = &self.tensors[id];
        let q = t
            .quant
            .as_ref()
            .ok_or_else(|| anyhow!("tensor `{}` has no quantization parameters", t.name))?;
        ensure!(
            !q.scales.is_empty() && q.scales.len() == q.zero_points.len(),
            "tensor `{}`: scales and zero points differ in number",
            t.name
        );
        ensure!(
            q.scales.iter().all(|s| s.is_finite() && *s > 0.0),
            "tensor `{}`: scales must be positive and finite",
            t.name
        );
        if t.dtype == DType::I8 {
            ensure!(
                q.zero_points.iter().all(|z| (-128..=127).contains(z)),
                "tensor `{}`: an int8 zero point must lie in -128..=127",
                t.name
            );
        }
        Ok(q)
    }

    /// Lowers every operator with its module in mote-core; also the constant tensors the
    /// lowerings computed that the graph does not have yet (their ids follow its tensors').
    fn lower(&self, shapes: &[Shape4]) -> Result<(Vec<LoweredOp>, Vec<Vec<u8>>)> {
        let graph = Graph {
            tensors: &self.tensors,
            shapes,
            variables: &self.variables,
        };
        let mut lowered = Vec::with_capacity(self.ops.len());
        let mut added = Vec::new();
        for (k, (op, trainable)) in self.ops.iter().enumerate() {
            let mut sink = Sink {
                tensors: &self.tensors,
                added: &mut added,
                requant: Vec::new(),
            };
            let io = (&op.inputs[..], op.output);
            let done = Lowering::run(op.op, &graph, io, &op.options, &mut sink)
                .map_err(|e| anyhow!(self.describe(e)))
                .with_context(|| format!("operator {k} ({})", op.op.name()))?;
            lowered.push(LoweredOp {
                opcode: op.op,
                inputs: done.inputs,
                output: op.output,
                params: done.params,
                requant: sink.requant,
                trainable: *trainable,
            });
        }
        Ok((lowered, added))
    }

    /// A lowering's error with the builder's tensor names.
    fn describe(&self, e: LowerError) -> String {
        let name = |id: usize| self.tensors.get(id).map_or("?", |t| t.name.as_str());
        match e {
            LowerError::WrongType {
                tensor,
                role,
                expected,
            } => format!(
                "{role} `{}` is {}; this operator needs {}",
                name(tensor),
                self.tensors.get(tensor).map_or("?", |t| t.dtype.name()),
                expected.name()
            ),
            LowerError::WrongOutputShape { tensor, expected } => format!(
                "output `{}` has shape {:?} but the layer produces {:?}",
                name(tensor),
                self.tensors.get(tensor).map(|t| &t.shape),
                [expected.n, expected.h, expected.w, expected.c]
            ),
            LowerError::Quantization { tensor, what } => {
                format!("tensor `{}`: {what}", name(tensor))
            }
            other => other.to_string(),
        }
    }
}

impl LoweredOp {
    /// The operator's record, its requantization constants written to `w`.
    /// `renumber` gives each builder tensor's index in the blob.
    fn record(&self, w: &mut Writer, renumber: &[Option<usize>]) -> OpRecord {
        let (requant_offset, requant_count) = match self.requant.is_empty() {
            true => (0, 0),
            false => (w.requant(&self.requant), self.requant.len() as u32),
        };
        let index = |t: usize| renumber[t].map_or(NO_TENSOR, |t| t as u16);
        OpRecord {
            opcode: self.opcode,
            flags: if self.trainable { OP_FLAG_TRAINABLE } else { 0 },
            inputs: self.inputs.map(|t| t.map_or(NO_TENSOR, index)),
            output: index(self.output),
            requant_offset,
            requant_count,
            params: self.params,
        }
    }
}

/// Pads a rank-1..4 shape to NHWC with leading ones.
fn to_shape4(shape: &[usize]) -> Result<Shape4> {
    ensure!(
        (1..=4).contains(&shape.len()),
        "rank {} is not supported (1 to 4)",
        shape.len()
    );
    ensure!(
        shape.iter().all(|&d| d > 0 && d <= u32::MAX as usize),
        "dimensions must be positive: {shape:?}"
    );
    let mut dims = [1usize; 4];
    dims[4 - shape.len()..].copy_from_slice(shape);
    let s = Shape4::new(dims[0], dims[1], dims[2], dims[3]);
    ensure!(
        s.elements().is_some_and(|n| n <= u32::MAX as usize / 4),
        "shape {shape:?} is too large"
    );
    Ok(s)
}

fn check_data(t: &TensorDef) -> Result<()> {
    let Some(data) = &t.data else { return Ok(()) };
    let (len, dtype) = match data {
        Data::I8(v) => (v.len(), DType::I8),
        Data::I32(v) => (v.len(), DType::I32),
        Data::F32(v) => (v.len(), DType::F32),
        Data::U8(v) => (v.len(), DType::U8),
        Data::I16(v) => (v.len(), DType::I16),
    };
    ensure!(
        dtype == t.dtype,
        "tensor `{}`: data type differs from the declared {:?}",
        t.name,
        t.dtype
    );
    let expected: usize = t.shape.iter().product();
    ensure!(
        len == expected,
        "tensor `{}`: {len} elements for shape {:?} ({expected})",
        t.name,
        t.shape
    );
    Ok(())
}

/// The constant data section. Offsets are relative to the section until assembly rebases
/// them; the section starts with 16 unused bytes so that no real offset is 0 ("none").
struct Writer {
    data: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Self { data: vec![0; 16] }
    }
}

impl Writer {
    fn align(&mut self) {
        // 16: lets later SIMD kernels read weights with aligned loads.
        while self.data.len() % 16 != 0 {
            self.data.push(0);
        }
    }
    fn push(&mut self, bytes: impl IntoIterator<Item = u8>) -> u32 {
        self.align();
        let at = self.data.len();
        self.data.extend(bytes);
        at as u32
    }
    fn data(&mut self, data: &Data) -> u32 {
        match data {
            Data::I8(v) => self.push(v.iter().map(|&x| x as u8)),
            Data::I32(v) => self.push(v.iter().flat_map(|x| x.to_le_bytes())),
            Data::F32(v) => self.push(v.iter().flat_map(|x| x.to_le_bytes())),
            Data::U8(v) => self.push(v.iter().copied()),
            Data::I16(v) => self.push(v.iter().flat_map(|x| x.to_le_bytes())),
        }
    }
    fn f32s(&mut self, v: &[f32]) -> u32 {
        self.push(v.iter().flat_map(|x| x.to_le_bytes()))
    }
    fn requant(&mut self, v: &[QuantizedMultiplier]) -> u32 {
        self.push(v.iter().flat_map(|q| {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&q.multiplier.to_le_bytes());
            b[4..].copy_from_slice(&q.shift.to_le_bytes());
            b
        }))
    }
}

fn assemble(
    tensors: &[TensorRecord],
    ops: &[OpRecord],
    inputs: &[TensorId],
    outputs: &[TensorId],
    data: &[u8],
    plan: &planner::Plan,
) -> Result<Vec<u8>> {
    let tensors_offset = HEADER_LEN;
    let ops_offset = tensors_offset + tensors.len() * TENSOR_RECORD_LEN;
    let io_offset = ops_offset + ops.len() * OP_RECORD_LEN;
    let data_offset = (io_offset + 2 * (inputs.len() + outputs.len())).next_multiple_of(16);
    let blob_len = data_offset + data.len();
    ensure!(blob_len <= u32::MAX as usize, "model too large");
    let mut out = vec![0u8; blob_len];
    for (i, t) in tensors.iter().enumerate() {
        let mut t = *t;
        if t.storage == Storage::Constant {
            t.offset += data_offset as u32;
        }
        if t.channel_scales != 0 {
            t.channel_scales += data_offset as u32;
        }
        let at = tensors_offset + i * TENSOR_RECORD_LEN;
        let slot: &mut [u8; TENSOR_RECORD_LEN] =
            (&mut out[at..at + TENSOR_RECORD_LEN]).try_into()?;
        t.write(slot);
    }
    for (i, op) in ops.iter().enumerate() {
        let mut op = *op;
        if op.requant_count > 0 {
            op.requant_offset += data_offset as u32;
        }
        let at = ops_offset + i * OP_RECORD_LEN;
        let slot: &mut [u8; OP_RECORD_LEN] = (&mut out[at..at + OP_RECORD_LEN]).try_into()?;
        op.write(slot);
    }
    for (k, &id) in inputs.iter().chain(outputs).enumerate() {
        out[io_offset + 2 * k..io_offset + 2 * k + 2].copy_from_slice(&(id as u16).to_le_bytes());
    }
    out[data_offset..].copy_from_slice(data);
    let header = Header {
        version: VERSION,
        blob_len: blob_len as u32,
        crc32: 0,
        arena_size: plan.arena_size as u32,
        arena_lower_bound: plan.lower_bound as u32,
        tensor_count: tensors.len() as u16,
        op_count: ops.len() as u16,
        input_count: inputs.len() as u16,
        output_count: outputs.len() as u16,
        tensors_offset: tensors_offset as u32,
        ops_offset: ops_offset as u32,
        io_offset: io_offset as u32,
        data_offset: data_offset as u32,
        data_len: data.len() as u32,
    };
    let mut head = [0u8; HEADER_LEN];
    header.write(&mut head);
    out[..HEADER_LEN].copy_from_slice(&head);
    let crc = mote_core::format::blob_crc(&out);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    if out.len() < HEADER_LEN {
        bail!("internal: blob shorter than its header");
    }
    Ok(out)
}
