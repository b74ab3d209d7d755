//! Operators: one module each, owning everything about it.
//!
//! An operator's module holds its record parameters (a `record_params!` struct: the one
//! encoding the host's builder writes and the device's decoder reads), its decoded form (a
//! struct implementing `operator::Operator`: the checks that make a parsed model
//! safe to run, its scratch sizing, the optional kernel paths it takes, and its run), its int8
//! kernel (bit-exact with TFLite-Micro's reference kernels) and, where training needs one, its
//! f32 kernel. Kernels check that every buffer has the length its shape implies and return an
//! [`Error`] otherwise; they never index out of bounds. Layout is NHWC throughout.
//!
//! # Adding an operator
//! 1. Write `ops/<name>.rs`: the parameters with `record_params!`, the decoded struct and its
//!    `Operator` impl: `lower` (from TFLite's tensors and options to the record, as TFLite's
//!    Prepare computes it; the host's builder calls it), `decode` (checks every value its
//!    kernel relies on, so that a model that parses cannot fail at invoke), `io` and `run`,
//!    and where they apply its scratch, kernel paths and MACs. See [`relu`] for a small one.
//! 2. Add one line to the list below (a new opcode byte, the TFLite name, its cargo feature),
//!    and the feature to `core/Cargo.toml` (a test checks the two agree).
//! 3. Golden cases from `tools/goldens` (a test requires cases for every operator listed).

pub mod add;
mod binary_fast;
pub mod broadcast;
pub(crate) mod bytes;
pub mod concatenation;
pub mod conv2d;
pub(crate) mod conv_gemm;
mod depthwise_column;
pub mod depthwise_conv2d;
pub(crate) mod depthwise_fast;
mod depthwise_plane;
mod fast_requant;
pub(crate) mod fc_fast;
pub mod fully_connected;
pub mod lower;
pub mod lstm;
pub mod lut;
pub mod maximum_minimum;
pub mod mul;
pub mod operator;
mod output_stage;
pub mod pad;
pub mod pooling;
pub mod prelu;
pub mod quantize;
pub mod record;
pub mod reduce;
pub mod relu;
pub mod reshape;
pub mod resize;
mod simd;
pub mod softmax;
pub mod space_batch;
pub mod space_depth;
pub mod squared_difference;
pub mod strided_slice;
pub mod sub;
pub mod sum_form;
pub mod svdf;
pub mod transpose;
pub mod transpose_conv;

// Window geometry lives in its own module; these paths predate it.
pub use crate::geometry::{Padding, Window};
use crate::model::{Decoder, Model, Scratch};
use lower::{LowerError, Lowering};
pub use operator::KernelPath;
use operator::{operators, run_layer, Io, KernelPaths, Operator};

