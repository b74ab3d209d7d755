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
        }
    }
}

impl core::error::Error for Error {}
