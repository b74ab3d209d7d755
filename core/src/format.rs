//! The `.mote` blob's byte layout: one definition, read by [`Model::parse`](crate::Model::parse)
//! and written by mote-host's builder.
//!
//! ```text
//! header (64 B) | tensor records (44 B each) | operator records (80 B each)
//!               | model input/output tensor indices (u16) | constant data (4-aligned)
//! ```
//! Little-endian throughout. The CRC-32 ([`blob_crc`]) covers every byte of the blob but its own
//! field, so a corrupt magic, version or length is caught like any other. Constant data
//! (weights, biases, requantization constants) is read in place, so every array starts at an
//! offset aligned to its element size and the blob itself must sit on a 4-byte boundary.

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"MOTE";
/// The format version this runtime reads and mote-host writes.
pub const VERSION: u16 = 2;
/// Size of the header.
pub const HEADER_LEN: usize = 64;
/// Size of one tensor record.
pub const TENSOR_RECORD_LEN: usize = 44;
/// Size of one operator record.
pub const OP_RECORD_LEN: usize = 80;
/// Inputs an operator record can name.
pub const MAX_OP_INPUTS: usize = 4;
/// Tensor index meaning "no tensor" (an omitted optional input such as a bias).
pub const NO_TENSOR: u16 = u16::MAX;
/// Integer parameters an operator record carries.
pub const OP_PARAMS: usize = 14;
/// Byte offset of the CRC field; the CRC covers every byte of the blob but these four.
pub const CRC_OFFSET: usize = 12;

/// The CRC-32 a blob of exactly `blob_len` bytes carries: of `blob[..CRC_OFFSET]` and
/// `blob[CRC_OFFSET + 4..]`. The builder seals with it and the parser checks with it, so the
/// two cannot disagree on what is covered.
pub fn blob_crc(blob: &[u8]) -> u32 {
    let mut digest = crate::crc32::Crc32::new();
    digest.update(blob.get(..CRC_OFFSET).unwrap_or(blob));
    digest.update(blob.get(CRC_OFFSET + 4..).unwrap_or(&[]));
    digest.finish()
}

/// Reads a little-endian u16 at `at`, if in bounds.
pub fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Reads a little-endian u32 at `at`, if in bounds.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The blob header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Total blob length in bytes.
    pub blob_len: u32,
    /// [`blob_crc`] of `blob[..blob_len]`.
    pub crc32: u32,
    /// Bytes of arena the interpreter needs: activations and the kernels' scratch.
    pub arena_size: u32,
    /// Number of tensor records.
    pub tensor_count: u16,
    /// Number of operator records.
    pub op_count: u16,
    /// Number of model inputs.
    pub input_count: u16,
    /// Number of model outputs.
    pub output_count: u16,
    /// Offset of the tensor records.
    pub tensors_offset: u32,
    /// Offset of the operator records.
    pub ops_offset: u32,
    /// Offset of the input and output index lists (u16 each, inputs first).
    pub io_offset: u32,
    /// Offset of the constant data.
    pub data_offset: u32,
    /// Length of the constant data.
    pub data_len: u32,
    /// The most activation and kernel-scratch bytes live at once, as the planner computed it:
    /// no arena can be smaller, so `arena_size - arena_lower_bound` is what the placement costs.
    pub arena_lower_bound: u32,
}

impl Header {
    /// Decodes a header; `None` if `bytes` is shorter than one. Checks nothing else.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..HEADER_LEN)?;
        Some(Self {
            version: read_u16(h, 4)?,
            blob_len: read_u32(h, 8)?,
            crc32: read_u32(h, 12)?,
            arena_size: read_u32(h, 16)?,
            tensor_count: read_u16(h, 20)?,
            op_count: read_u16(h, 22)?,
            input_count: read_u16(h, 24)?,
            output_count: read_u16(h, 26)?,
            tensors_offset: read_u32(h, 28)?,
            ops_offset: read_u32(h, 32)?,
            io_offset: read_u32(h, 36)?,
            data_offset: read_u32(h, 40)?,
            data_len: read_u32(h, 44)?,
            arena_lower_bound: read_u32(h, 48)?,
        })
    }

    /// Encodes the header (magic included) into `out[..HEADER_LEN]`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        out[8..12].copy_from_slice(&self.blob_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc32.to_le_bytes());
        out[16..20].copy_from_slice(&self.arena_size.to_le_bytes());
        out[20..22].copy_from_slice(&self.tensor_count.to_le_bytes());
        out[22..24].copy_from_slice(&self.op_count.to_le_bytes());
        out[24..26].copy_from_slice(&self.input_count.to_le_bytes());
        out[26..28].copy_from_slice(&self.output_count.to_le_bytes());
        out[28..32].copy_from_slice(&self.tensors_offset.to_le_bytes());
        out[32..36].copy_from_slice(&self.ops_offset.to_le_bytes());
        out[36..40].copy_from_slice(&self.io_offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.data_offset.to_le_bytes());
        out[44..48].copy_from_slice(&self.data_len.to_le_bytes());
        out[48..52].copy_from_slice(&self.arena_lower_bound.to_le_bytes());
    }
}

