//! The `.mote` model: parsed and validated once, then read in place.

mod decoder;
mod paths;

pub use crate::ops::Layer;
pub(crate) use decoder::Decoder;
pub use decoder::Scratch;
pub use paths::Requirement;

use crate::cast;
use crate::format::{
    blob_crc, read_u16, DType, Header, OpRecord, Storage, TensorRecord, HEADER_LEN, MAGIC,
    NO_TENSOR, OP_RECORD_LEN, TENSOR_RECORD_LEN, VERSION,
};
use crate::ops::Shape4;
use crate::quant::QuantizedMultiplier;
use crate::{Error, Why};

/// A validated model, borrowing its bytes (typically from flash).
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    bytes: &'a [u8],
    header: Header,
}

/// A tensor as the model describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorInfo {
    /// Index in the model's tensor table.
    pub index: u16,
    /// The raw record.
    pub record: TensorRecord,
    /// Shape, NHWC.
    pub shape: Shape4,
}

impl TensorInfo {
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.record.dtype
    }
    /// Quantization scale (0.0 for unquantized tensors).
    pub fn scale(&self) -> f32 {
        self.record.scale
    }
    /// Quantization zero point.
    pub fn zero_point(&self) -> i32 {
        self.record.zero_point
    }
    /// Byte range in the arena (arena tensors only).
    pub fn arena_range(&self) -> core::ops::Range<usize> {
        let start = self.record.offset as usize;
        start..start + self.record.byte_len as usize
    }
}