operators! { 'a;
    /// 2-D convolution (incl. 1x1 pointwise).
    1 => Conv2d(conv2d::Conv2d<'a>), "CONV_2D", feature "op-conv2d";
    /// Depthwise 2-D convolution.
    2 => DepthwiseConv2d(depthwise_conv2d::DepthwiseConv2d<'a>), "DEPTHWISE_CONV_2D",
        feature "op-depthwise";
    /// Fully connected (dense).
    3 => FullyConnected(fully_connected::FullyConnected<'a>), "FULLY_CONNECTED",
        feature "op-fully-connected";
    /// Average pooling (incl. global).
    4 => AveragePool2d(pooling::Pool2d), "AVERAGE_POOL_2D", feature "op-avg-pool";
    /// Max pooling.
    5 => MaxPool2d(pooling::Pool2d), "MAX_POOL_2D", feature "op-max-pool";
    /// Element-wise addition.
    6 => Add(add::Add<'a>), "ADD", feature "op-add";
    /// Softmax over the last dimension.
    7 => Softmax(softmax::Softmax), "SOFTMAX", feature "op-softmax";
    /// Reshape: the output aliases the input's bytes.
    8 => Reshape(reshape::Reshape), "RESHAPE";
    /// f32 -> int8 at the model's input; int8 <-> uint8 and int8 -> int8 requantization.
    9 => Quantize(quantize::Quantize<'a>), "QUANTIZE", feature "op-quantize";
    /// int8 or uint8 -> f32 at the model's output.
    10 => Dequantize(quantize::Dequantize), "DEQUANTIZE", feature "op-dequantize";
    /// Mean over any axes (global average pooling as converters write it, and more).
    11 => Mean(reduce::Reduce), "MEAN", feature "op-mean";
    /// max(x, 0), requantized: a ReLU no earlier operator absorbed.
    12 => Relu(relu::Relu), "RELU", feature "op-relu";
    /// min(max(x, 0), 6), requantized.
    13 => Relu6(relu::Relu), "RELU6", feature "op-relu";
    /// Constant padding (PAD, and PADV2 with a constant value).
    14 => Pad(pad::Pad), "PAD", feature "op-pad";
    /// Axis permutation of rank <= 4.
    15 => Transpose(transpose::Transpose), "TRANSPOSE", feature "op-transpose";
    /// Concatenation of up to 4 inputs along one axis (PACK lowers to it too).
    16 => Concatenation(concatenation::Concatenation), "CONCATENATION",
        feature "op-concatenation";
    /// A strided box of the input (also what SPLIT, SPLIT_V and UNPACK become).
    22 => StridedSlice(strided_slice::StridedSlice), "STRIDED_SLICE",
        feature "op-strided-slice";
    /// A box of the input: STRIDED_SLICE with unit strides.
    23 => Slice(strided_slice::StridedSlice), "SLICE", feature "op-strided-slice";
    /// Spatial blocks into the batch, padded (what the `dilated_conv` pass cannot fold).
    24 => SpaceToBatchNd(space_batch::SpaceBatch), "SPACE_TO_BATCH_ND",
        feature "op-space-batch";
    /// The batch's blocks back into space, cropped.
    25 => BatchToSpaceNd(space_batch::SpaceBatch), "BATCH_TO_SPACE_ND",
        feature "op-space-batch";
    /// Element-wise subtraction.
    30 => Sub(sub::Sub<'a>), "SUB", feature "op-sub";
    /// Element-wise multiplication.
    31 => Mul(mul::Mul<'a>), "MUL", feature "op-mul";
    /// (x - y)^2, element-wise.
    32 => SquaredDifference(squared_difference::SquaredDifference<'a>), "SQUARED_DIFFERENCE",
        feature "op-squared-difference";
    /// Element-wise maximum.
    33 => Maximum(maximum_minimum::MaximumMinimum<'a>), "MAXIMUM", feature "op-maximum-minimum";
    /// Element-wise minimum.
    34 => Minimum(maximum_minimum::MaximumMinimum<'a>), "MINIMUM", feature "op-maximum-minimum";
    /// 1 / (1 + exp(-x)), int8 by a 256-entry table.
    38 => Logistic(lut::Lut<'a>), "LOGISTIC", feature "op-logistic";
    /// tanh(x), int8 by a 256-entry table.
    39 => Tanh(lut::Lut<'a>), "TANH", feature "op-tanh";
    /// x * relu6(x + 3) / 6, int8 by a 256-entry table.
    40 => HardSwish(lut::Lut<'a>), "HARD_SWISH", feature "op-hard-swish";
    /// x, or alpha * x below zero, int8 by a 256-entry table.
    41 => LeakyRelu(lut::Lut<'a>), "LEAKY_RELU", feature "op-leaky-relu";
    /// x, or alpha * x below zero, with a constant alpha broadcast over the input.
    42 => Prelu(prelu::Prelu<'a>), "PRELU", feature "op-prelu";
    /// Maximum over any axes.
    43 => ReduceMax(reduce::Reduce), "REDUCE_MAX", feature "op-reduce-max";
    /// Sum over any axes, requantized.
    44 => Sum(reduce::Reduce), "SUM", feature "op-sum";
    /// Nearest-neighbour resize of height and width.
    48 => ResizeNearestNeighbor(resize::Resize), "RESIZE_NEAREST_NEIGHBOR",
        feature "op-resize-nearest";
    /// Bilinear resize of height and width.
    49 => ResizeBilinear(resize::Resize), "RESIZE_BILINEAR", feature "op-resize-bilinear";
    /// Transposed 2-D convolution (Keras Conv2DTranspose).
    50 => TransposeConv(transpose_conv::TransposeConv<'a>), "TRANSPOSE_CONV",
        feature "op-transpose-conv";
    /// Blocks of channels to blocks of pixels.
    51 => DepthToSpace(space_depth::SpaceDepth), "DEPTH_TO_SPACE", feature "op-depth-to-space";
    /// Blocks of pixels to blocks of channels.
    52 => SpaceToDepth(space_depth::SpaceDepth), "SPACE_TO_DEPTH", feature "op-space-to-depth";
    /// A streaming filter over time with int16 or int8 state (keyword spotting).
    60 => Svdf(svdf::Svdf<'a>), "SVDF", feature "op-svdf";
    /// LSTM over a sequence, int8 with int16 cell state kept across invokes.
    61 => UnidirectionalSequenceLstm(lstm::Lstm<'a>), "UNIDIRECTIONAL_SEQUENCE_LSTM",
        feature "op-lstm";
}

use crate::quant::QuantizedMultiplier;
use crate::Error;

/// A tensor shape in NHWC order. Lower-rank tensors put their dimensions last
/// (a `[batch, features]` tensor is `n = batch, h = 1, w = 1, c = features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape4 {
    /// Batch.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape4 {
    /// A shape from its four dimensions.
    pub const fn new(n: usize, h: usize, w: usize, c: usize) -> Self {
        Self { n, h, w, c }
    }

    /// Number of elements, or `None` if it overflows `usize`.
    pub fn elements(&self) -> Option<usize> {
        self.n
            .checked_mul(self.h)?
            .checked_mul(self.w)?
            .checked_mul(self.c)
    }

    /// Checks that a buffer of `len` elements holds exactly this shape.
    pub fn check_len(&self, len: usize) -> Result<(), Error> {
        let expected = self.elements().ok_or(Error::ShapeOverflow)?;
        if expected == len {
            Ok(())
        } else {
            Err(Error::LengthMismatch {
                expected,
                actual: len,
            })
        }
    }
}

/// A read-only tensor: its elements and its shape.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a, T> {
    /// Elements in NHWC order.
    pub data: &'a [T],
    /// Shape of `data`.
    pub shape: Shape4,
}

/// A writable tensor: its elements and its shape.
#[derive(Debug)]
pub struct TensorMut<'a, T> {
    /// Elements in NHWC order.
    pub data: &'a mut [T],
    /// Shape of `data`.
    pub shape: Shape4,
}

/// The integer side of an int8 layer: zero points and the fused activation's clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Int8Stage {
    /// Added to every input value: minus the input's zero point.
    pub input_offset: i32,
    /// Added to every requantized output: the output's zero point.
    pub output_offset: i32,
    /// Lowest output value (the fused activation's floor, in the output's quantized units).
    pub act_min: i8,
    /// Highest output value.
    pub act_max: i8,
}

/// Fused activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
}

impl Activation {
    /// The clamp range in quantized int8 units for an output with this scale and zero point,
    /// as TFLite's `CalculateActivationRangeQuantized` computes it.
    pub fn int8_range(self, scale: f32, zero_point: i32) -> (i8, i8) {
        let quantize = |x: f32| zero_point.saturating_add(round_half_away_f32(x / scale));
        let (lo, hi) = match self {
            Activation::None => (i32::from(i8::MIN), i32::from(i8::MAX)),
            Activation::Relu => (quantize(0.0).max(-128), 127),
            Activation::Relu6 => (quantize(0.0).max(-128), quantize(6.0).min(127)),
        };
        (lo.clamp(-128, 127) as i8, hi.clamp(-128, 127) as i8)
    }

    /// The clamp range for an f32 output.
    pub fn f32_range(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }
}

/// `round` as C does it (half away from zero), saturating to i32.
pub(crate) fn round_half_away_f32(x: f32) -> i32 {
    if x.is_nan() {
        return 0;
    }
    let t = x as i32; // truncates toward zero, saturates
    let diff = x - t as f32;
    if diff >= 0.5 {
        t.saturating_add(1)
    } else if diff <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// Requantization constants for an int8 layer: one per output channel, or one for all.
pub type Requant<'a> = &'a [QuantizedMultiplier];

/// `Err` unless this build has `op`'s kernel (its cargo feature, see [`OpCode::feature`]):
/// each kernel starts with it, so with the feature off the compiler drops the kernel's body.
#[inline(always)]
pub(crate) fn built(op: OpCode) -> Result<(), Error> {
    match op.is_built() {
        true => Ok(()),
        false => Err(Error::InvalidParameter {
            what: why!("operator not built in (its mote-core op-* feature is off)"),
        }),
    }
}

/// Whether this build has the reference kernels (feature `reference-kernels`).
pub const fn reference_kernels_built() -> bool {
    cfg!(feature = "reference-kernels")
}

/// `Err` unless this build has the reference kernels a layer falls back to (feature
/// `reference-kernels`; see `Model::needs_reference_kernels`).
#[inline(always)]
pub(crate) fn reference_built() -> Result<(), Error> {
    match reference_kernels_built() {
        true => Ok(()),
        false => Err(Error::InvalidParameter {
            what: why!(
                "the layer needs a reference kernel (too little scratch, or a shape the fast \
                 kernels do not take) and feature reference-kernels is off"
            ),
        }),
    }
}