/// Element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum DType {
    /// Signed 8-bit (quantized activations and weights).
    I8 = 0,
    /// Signed 32-bit (biases, shape tensors).
    I32 = 1,
    /// 32-bit float (model edges, trainable layers).
    F32 = 2,
}

impl DType {
    /// Decodes a dtype byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(DType::I8),
            1 => Some(DType::I32),
            2 => Some(DType::F32),
            _ => None,
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I32 | DType::F32 => 4,
        }
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Storage {
    /// In the caller's arena, at the planned offset.
    Arena = 0,
    /// In the blob's constant data (read in place).
    Constant = 1,
}

/// One tensor record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorRecord {
    /// Element type.
    pub dtype: DType,
    /// Arena or constant.
    pub storage: Storage,
    /// Per-channel quantization axis (0..=3 in NHWC order) when `channel_scales` is set.
    pub channel_axis: u8,
    /// Shape, NHWC (lower ranks padded with leading 1s).
    pub shape: [u32; 4],
    /// Arena offset (`Storage::Arena`) or blob offset (`Storage::Constant`).
    pub offset: u32,
    /// Size in bytes.
    pub byte_len: u32,
    /// Per-tensor scale (0.0 for unquantized tensors).
    pub scale: f32,
    /// Per-tensor zero point.
    pub zero_point: i32,
    /// Blob offset of `shape[channel_axis]` f32 per-channel scales, or 0 for none.
    pub channel_scales: u32,
    /// Arena tensors: the operator that writes it (0 for model inputs, live from the start).
    pub live_from: u16,
    /// Arena tensors: the last operator that reads it (`op_count` for model outputs).
    pub live_to: u16,
}

impl TensorRecord {
    /// Decodes a record; `Err` names the bad field.
    pub fn read(r: &[u8]) -> Result<Self, crate::Why> {
        let word = |at| read_u32(r, at).ok_or(why!("record truncated"));
        Ok(Self {
            dtype: DType::from_u8(*r.first().ok_or(why!("record truncated"))?)
                .ok_or(why!("unknown dtype"))?,
            storage: match r.get(1) {
                Some(0) => Storage::Arena,
                Some(1) => Storage::Constant,
                _ => return Err(why!("unknown storage kind")),
            },
            channel_axis: *r.get(2).ok_or(why!("record truncated"))?,
            shape: [word(4)?, word(8)?, word(12)?, word(16)?],
            offset: word(20)?,
            byte_len: word(24)?,
            scale: f32::from_bits(word(28)?),
            zero_point: word(32)? as i32,
            channel_scales: word(36)?,
            live_from: read_u16(r, 40).ok_or(why!("record truncated"))?,
            live_to: read_u16(r, 42).ok_or(why!("record truncated"))?,
        })
    }

