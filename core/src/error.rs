use core::fmt;

/// What is wrong, in words: the reason an [`Error`] carries. Made from a string literal with
/// [`why!`](crate::why). Built with the `defmt` feature, the words are interned in the
/// ELF's defmt table (the host prints them from there) and a `Why` is their 16-bit index:
/// no error text takes flash on the device.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Why(Words);

#[cfg(not(feature = "defmt"))]
type Words = &'static str;
#[cfg(feature = "defmt")]
type Words = u16;

// A defmt string is one 16-bit index; checked here so the conversions below stay exact.
#[cfg(feature = "defmt")]
const _: () = assert!(core::mem::size_of::<defmt::Str>() == core::mem::size_of::<u16>());

impl Why {
    /// The reason `text` (what [`why!`] makes).
    #[cfg(not(feature = "defmt"))]
    #[doc(hidden)]
    pub const fn new(text: &'static str) -> Self {
        Self(text)
    }

    /// The reason interned as `text` (what [`why!`] makes).
    #[cfg(feature = "defmt")]
    #[doc(hidden)]
    pub fn interned(text: defmt::Str) -> Self {
        // SAFETY: `defmt::Str` is a plain 16-bit index (its size is asserted above, so its one
        // field fills it and every bit pattern is valid); copied out as the `u16` it is.
        Self(unsafe { core::mem::transmute::<defmt::Str, u16>(text) })
    }

    /// The words, in builds that keep them; `None` with `defmt` (they are in the ELF).
    pub fn text(self) -> Option<&'static str> {
        #[cfg(not(feature = "defmt"))]
        return Some(self.0);
        #[cfg(feature = "defmt")]
        None
    }
}

impl fmt::Debug for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => fmt::Debug::fmt(text, f),
            None => write!(f, "Why(#{})", self.0),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => f.write_str(text),
            None => write!(f, "(defmt string #{})", self.0),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Why {
    fn format(&self, f: defmt::Formatter) {
        // SAFETY: the inverse of `Why::interned`: every `u16` is a valid `defmt::Str`, and this
        // one came from `defmt::intern!`.
        let text = unsafe { core::mem::transmute::<u16, defmt::Str>(self.0) };
        defmt::write!(f, "{=istr}", text);
    }
}

/// A [`Why`] from a string literal: the words themselves, or in a `defmt` build their interned
/// index (the calling crate then needs `defmt` as a dependency, as any defmt user has).
#[cfg(not(feature = "defmt"))]
#[macro_export]
macro_rules! why {
    ($text:literal) => {
        $crate::Why::new($text)
    };
}

/// A [`Why`] from a string literal: the words themselves, or in a `defmt` build their interned
/// index (the calling crate then needs `defmt` as a dependency, as any defmt user has).
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! why {
    ($text:literal) => {
        $crate::Why::interned(defmt::intern!($text))
    };
}

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
        what: Why,
        /// The size the operator derived.
        expected: usize,
        /// The size it was given.
        actual: usize,
    },
    /// An operator parameter is out of its valid range (a zero stride, a depth multiplier
    /// that does not divide the channels, ...).
    InvalidParameter {
        /// Which parameter.
        what: Why,
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
        what: Why,
    },
    /// The blob's start is not 4-byte aligned, so weights cannot be read in place.
    MisalignedBlob,
    /// A tensor record is invalid.
    InvalidTensor {
        /// The tensor's index.
        index: u16,
        /// What is wrong with it.
        what: Why,
    },
    /// An operator is invalid or inconsistent with its tensors.
    InvalidOperator {
        /// The operator's index.
        index: u16,
        /// What is wrong with it.
        what: Why,
    },
    /// An operator's kernel is not in this build: its `op-*` cargo feature is off.
    OperatorNotBuilt {
        /// The operator's index.
        index: u16,
        /// Its kind.
        op: crate::format::OpCode,
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
        what: Why,
    },
    /// A loss or gradient is NaN or infinite; the training step was refused and the weights
    /// were left as they were.
    NonFinite {
        /// Which value.
        what: Why,
    },
}

impl Error {
    /// [`Error::InvalidOperator`], built out of line: dozens of refusal sites share one copy,
    /// and none is taken on a valid model.
    #[cold]
    #[inline(never)]
    pub(crate) fn invalid_operator(index: u16, what: Why) -> Self {
        Error::InvalidOperator { index, what }
    }

    /// [`Error::InvalidTensor`], built out of line as [`Error::invalid_operator`].
    #[cold]
    #[inline(never)]
    pub(crate) fn invalid_tensor(index: u16, what: Why) -> Self {
        Error::InvalidTensor { index, what }
    }
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
            Error::OperatorNotBuilt { index, op } => write!(
                f,
                "operator {index} ({}) is not built in: enable mote-core's cargo feature {}",
                op.name(),
                op.feature().unwrap_or("all-ops")
            ),
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