impl<'a> Model<'a> {
    /// Parses and validates a blob: magic, version, header length, CRC-32, every section and
    /// tensor in bounds and aligned, every operator consistent with its tensors and its
    /// parameters within what its kernel takes, and a memory plan in which no two
    /// simultaneously live tensors (nor an operator's scratch and a tensor live while it runs)
    /// share bytes, with at most 32 arena tensors live at once. Never panics, whatever the
    /// bytes; in time linear in the tensor and operator counts.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
                Error::NotAModel
            } else {
                Error::Truncated {
                    expected: HEADER_LEN,
                    actual: bytes.len(),
                }
            });
        }
        if bytes[..4] != MAGIC {
            return Err(Error::NotAModel);
        }
        let header = Header::read(bytes).ok_or(Error::NotAModel)?;
        if header.version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: header.version,
                supported: VERSION,
            });
        }
        if read_u16(bytes, 6) != Some(HEADER_LEN as u16) {
            return Err(Error::BadLayout {
                what: why!("header length differs from this version's"),
            });
        }
        let blob_len = header.blob_len as usize;
        if blob_len < HEADER_LEN || blob_len > bytes.len() {
            return Err(Error::Truncated {
                expected: blob_len,
                actual: bytes.len(),
            });
        }
        if bytes.as_ptr().align_offset(4) != 0 {
            return Err(Error::MisalignedBlob);
        }
        let bytes = &bytes[..blob_len];
        let computed = blob_crc(bytes);
        if computed != header.crc32 {
            return Err(Error::CrcMismatch {
                stored: header.crc32,
                computed,
            });
        }
        let model = Self { bytes, header };
        model.validate()?;
        Ok(model)
    }

    /// The whole blob.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The blob's CRC-32 (verified by [`parse`](Self::parse)): what identifies the model, e.g.
    /// for weights learned on it.
    pub fn crc32(&self) -> u32 {
        self.header.crc32
    }

    /// Bytes of arena an [`Interpreter`](crate::Interpreter) for this model needs.
    pub fn arena_size(&self) -> usize {
        self.header.arena_size as usize
    }

    /// The planner's lower bound on the arena: the most activation bytes live at once.
    pub fn arena_lower_bound(&self) -> usize {
        self.header.arena_lower_bound as usize
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> u16 {
        self.header.tensor_count
    }

    /// Number of operators.
    pub fn op_count(&self) -> u16 {
        self.header.op_count
    }

    /// Number of model inputs.
    pub fn input_count(&self) -> u16 {
        self.header.input_count
    }

    /// Number of model outputs.
    pub fn output_count(&self) -> u16 {
        self.header.output_count
    }

    /// The tensor behind model input `i`.
    pub fn input(&self, i: u16) -> Result<TensorInfo, Error> {
        if i >= self.header.input_count {
            return Err(Error::WrongTensor {
                what: why!("no such model input"),
            });
        }
        self.tensor(self.io_index(i as usize)?)
    }

    /// The tensor behind model output `i`.
    pub fn output(&self, i: u16) -> Result<TensorInfo, Error> {
        if i >= self.header.output_count {
            return Err(Error::WrongTensor {
                what: why!("no such model output"),
            });
        }
        self.tensor(self.io_index(self.header.input_count as usize + i as usize)?)
    }

    fn io_index(&self, slot: usize) -> Result<u16, Error> {
        read_u16(self.bytes, self.header.io_offset as usize + 2 * slot).ok_or(Error::BadLayout {
            what: why!("input/output list"),
        })
    }

    /// Tensor `index`.
    pub fn tensor(&self, index: u16) -> Result<TensorInfo, Error> {
        if index >= self.header.tensor_count {
            return Err(Error::invalid_tensor(index, why!("index out of range")));
        }
        let at = self.header.tensors_offset as usize + index as usize * TENSOR_RECORD_LEN;
        let raw = self
            .bytes
            .get(at..at + TENSOR_RECORD_LEN)
            .ok_or(Error::BadLayout {
                what: why!("tensor table"),
            })?;
        let record = TensorRecord::read(raw).map_err(|what| Error::invalid_tensor(index, what))?;
        let [n, h, w, c] = record.shape.map(|d| d as usize);
        Ok(TensorInfo {
            index,
            record,
            shape: Shape4::new(n, h, w, c),
        })
    }

    /// Operator `index`.
    pub fn op(&self, index: u16) -> Result<OpRecord, Error> {
        if index >= self.header.op_count {
            return Err(Error::invalid_operator(index, why!("index out of range")));
        }
        let at = self.header.ops_offset as usize + index as usize * OP_RECORD_LEN;
        let raw = self
            .bytes
            .get(at..at + OP_RECORD_LEN)
            .ok_or(Error::BadLayout {
                what: why!("operator table"),
            })?;
        OpRecord::read(raw).map_err(|what| Error::invalid_operator(index, what))
    }

    /// The tensor operator `index` writes, read alone (the plan checks ask for nothing else).
    fn op_output(&self, index: u16) -> Result<u16, Error> {
        let at = (index < self.header.op_count)
            .then(|| self.header.ops_offset as usize + index as usize * OP_RECORD_LEN + 12);
        at.and_then(|at| read_u16(self.bytes, at))
            .ok_or(Error::invalid_operator(index, why!("index out of range")))
    }

    /// The f32 weights and bias of FULLY_CONNECTED operator `index`, dequantized from the
    /// blob: `weights[o * inputs + i] = w_scale[o] * w[o][i]` and
    /// `bias[o] = in_scale * w_scale[o] * b[o]`. This is where a layer trained on the device
    /// starts from. Returns
    /// `(outputs, inputs)`.
    pub fn dequantize_dense(
        &self,
        index: u16,
        weights: &mut [f32],
        bias: &mut [f32],
    ) -> Result<(usize, usize), Error> {
        let op = self.op(index)?;
        if op.opcode != crate::format::OpCode::FullyConnected {
            return Err(Error::invalid_operator(
                index,
                why!("only FULLY_CONNECTED layers can be dequantized for training"),
            ));
        }
        let w = self.tensor(op.inputs[1])?;
        let input = self.tensor(op.inputs[0])?;
        let data: &[i8] = self.constant(&w)?;
        let inputs = w.shape.c;
        let outputs = data.len() / inputs;
        if weights.len() != data.len() || bias.len() != outputs {
            return Err(Error::LengthMismatch {
                expected: data.len(),
                actual: weights.len(),
            });
        }
        let scales = self.channel_scales(&w)?;
        let scale = |o: usize| match scales {
            Some(s) => s.get(o).copied().unwrap_or(0.0),
            None => w.scale(),
        };
        for (o, row) in weights.chunks_exact_mut(inputs).enumerate() {
            let s = scale(o);
            for (dst, &q) in row.iter_mut().zip(&data[o * inputs..(o + 1) * inputs]) {
                *dst = s * f32::from(q);
            }
        }
        let b: Option<&[i32]> = match op.inputs[2] {
            NO_TENSOR => None,
            t => Some(self.constant(&self.tensor(t)?)?),
        };
        for (o, dst) in bias.iter_mut().enumerate() {
            let q = b.and_then(|b| b.get(o)).copied().unwrap_or(0);
            *dst = (input.scale() as f64 * scale(o) as f64 * q as f64) as f32;
        }
        Ok((outputs, inputs))
    }

    /// Operator `index` decoded into what the kernels need.
    pub fn layer(&self, index: u16) -> Result<Layer<'a>, Error> {
        let record = self.op(index)?;
        Layer::decode(&Decoder::new(self, index, &record))
    }

    /// Scratch bytes operator `index`'s fast kernel needs in the arena, by the same sizing the
    /// kernels check: the host plans this much; `None` if the operator has no fast kernel
    /// for its shape (it runs a reference kernel, without scratch).
    pub fn kernel_scratch(&self, index: u16) -> Result<Option<usize>, Error> {
        self.layer(index)?.scratch_need(self)
    }

    /// Whether some layer would run its reference kernel: a shape the fast kernels do not
    /// take, or less scratch planned than [`Self::kernel_scratch`]. Firmware for a model where
    /// this is `false` can leave the reference kernels out (feature `reference-kernels`).
    pub fn needs_reference_kernels(&self) -> Result<bool, Error> {
        for index in 0..self.op_count() {
            if self.layer(index)?.needs_reference(self)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A constant tensor's elements, in place.
    pub(crate) fn constant<T: cast::Pod>(&self, t: &TensorInfo) -> Result<&'a [T], Error> {
        self.constant_data(t)
            .map_err(|what| Error::invalid_tensor(t.index, what))
    }

    /// [`Self::constant`], saying only what is wrong with tensor `t`: a register-sized error
    /// where parsing checks every tensor.
    fn constant_data<T: cast::Pod>(&self, t: &TensorInfo) -> Result<&'a [T], Why> {
        let start = t.record.offset as usize;
        let bytes = self
            .bytes
            .get(start..start.saturating_add(t.record.byte_len as usize))
            .ok_or(why!("constant data out of bounds"))?;
        cast::slice(bytes).ok_or(why!("constant data misaligned"))
    }

    /// Per-channel scales of a weight tensor, if it has them.
    pub fn channel_scales(&self, t: &TensorInfo) -> Result<Option<&'a [f32]>, Error> {
        self.channel_scale_data(t)
            .map_err(|what| Error::invalid_tensor(t.index, what))
    }

    /// [`Self::channel_scales`], saying only what is wrong with tensor `t`.
    fn channel_scale_data(&self, t: &TensorInfo) -> Result<Option<&'a [f32]>, Why> {
        if t.record.channel_scales == 0 {
            return Ok(None);
        }
        let axis = t.record.channel_axis as usize;
        let count = *t
            .record
            .shape
            .get(axis)
            .ok_or(why!("channel axis out of range"))? as usize;
        let start = t.record.channel_scales as usize;
        let bytes = count
            .checked_mul(4)
            .and_then(|len| self.bytes.get(start..start.checked_add(len)?))
            .ok_or(why!("channel scales out of bounds"))?;
        cast::slice(bytes)
            .map(Some)
            .ok_or(why!("channel scales misaligned"))
    }

    /// An operator's requantization constants.
    pub(crate) fn requant(
        &self,
        index: u16,
        op: &OpRecord,
    ) -> Result<&'a [QuantizedMultiplier], Error> {
        let start = op.requant_offset as usize;
        let bytes = (op.requant_count as usize)
            .checked_mul(core::mem::size_of::<QuantizedMultiplier>())
            .and_then(|len| self.bytes.get(start..start.checked_add(len)?))
            .ok_or_else(|| {
                Error::invalid_operator(index, why!("requantization constants out of bounds"))
            })?;
        cast::slice(bytes).ok_or_else(|| {
            Error::invalid_operator(index, why!("requantization constants misaligned"))
        })
    }

    fn validate(&self) -> Result<(), Error> {
        let h = &self.header;
        let len = self.bytes.len();
        let section = |offset: u32, count: usize, size: usize, what| {
            let end = count
                .checked_mul(size)
                .and_then(|n| (offset as usize).checked_add(n));
            match end {
                Some(end) if end <= len && offset as usize >= HEADER_LEN && offset % 4 == 0 => {
                    Ok(())
                }
                _ => Err(Error::BadLayout { what }),
            }
        };
        section(
            h.tensors_offset,
            h.tensor_count as usize,
            TENSOR_RECORD_LEN,
            why!("tensor table"),
        )?;
        section(
            h.ops_offset,
            h.op_count as usize,
            OP_RECORD_LEN,
            why!("operator table"),
        )?;
        let io_count = h.input_count as usize + h.output_count as usize;
        section(h.io_offset, io_count, 2, why!("input/output list"))?;
        section(h.data_offset, h.data_len as usize, 1, why!("constant data"))?;
        if h.arena_lower_bound > h.arena_size {
            return Err(Error::BadLayout {
                what: why!("arena smaller than its own lower bound"),
            });
        }
        if h.input_count == 0 || h.output_count == 0 {
            return Err(Error::BadLayout {
                what: why!("a model needs inputs and outputs"),
            });
        }

        for index in 0..h.tensor_count {
            self.validate_tensor(&self.tensor(index)?)
                .map_err(|what| Error::invalid_tensor(index, what))?;
        }
        for slot in 0..io_count {
            let t = self.tensor(self.io_index(slot)?)?;
            if t.record.storage != Storage::Arena {
                return Err(Error::invalid_tensor(
                    t.index,
                    why!("a model input or output must live in the arena"),
                ));
            }
        }
        // The tensor operator 0 writes: every other arena tensor live from step 0 is provided by
        // the caller (a model input, or one nothing writes).
        let first_output = match h.op_count {
            0 => NO_TENSOR,
            _ => self.op_output(0)?,
        };
        for i in 0..h.input_count {
            let t = self.input(i)?;
            if t.record.live_from != 0 || t.index == first_output {
                return Err(Error::invalid_tensor(
                    t.index,
                    why!("a model input must be live from the start, and no operator writes it"),
                ));
            }
        }
        for i in 0..h.output_count {
            if self.output(i)?.record.live_to != h.op_count {
                return Err(Error::invalid_tensor(
                    self.output(i)?.index,
                    why!("a model output must stay live to the end"),
                ));
            }
        }
        self.validate_plan(first_output)
    }

    /// What is wrong with tensor `t`, if anything.
    fn validate_tensor(&self, t: &TensorInfo) -> Result<(), Why> {
        let r = &t.record;
        if r.shape.contains(&0) {
            return Err(why!("zero-sized dimension"));
        }
        let bytes = t
            .shape
            .elements()
            .and_then(|n| n.checked_mul(r.dtype.size()));
        if bytes != Some(r.byte_len as usize) {
            return Err(why!("byte length does not match shape and type"));
        }
        if !(r.scale.is_finite() && r.scale >= 0.0) {
            return Err(why!("scale must be finite and non-negative"));
        }
        if r.dtype == DType::I8 && !(-128..=127).contains(&r.zero_point) {
            return Err(why!("int8 zero point out of range"));
        }
        if r.dtype == DType::I16 && i16::try_from(r.zero_point).is_err() {
            return Err(why!("int16 zero point out of range"));
        }
        if r.offset as usize % r.dtype.size() != 0 {
            return Err(why!("offset misaligned for its type"));
        }
        match r.storage {
            Storage::Arena => {
                let end = r.offset as u64 + r.byte_len as u64;
                if end > self.header.arena_size as u64 {
                    return Err(why!("arena placement past the arena's end"));
                }
                if r.live_from > r.live_to || r.live_to > self.header.op_count {
                    return Err(why!("lifetime out of range"));
                }
                if r.variable && (r.live_from, r.live_to) != (0, self.header.op_count) {
                    return Err(why!("a variable tensor must be live for the whole model"));
                }
            }
            Storage::Constant if r.variable => return Err(why!("a constant cannot be variable")),
            Storage::Constant => {
                let data = self.header.data_offset as u64
                    ..self.header.data_offset as u64 + self.header.data_len as u64;
                let end = r.offset as u64 + r.byte_len as u64;
                if (r.offset as u64) < data.start || end > data.end {
                    return Err(why!("constant data outside the data section"));
                }
                self.constant_data::<i8>(t)?;
            }
        }
        // Read only where `channel_scales` is set; refused anyway so a record has one form.
        if r.channel_axis > 3 {
            return Err(why!("channel axis out of range"));
        }
        // Training dequantizes with these: a NaN or a zero would poison the weights.
        if let Some(scales) = self.channel_scale_data(t)? {
            // Positive and finite, read from the bits: sign clear, not zero, not all-ones
            // exponent (one compare per scale).
            if !scales
                .iter()
                .all(|s| (1..0x7F80_0000).contains(&s.to_bits()))
            {
                return Err(why!("per-channel scales must be finite and positive"));
            }
        }
        Ok(())
    }

    /// Checks operator `index` against its tensors' planned lifetimes and decodes it (which
    /// checks every shape and parameter); returns what the plan sweep needs of it.
    fn validate_op(&self, index: u16, first_output: u16) -> Result<Step, Error> {
        let op = self.op(index)?;
        let bad = |what| Err(Error::invalid_operator(index, what));
        let out = self.tensor(op.output)?;
        if out.record.storage != Storage::Arena
            || out.record.live_from != index
            || out.record.variable
        {
            return bad(why!(
                "output must be a non-variable arena tensor written by this operator"
            ));
        }
        for input in op.inputs.into_iter().filter(|&t| t != NO_TENSOR) {
            let t = self.tensor(input)?;
            if t.record.storage == Storage::Arena {
                // Written by an earlier operator (its first), or provided by the caller.
                let from = t.record.live_from;
                let provided = from == 0 && input != first_output;
                let written = from < index && self.op_output(from)? == input;
                if !(provided || written) || t.record.live_to < index {
                    return bad(why!("reads a tensor outside its planned lifetime"));
                }
            }
        }
        Ok(Step {
            output: Live::of(&out),
            alias: match op.opcode.aliases_input() {
                true => op.inputs[0],
                false => NO_TENSOR,
            },
            // Decoding checks every shape and parameter against what its kernel needs.
            scratch: self.layer(index)?.scratch(),
        })
    }

    /// Validates every operator and the memory plan in one sweep over the operator steps: no
    /// two arena tensors live at one step share bytes (except a RESHAPE's output, planned onto
    /// its input on purpose), and no operator's scratch shares bytes with a tensor live while
    /// it runs. The tensors live at the current step are kept in a fixed array, so the sweep
    /// needs no heap and costs O(tensors + operators x MAX_LIVE).
    fn validate_plan(&self, first_output: u16) -> Result<(), Error> {
        let h = &self.header;
        let mut live = LiveSet {
            entries: [Live::default(); MAX_LIVE],
            len: 0,
        };
        // Step 0 starts with what the caller provides; every other arena tensor is born as
        // the output of the operator its lifetime starts at.
        for index in 0..h.tensor_count {
            let t = self.tensor(index)?;
            let from = t.record.live_from;
            if t.record.storage != Storage::Arena || index == first_output {
                continue;
            }
            if from == 0 {
                live.insert(Live::of(&t), NO_TENSOR)?;
            } else if from >= h.op_count || self.op_output(from)? != index {
                return Err(Error::invalid_tensor(
                    index,
                    why!("an arena tensor must be a model input or an operator's output"),
                ));
            }
        }
        for index in 0..h.op_count {
            let step = self.validate_op(index, first_output)?;
            live.retire(index);
            live.insert(step.output, step.alias)?;
            // The kernel writes its scratch while reading the inputs and writing the output.
            let busy = step.scratch.range();
            if !busy.is_empty() && live.iter().any(|e| e.overlaps(busy.start, busy.end)) {
                return Err(Error::invalid_operator(
                    index,
                    why!("scratch overlaps a tensor live during the operator"),
                ));
            }
        }
        Ok(())
    }
}

