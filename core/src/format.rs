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
    /// Unsigned 8-bit (quantized model edges: camera pixels, older converters).
    U8 = 3,
    /// Signed 16-bit (quantized state and audio edges).
    I16 = 4,
}

impl DType {
    /// Decodes a dtype byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(DType::I8),
            1 => Some(DType::I32),
            2 => Some(DType::F32),
            3 => Some(DType::U8),
            4 => Some(DType::I16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I16 => 2,
            DType::I32 | DType::F32 => 4,
        }
    }

    /// Its name in messages: `int8`, `uint8`, `int16`, `int32`, `float32`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F32 => "float32",
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
    /// A variable (state) tensor: its bytes persist from one invoke to the next, live for the
    /// whole model, and [`Interpreter::reset_state`](crate::Interpreter::reset_state) sets them
    /// to the zero point.
    pub variable: bool,
}

/// Tensor record flag: a variable (state) tensor.
const TENSOR_FLAG_VARIABLE: u8 = 1;

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
            variable: match r.get(3) {
                Some(0) => false,
                Some(&TENSOR_FLAG_VARIABLE) => true,
                _ => return Err(why!("unknown tensor flags")),
            },
        })
    }

    /// Encodes the record.
    pub fn write(&self, out: &mut [u8; TENSOR_RECORD_LEN]) {
        out.fill(0);
        out[0] = self.dtype as u8;
        out[1] = self.storage as u8;
        out[2] = self.channel_axis;
        out[3] = if self.variable {
            TENSOR_FLAG_VARIABLE
        } else {
            0
        };
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

pub use crate::ops::OpCode;

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
    /// The operator's parameters (its `record_params!` struct, see [`crate::ops::record`])
    /// and its planned scratch.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips() {
        let header = Header {
            version: VERSION,
            blob_len: 0x0102_0304,
            crc32: 0xDEAD_BEEF,
            arena_size: 77_777,
            tensor_count: 300,
            op_count: 120,
            input_count: 2,
            output_count: 3,
            tensors_offset: 64,
            ops_offset: 13_264,
            io_offset: 22_864,
            data_offset: 22_880,
            data_len: 1 << 20,
            arena_lower_bound: 70_000,
        };
        let mut bytes = [0u8; HEADER_LEN];
        header.write(&mut bytes);
        assert_eq!(&bytes[..4], &MAGIC);
        assert_eq!(Header::read(&bytes), Some(header));
        assert_eq!(Header::read(&bytes[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn a_tensor_record_round_trips() {
        for (dtype, storage) in [
            (DType::I8, Storage::Arena),
            (DType::I32, Storage::Constant),
            (DType::F32, Storage::Arena),
        ] {
            let record = TensorRecord {
                dtype,
                storage,
                channel_axis: 3,
                shape: [1, 49, 10, 64],
                offset: 4096,
                byte_len: 31_360,
                scale: 0.0123,
                zero_point: -17,
                channel_scales: 1234 * 4,
                live_from: 5,
                live_to: 9,
                variable: storage == Storage::Arena,
            };
            let mut bytes = [0u8; TENSOR_RECORD_LEN];
            record.write(&mut bytes);
            assert_eq!(TensorRecord::read(&bytes), Ok(record));
        }
        let mut bytes = [0u8; TENSOR_RECORD_LEN];
        bytes[0] = 9;
        assert!(TensorRecord::read(&bytes).is_err());
        assert!(TensorRecord::read(&bytes[..10]).is_err());
    }

    #[test]
    fn an_operator_record_round_trips_for_every_opcode() {
        for (k, &opcode) in OpCode::ALL.iter().enumerate() {
            let mut params = [0i32; OP_PARAMS];
            for (i, p) in params.iter_mut().enumerate() {
                *p = (i as i32 - 5) * 1_000_003 + k as i32;
            }
            let record = OpRecord {
                opcode,
                flags: OP_FLAG_TRAINABLE,
                inputs: [3, NO_TENSOR, 7, NO_TENSOR],
                output: 11,
                requant_offset: 4096,
                requant_count: 64,
                params,
            };
            let mut bytes = [0u8; OP_RECORD_LEN];
            record.write(&mut bytes);
            assert_eq!(OpRecord::read(&bytes), Ok(record));
            assert_eq!(OpCode::from_u8(opcode as u8), Some(opcode));
        }
        let mut bytes = [0u8; OP_RECORD_LEN];
        bytes[0] = 0;
        assert!(OpRecord::read(&bytes).is_err());
    }
}