    /// Encodes the record.
    pub fn write(&self, out: &mut [u8; TENSOR_RECORD_LEN]) {
        out.fill(0);
        out[0] = self.dtype as u8;
        out[1] = self.storage as u8;
        out[2] = self.channel_axis;
        for (i, d) in self.shape.iter().enumerate() {
            out[4 + 4 * i..8 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        out[20..24].copy_from_slice(&self.offset.to_le_bytes());
        out[24..28].copy_from_slice(&self.byte_len.to_le_bytes());
        out[28..32].copy_from_slice(&self.scale.to_bits().to_le_bytes());
        out[32..36].copy_from_slice(&self.zero_point.to_le_bytes());
        out[36..40].copy_from_slice(&self.channel_scales.to_le_bytes());
        out[40..42].copy_from_slice(&self.live_from.to_le_bytes());
        out[42..44].copy_from_slice(&self.live_to.to_le_bytes());
    }
}

/// Operator codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum OpCode {
    /// 2-D convolution (incl. 1x1 pointwise).
    Conv2d = 1,
    /// Depthwise 2-D convolution.
    DepthwiseConv2d = 2,
    /// Fully connected (dense).
    FullyConnected = 3,
    /// Average pooling (incl. global).
    AveragePool2d = 4,
    /// Max pooling.
    MaxPool2d = 5,
    /// Element-wise addition.
    Add = 6,
    /// Softmax over the last dimension.
    Softmax = 7,
    /// Reshape: the output aliases the input's bytes.
    Reshape = 8,
    /// f32 -> int8 at the model's input.
    Quantize = 9,
    /// int8 -> f32 at the model's output.
    Dequantize = 10,
    /// Mean over height and width (global average pooling as converters write it).
    Mean = 11,
}

/// `OpCode::name` and, in a `defmt` build, `OpCode::interned_name`, from one list.
macro_rules! op_names {
    ($($op:ident => $name:literal,)*) => {
        /// The operator's name as TFLite spells it.
        pub fn name(self) -> &'static str {
            match self {
                $(OpCode::$op => $name,)*
            }
        }

        /// [`Self::name`] interned: a device log sends its index, and the words stay out of
        /// flash.
        #[cfg(feature = "defmt")]
        pub fn interned_name(self) -> defmt::Str {
            match self {
                $(OpCode::$op => defmt::intern!($name),)*
            }
        }
    };
}

impl OpCode {
    /// Decodes an opcode byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        use OpCode::*;
        Some(match v {
            1 => Conv2d,
            2 => DepthwiseConv2d,
            3 => FullyConnected,
            4 => AveragePool2d,
            5 => MaxPool2d,
            6 => Add,
            7 => Softmax,
            8 => Reshape,
            9 => Quantize,
            10 => Dequantize,
            11 => Mean,
            _ => return None,
        })
    }

    /// mote-core's cargo feature that builds this operator's kernel (`None`: RESHAPE, which
    /// has none); firmware links only the features its model needs.
    pub fn feature(self) -> Option<&'static str> {
        use OpCode::*;
        Some(match self {
            Conv2d => "op-conv2d",
            DepthwiseConv2d => "op-depthwise",
            FullyConnected => "op-fully-connected",
            AveragePool2d => "op-avg-pool",
            MaxPool2d => "op-max-pool",
            Add => "op-add",
            Softmax => "op-softmax",
            Mean => "op-mean",
            Quantize => "op-quantize",
            Dequantize => "op-dequantize",
            Reshape => return None,
        })
    }

    /// Whether this build of mote-core has the operator's kernel (see [`OpCode::feature`]).
    pub fn is_built(self) -> bool {
        use OpCode::*;
        match self {
            Conv2d => cfg!(feature = "op-conv2d"),
            DepthwiseConv2d => cfg!(feature = "op-depthwise"),
            FullyConnected => cfg!(feature = "op-fully-connected"),
            AveragePool2d => cfg!(feature = "op-avg-pool"),
            MaxPool2d => cfg!(feature = "op-max-pool"),
            Add => cfg!(feature = "op-add"),
            Softmax => cfg!(feature = "op-softmax"),
            Mean => cfg!(feature = "op-mean"),
            Quantize => cfg!(feature = "op-quantize"),
            Dequantize => cfg!(feature = "op-dequantize"),
            Reshape => true,
        }
    }

    op_names! {
        Conv2d => "CONV_2D",
        DepthwiseConv2d => "DEPTHWISE_CONV_2D",
        FullyConnected => "FULLY_CONNECTED",
        AveragePool2d => "AVERAGE_POOL_2D",
        MaxPool2d => "MAX_POOL_2D",
        Add => "ADD",
        Softmax => "SOFTMAX",
        Reshape => "RESHAPE",
        Quantize => "QUANTIZE",
        Dequantize => "DEQUANTIZE",
        Mean => "MEAN",
    }
}

/// Operator flag: the layer may be fine-tuned on the device.
pub const OP_FLAG_TRAINABLE: u8 = 1;

/// One operator record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRecord {
    /// What the operator computes.
    pub opcode: OpCode,
    /// `OP_FLAG_*` bits.
    pub flags: u8,
    /// Input tensor indices; unused slots and omitted optional inputs are [`NO_TENSOR`].
    pub inputs: [u16; MAX_OP_INPUTS],
    /// Output tensor index.
    pub output: u16,
    /// Blob offset of the requantization constants (`QuantizedMultiplier`s), or 0.
    pub requant_offset: u32,
    /// Number of requantization constants.
    pub requant_count: u32,
    /// Operator-specific integer parameters (see the interpreter for each layout).
    pub params: [i32; OP_PARAMS],
}