/// What the plan sweep needs of an operator.
struct Step {
    /// The tensor it writes.
    output: Live,
    /// The tensor whose bytes the output may share: a RESHAPE's input (else `NO_TENSOR`).
    alias: u16,
    /// Its kernel's scratch.
    scratch: Scratch,
}

/// The most arena tensors a model may have live at one operator step. Real models keep a
/// handful (a few more with skip connections or several outputs); the bound keeps the plan
/// check's memory on the stack.
const MAX_LIVE: usize = 32;

/// An arena tensor in the plan sweep: its bytes, its last step, its index.
#[derive(Debug, Clone, Copy, Default)]
struct Live {
    start: usize,
    end: usize,
    live_to: u16,
    index: u16,
}

impl Live {
    fn of(t: &TensorInfo) -> Self {
        let r = t.arena_range();
        Self {
            start: r.start,
            end: r.end,
            live_to: t.record.live_to,
            index: t.index,
        }
    }

    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.start < end && start < self.end
    }
}

/// The arena tensors live at the sweep's current step, in no order.
struct LiveSet {
    entries: [Live; MAX_LIVE],
    len: usize,
}

impl LiveSet {
    fn iter(&self) -> impl Iterator<Item = &Live> {
        self.entries.iter().take(self.len)
    }

    /// Drops the tensors whose lifetime ended before `step`.
    fn retire(&mut self, step: u16) {
        // `get`, not indexing: the firmware links no panic path.
        let mut kept = 0;
        for i in 0..self.len {
            let Some(&e) = self.entries.get(i) else { break };
            if e.live_to >= step {
                if let Some(slot) = self.entries.get_mut(kept) {
                    *slot = e;
                }
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Adds `t`, born at this step, after checking it shares no bytes with a live tensor
    /// other than `alias` (a RESHAPE's input, whose bytes its output takes over).
    // Out of line: two callers, and the parser's flash counts on the device.
    #[inline(never)]
    fn insert(&mut self, t: Live, alias: u16) -> Result<(), Error> {
        if let Some(e) = self
            .iter()
            .find(|e| e.index != alias && e.overlaps(t.start, t.end))
        {
            return Err(Error::PlanOverlap {
                first: e.index,
                second: t.index,
            });
        }
        let slot = self.entries.get_mut(self.len).ok_or(Error::BadLayout {
            what: why!("more arena tensors live at one step than the runtime checks (32)"),
        })?;
        *slot = t;
        self.len += 1;
        Ok(())
    }
}
