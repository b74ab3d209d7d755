use core::fmt;

/// Why a mote-core operation refused its input.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// Two buffers that must have the same length do not.
    LengthMismatch {
        /// The length the operation needed.
        expected: usize,
        /// The length it was given.
        actual: usize,
    },
    /// A shape's element count does not fit in `usize`.
    ShapeOverflow,
    /// Two tensors' shapes are inconsistent for an operator.
    ShapeMismatch {
        /// Which relation failed, e.g. `"conv2d output height"`.
        what: &'static str,
        /// The size the operator derived.
        expected: usize,
        /// The size it was given.
        actual: usize,
    },
    /// An operator parameter is out of its valid range (a zero stride, a depth multiplier
    /// that does not divide the channels, ...).
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
    },
    /// The bytes are not a mote model (wrong magic number).
    NotAModel,
    /// The model was written in a format version this runtime does not read.
    UnsupportedVersion {
        /// The blob's version.
        found: u16,
        /// The version this runtime reads.
        supported: u16,
    },
    /// The blob is shorter than its header says.
    Truncated {
        /// Bytes the header promises.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The blob's CRC-32 does not match its contents: it was corrupted.
    CrcMismatch {
        /// The CRC stored in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A section, tensor or parameter array lies outside the blob or is misaligned.
    BadLayout {
        /// What was being read.
        what: &'static str,
    },
    /// The blob's start is not 4-byte aligned, so weights cannot be read in place.
    MisalignedBlob,
    /// A tensor record is invalid.
    InvalidTensor {
        /// The tensor's index.
        index: u16,
        /// What is wrong with it.
        what: &'static str,
    },
    /// An operator is invalid or inconsistent with its tensors.
    InvalidOperator {
        /// The operator's index.
        index: u16,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The memory plan places two tensors that are live at the same time in overlapping bytes.
    PlanOverlap {
        /// One tensor.
        first: u16,
        /// The other.
        second: u16,
    },
    /// A caller-provided buffer is smaller than required.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        actual: usize,
    },
    /// An input or output index, or a tensor's type, does not match the request.
    WrongTensor {
        /// What was asked for.
        what: &'static str,
    },
    /// A loss or gradient is NaN or infinite; the training step was refused and the weights
    /// were left as they were.
    NonFinite {
        /// Which value.
        what: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthMismatch { expected, actual } => {
                write!(
                    f,
                    "buffer length mismatch: expected {expected}, got {actual}"
                )
            }
            Error::ShapeOverflow => f.write_str("tensor shape overflows the address space"),
            Error::ShapeMismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what}: expected {expected}, got {actual}"),
            Error::InvalidParameter { what } => write!(f, "invalid parameter: {what}"),
            Error::NotAModel => f.write_str("not a mote model (bad magic number)"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model format version {found} is not supported (this runtime reads {supported})"
            ),
            Error::Truncated { expected, actual } => {
                write!(
                    f,
                    "model truncated: header says {expected} bytes, got {actual}"
                )
            }
            Error::CrcMismatch { stored, computed } => write!(
                f,
                "model corrupted: CRC-32 {computed:#010x} does not match the stored {stored:#010x}"
            ),
            Error::BadLayout { what } => write!(f, "model layout invalid: {what}"),
            Error::MisalignedBlob => f.write_str("model bytes must start on a 4-byte boundary"),
            Error::InvalidTensor { index, what } => write!(f, "tensor {index}: {what}"),
            Error::InvalidOperator { index, what } => write!(f, "operator {index}: {what}"),
            Error::PlanOverlap { first, second } => write!(
                f,
                "memory plan overlaps tensors {first} and {second} while both are live"
            ),
            Error::BufferTooSmall { needed, actual } => {
                write!(f, "buffer too small: need {needed} bytes, got {actual}")
            }
            Error::WrongTensor { what } => write!(f, "wrong tensor: {what}"),
            Error::NonFinite { what } => {
                write!(f, "{what} is not finite; the weights were left unchanged")
            }
        }
    }
}

impl core::error::Error for Error {}