impl OpRecord {
    /// Decodes a record; `Err` names the bad field.
    pub fn read(r: &[u8]) -> Result<Self, crate::Why> {
        let half = |at| read_u16(r, at).ok_or(why!("record truncated"));
        let word = |at| read_u32(r, at).ok_or(why!("record truncated"));
        let opcode = OpCode::from_u8(*r.first().ok_or(why!("record truncated"))?)
            .ok_or(why!("unknown opcode"))?;
        let mut params = [0i32; OP_PARAMS];
        for (i, p) in params.iter_mut().enumerate() {
            *p = word(24 + 4 * i)? as i32;
        }
        Ok(Self {
            opcode,
            flags: *r.get(1).ok_or(why!("record truncated"))?,
            inputs: [half(4)?, half(6)?, half(8)?, half(10)?],
            output: half(12)?,
            requant_offset: word(16)?,
            requant_count: word(20)?,
            params,
        })
    }

    /// Encodes the record.
    pub fn write(&self, out: &mut [u8; OP_RECORD_LEN]) {
        out.fill(0);
        out[0] = self.opcode as u8;
        out[1] = self.flags;
        for (i, t) in self.inputs.iter().enumerate() {
            out[4 + 2 * i..6 + 2 * i].copy_from_slice(&t.to_le_bytes());
        }
        out[12..14].copy_from_slice(&self.output.to_le_bytes());
        out[14..16].copy_from_slice(&NO_TENSOR.to_le_bytes());
        out[16..20].copy_from_slice(&self.requant_offset.to_le_bytes());
        out[20..24].copy_from_slice(&self.requant_count.to_le_bytes());
        for (i, p) in self.params.iter().enumerate() {
            out[24 + 4 * i..28 + 4 * i].copy_from_slice(&p.to_le_bytes());
        }
    }
}

/// Indices into [`OpRecord::params`] for the layers with a window and an int8 stage.
pub mod param {
    /// Vertical stride.
    pub const STRIDE_H: usize = 0;
    /// Horizontal stride.
    pub const STRIDE_W: usize = 1;
    /// Vertical dilation.
    pub const DILATION_H: usize = 2;
    /// Horizontal dilation.
    pub const DILATION_W: usize = 3;
    /// Padding rows above.
    pub const PAD_TOP: usize = 4;
    /// Padding columns left.
    pub const PAD_LEFT: usize = 5;
    /// Minus the input zero point.
    pub const INPUT_OFFSET: usize = 6;
    /// The output zero point.
    pub const OUTPUT_OFFSET: usize = 7;
    /// Activation clamp low.
    pub const ACT_MIN: usize = 8;
    /// Activation clamp high.
    pub const ACT_MAX: usize = 9;
    /// Depthwise: channel multiplier. Pooling: filter height.
    pub const DEPTH_MULTIPLIER: usize = 10;
    /// Pooling: filter height.
    pub const FILTER_H: usize = 10;
    /// Pooling: filter width.
    pub const FILTER_W: usize = 11;
    /// ADD: minus input 2's zero point (input 1's is INPUT_OFFSET).
    pub const INPUT2_OFFSET: usize = 0;
    /// ADD: left shift applied to both inputs.
    pub const LEFT_SHIFT: usize = 1;
    /// ADD: input 1, input 2 and output multipliers are requant entries 0, 1 and 2.
    pub const ADD_REQUANT_COUNT: usize = 3;
    /// SOFTMAX: input multiplier.
    pub const SOFTMAX_MULTIPLIER: usize = 0;
    /// SOFTMAX: input left shift.
    pub const SOFTMAX_LEFT_SHIFT: usize = 1;
    /// SOFTMAX: smallest difference from the row max that still contributes.
    pub const SOFTMAX_DIFF_MIN: usize = 2;
    /// MEAN: which of TFLite-Micro's algorithms (`ops::mean::MeanMode`).
    pub const MEAN_MODE: usize = 0;
    /// Any operator: arena offset of the scratch its kernel uses while it runs (word-aligned;
    /// planned like a tensor live during this operator only).
    pub const SCRATCH_OFFSET: usize = 12;
    /// Any operator: bytes of that scratch (0: none; the kernel then runs its reference path).
    pub const SCRATCH_LEN: usize = 13;
}
