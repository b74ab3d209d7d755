//! Lowering an operator from TFLite's vocabulary (its builtin name, input tensors with float
//! quantization, options) to its `.mote` record: what TFLite-Micro's Prepare computes, done once
//! on the host. Each operator's module writes its own (`Operator::lower`); mote-host's builder
//! supplies the graph ([`LowerGraph`]) and writes what comes out.

use super::{Activation, Int8Stage, OpCode, Padding, Shape4, Window};
use crate::format::{DType, MAX_OP_INPUTS, OP_PARAMS};
use crate::ops::record::RecordParams;
use crate::quant::QuantizedMultiplier;
use core::fmt;

/// The options of TFLite's builtin operators that mote reads, by TFLite's field names.
/// Absent fields keep TFLite's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)] // TFLite's option names
pub struct TfOptions {
    pub padding: Padding,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub activation: Activation,
    pub beta: f32,
    pub keep_dims: bool,
    // STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, UNPACK, PACK, CONCATENATION, GATHER (the last
    // ones only as the constant folding and split passes read them).
    pub begin_mask: i32,
    pub end_mask: i32,
    pub ellipsis_mask: i32,
    pub new_axis_mask: i32,
    pub shrink_axis_mask: i32,
    pub offset: bool,
    pub num_splits: usize,
    /// UNPACK's `num`, PACK's `values_count`.
    pub num: usize,
    /// UNPACK's, PACK's, CONCATENATION's and GATHER's `axis`.
    pub axis: i32,
    pub batch_dims: i32,
    // LEAKY_RELU.
    pub alpha: f32,
    // RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR; DEPTH_TO_SPACE, SPACE_TO_DEPTH.
    pub align_corners: bool,
    pub half_pixel_centers: bool,
    pub block_size: usize,
    // UNIDIRECTIONAL_SEQUENCE_LSTM (its cell activation is always TANH).
    pub time_major: bool,
    pub cell_clip: f32,
    pub proj_clip: f32,
    // SVDF.
    pub rank: usize,
}

impl Default for TfOptions {
    fn default() -> Self {
        Self {
            padding: Padding::Valid,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            filter_h: 1,
            filter_w: 1,
            activation: Activation::None,
            beta: 1.0,
            keep_dims: false,
            begin_mask: 0,
            end_mask: 0,
            ellipsis_mask: 0,
            new_axis_mask: 0,
            shrink_axis_mask: 0,
            offset: false,
            num_splits: 0,
            num: 0,
            axis: 0,
            batch_dims: 0,
            alpha: 0.0,
            align_corners: false,
            half_pixel_centers: false,
            block_size: 0,
            time_major: false,
            cell_clip: 0.0,
            proj_clip: 0.0,
            rank: 0,
        }
    }
}

impl TfOptions {
    /// A convolution's options.
    pub fn conv(
        padding: Padding,
        stride: (usize, usize),
        dilation: (usize, usize),
        activation: Activation,
    ) -> Self {
        Self {
            padding,
            stride_h: stride.0,
            stride_w: stride.1,
            dilation_h: dilation.0,
            dilation_w: dilation.1,
            activation,
            ..Self::default()
        }
    }

    /// A pooling layer's options.
    pub fn pool(
        padding: Padding,
        filter: (usize, usize),
        stride: (usize, usize),
        activation: Activation,
    ) -> Self {
        Self {
            padding,
            filter_h: filter.0,
            filter_w: filter.1,
            stride_h: stride.0,
            stride_w: stride.1,
            activation,
            ..Self::default()
        }
    }

    /// Only a fused activation.
    pub fn fused(activation: Activation) -> Self {
        Self {
            activation,
            ..Self::default()
        }
    }
}

/// A tensor as a lowering sees it.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'g> {
    /// Its dimensions as declared (rank 1 to 4).
    pub dims: &'g [usize],
    /// The same, NHWC with leading ones.
    pub shape: Shape4,
    /// Element type.
    pub dtype: DType,
    /// Quantization scales: none, one, or one per channel.
    pub scales: &'g [f32],
    /// Zero points, one per scale.
    pub zero_points: &'g [i32],
    /// The elements of an int32 constant (shapes, axes).
    pub i32_data: Option<&'g [i32]>,
    /// The elements of an int8 constant (PADV2's value).
    pub i8_data: Option<&'g [i8]>,
    /// The elements of an int16 constant (SVDF's time weights).
    pub i16_data: Option<&'g [i16]>,
    /// Whether it is a constant.
    pub constant: bool,
    /// Whether it is a variable (state) tensor.
    pub variable: bool,
}

/// The graph around the operator being lowered.
pub trait LowerGraph {
    /// Tensor `id`, if it exists.
    fn tensor(&self, id: usize) -> Option<TensorView<'_>>;
}

/// Why an operator cannot be lowered.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LowerError {
    /// Its input `slot` is missing or names no tensor.
    MissingInput {
        /// Input slot.
        slot: usize,
    },
    /// The output (or another tensor the operator names) does not exist.
    NoTensor {
        /// The tensor id.
        tensor: usize,
    },
    /// A tensor has the wrong element type for its role.
    WrongType {
        /// The tensor.
        tensor: usize,
        /// Its role (`"input"`, `"filter"`, ...).
        role: &'static str,
        /// The type the operator needs.
        expected: DType,
    },
    /// The output's shape is not the one the operator produces.
    WrongOutputShape {
        /// The output tensor.
        tensor: usize,
        /// The shape the operator produces, NHWC.
        expected: Shape4,
    },
    /// A tensor's quantization does not suit the operator.
    Quantization {
        /// The tensor.
        tensor: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The operator, or one of its options, is outside what mote supports.
    Unsupported {
        /// What is not supported.
        what: &'static str,
    },
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LowerError::MissingInput { slot } => write!(f, "input {slot} is missing"),
            LowerError::NoTensor { tensor } => write!(f, "tensor {tensor} does not exist"),
            LowerError::WrongType {
                tensor,
                role,
                expected,
            } => write!(f, "{role} (tensor {tensor}) must be {}", expected.name()),
            LowerError::WrongOutputShape { tensor, expected } => write!(
                f,
                "output (tensor {tensor}) must have the shape the layer produces, {:?}",
                [expected.n, expected.h, expected.w, expected.c]
            ),
            LowerError::Quantization { tensor, what } => write!(f, "tensor {tensor}: {what}"),
            LowerError::Unsupported { what } => f.write_str(what),
        }
    }
}

/// Where a lowering's constants go (mote-host's builder implements it).
pub trait LowerSink {
    /// Appends a requantization constant to the record's.
    fn requant(&mut self, q: QuantizedMultiplier);
    /// A constant uint8 tensor holding `bytes` (a lookup table the lowering computed, or
    /// constants it folded into one), added to the model or shared with an identical one: its
    /// id.
    fn constant_u8(&mut self, bytes: &mut dyn Iterator<Item = u8>) -> usize;
}

/// One operator being lowered: what the graph says of it, and the record being written.
pub struct Lowering<'g> {
    graph: &'g dyn LowerGraph,
    opcode: OpCode,
    inputs: &'g [Option<usize>],
    output: usize,
    options: &'g TfOptions,
    params: [i32; OP_PARAMS],
    sink: &'g mut dyn LowerSink,
    /// Record inputs the lowering set itself (constants it computed), by slot.
    computed: [Option<usize>; MAX_OP_INPUTS],
}

impl fmt::Debug for Lowering<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lowering")
            .field("opcode", &self.opcode)
            .field("inputs", &self.inputs)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

/// What a lowering wrote: the record's inputs (the operator's first TFLite inputs, as many as
/// its record takes) and parameters (its requantization constants went to the sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lowered {
    /// The record's inputs, in its order.
    pub inputs: [Option<usize>; MAX_OP_INPUTS],
    /// The record's parameters.
    pub params: [i32; OP_PARAMS],
}

impl<'g> Lowering<'g> {
    /// Lowers `opcode` reading `inputs` (TFLite's order), writing `output`, with `options`;
    /// each requantization constant and computed constant tensor goes to `sink`, in record
    /// order.
    pub fn run(
        opcode: OpCode,
        graph: &'g dyn LowerGraph,
        (inputs, output): (&'g [Option<usize>], usize),
        options: &'g TfOptions,
        sink: &'g mut dyn LowerSink,
    ) -> Result<Lowered, LowerError> {
        if graph.tensor(output).is_none() {
            return Err(LowerError::NoTensor { tensor: output });
        }
        let mut cx = Lowering {
            graph,
            opcode,
            inputs,
            output,
            options,
            params: [0; OP_PARAMS],
            sink,
            computed: [None; MAX_OP_INPUTS],
        };
        opcode.lower(&mut cx)?;
        // The record keeps the first inputs; TFLite's further ones (a RESHAPE's shape, a
        // MEAN's axes) are constants the lowering has read. A slot the lowering filled with a
        // constant it computed keeps that.
        let mut record_inputs = cx.computed;
        for (slot, kept) in record_inputs.iter_mut().enumerate() {
            if slot < opcode.record_inputs() && kept.is_none() {
                *kept = cx.optional(slot)?;
            }
        }
        Ok(Lowered {
            inputs: record_inputs,
            params: cx.params,
        })
    }

    /// The operator being lowered.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// Its options.
    pub fn options(&self) -> &TfOptions {
        self.options
    }

    /// The id of input `slot` (TFLite's order); `None` if it is omitted.
    pub fn optional(&self, slot: usize) -> Result<Option<usize>, LowerError> {
        match self.inputs.get(slot).copied().flatten() {
            Some(id) => self
                .graph
                .tensor(id)
                .map(|_| Some(id))
                .ok_or(LowerError::MissingInput { slot }),
            None => Ok(None),
        }
    }

    /// The id of input `slot`, which must be there.
    pub fn input(&self, slot: usize) -> Result<usize, LowerError> {
        self.optional(slot)?
            .ok_or(LowerError::MissingInput { slot })
    }

    /// The output's id.
    pub fn output(&self) -> usize {
        self.output
    }

    /// Tensor `id` (which [`Self::input`] or [`Self::output`] gave).
    pub fn tensor(&self, id: usize) -> Result<TensorView<'g>, LowerError> {
        self.graph
            .tensor(id)
            .ok_or(LowerError::NoTensor { tensor: id })
    }

    /// Tensor `id`, which must have type `dtype` in its `role`.
    pub fn typed(
        &self,
        id: usize,
        dtype: DType,
        role: &'static str,
    ) -> Result<TensorView<'g>, LowerError> {
        let t = self.tensor(id)?;
        match t.dtype == dtype {
            true => Ok(t),
            false => Err(LowerError::WrongType {
                tensor: id,
                role,
                expected: dtype,
            }),
        }
    }

    /// A weighted layer's int8 weights (input 1), after checking its optional int32 bias
    /// (input 2): the weights' id and view.
    pub fn weights(&self) -> Result<(usize, TensorView<'g>), LowerError> {
        let weights = self.input(1)?;
        let w = self.typed(weights, DType::I8, "weights")?;
        if let Some(bias) = self.optional(2)? {
            self.typed(bias, DType::I32, "bias")?;
        }
        Ok((weights, w))
    }

    /// Input `slot` and the output, both int8: the usual operator's edges.
    pub fn int8_io(&self, slot: usize) -> Result<usize, LowerError> {
        let input = self.input(slot)?;
        self.typed(input, DType::I8, "input")?;
        self.typed(self.output, DType::I8, "output")?;
        Ok(input)
    }

    /// Tensor `id`'s one scale and zero point.
    pub fn per_tensor(&self, id: usize) -> Result<(f32, i32), LowerError> {
        let t = self.tensor(id)?;
        let bad = |what| LowerError::Quantization { tensor: id, what };
        match (t.scales, t.zero_points) {
            ([scale], [zero_point]) if scale.is_finite() && *scale > 0.0 => {
                Ok((*scale, *zero_point))
            }
            ([_], [_]) => Err(bad("the scale must be positive and finite")),
            _ => Err(bad("must be quantized per tensor")),
        }
    }

    /// The int8 output stage from `input` to the output with a fused `activation`.
    pub fn int8_stage(
        &self,
        input: usize,
        activation: Activation,
    ) -> Result<Int8Stage, LowerError> {
        let (_, zp_in) = self.per_tensor(input)?;
        let (s_out, zp_out) = self.per_tensor(self.output)?;
        let (act_min, act_max) = activation.int8_range(s_out, zp_out);
        Ok(Int8Stage {
            input_offset: -zp_in,
            output_offset: zp_out,
            act_min,
            act_max,
        })
    }

    /// The window of a `kernel` sliding over `input` with the options' padding, strides and
    /// `dilation`, after checking that the output is `[n, out_h, out_w, channels]`.
    pub fn window(
        &self,
        input: usize,
        kernel: (usize, usize),
        dilation: (usize, usize),
        channels: usize,
    ) -> Result<Window, LowerError> {
        let o = self.options;
        let i = self.tensor(input)?.shape;
        let stride = (o.stride_h, o.stride_w);
        let fit = Window::for_kernel(i, kernel, o.padding, stride, dilation).ok_or(
            LowerError::Unsupported {
                what: "the window does not fit the input",
            },
        )?;
        self.expect_output(Shape4::new(i.n, fit.out_h, fit.out_w, channels))?;
        Ok(fit.window)
    }

    /// The output must have `shape`.
    pub fn expect_output(&self, shape: Shape4) -> Result<(), LowerError> {
        match self.tensor(self.output)?.shape == shape {
            true => Ok(()),
            false => Err(LowerError::WrongOutputShape {
                tensor: self.output,
                expected: shape,
            }),
        }
    }

    /// `s_in * s_w[c] / s_out` in double for each of `channels`, as TFLite's
    /// PopulateConvolutionQuantizationParams. Weights with one scale give one constant for
    /// all channels, or (`every_channel`) the same constant `channels` times.
    pub fn channel_requant(
        &mut self,
        (input, weights): (usize, usize),
        channels: usize,
        every_channel: bool,
    ) -> Result<(), LowerError> {
        let (s_in, _) = self.per_tensor(input)?;
        let (s_out, _) = self.per_tensor(self.output)?;
        let w = self.tensor(weights)?;
        let bad = |what| LowerError::Quantization {
            tensor: weights,
            what,
        };
        if w.zero_points.iter().any(|&z| z != 0) {
            return Err(bad("weights must be symmetric (zero point 0)"));
        }
        if !(w.scales.len() == 1 || w.scales.len() == channels) {
            return Err(bad("one scale, or one per output channel"));
        }
        let copies = match (w.scales.len(), every_channel) {
            (1, true) => channels,
            _ => 1,
        };
        for &scale in w.scales {
            let real = f64::from(s_in) * f64::from(scale) / f64::from(s_out);
            let q = QuantizedMultiplier::from_f64(real)
                .ok_or(bad("a requantization scale cannot be represented"))?;
            for _ in 0..copies {
                self.requant(q);
            }
        }
        Ok(())
    }

    /// The record's parameters.
    pub fn params(&mut self, params: &impl RecordParams) -> Result<(), LowerError> {
        self.params = params.encode().ok_or(LowerError::Unsupported {
            what: "a parameter does not fit its 32-bit slot",
        })?;
        Ok(())
    }

    /// Appends a requantization constant.
    pub fn requant(&mut self, q: QuantizedMultiplier) {
        self.sink.requant(q);
    }

    /// Record input `slot` becomes a constant uint8 tensor of `bytes` (a 256-entry lookup
    /// table computed here, once, instead of by the device's kernel).
    pub fn computed_input(&mut self, slot: usize, bytes: &[u8]) -> Result<(), LowerError> {
        self.computed_input_from(slot, &mut bytes.iter().copied())
    }

    /// Record input `slot` reads TFLite's input `from` (a record laid out otherwise than
    /// TFLite's inputs: SVDF's state, its fifth input, in the record's fourth slot).
    pub fn record_input(&mut self, slot: usize, from: usize) -> Result<(), LowerError> {
        let id = self.input(from)?;
        match self.computed.get_mut(slot) {
            Some(kept) => {
                *kept = Some(id);
                Ok(())
            }
            None => Err(LowerError::Unsupported {
                what: "a record input past the record's inputs",
            }),
        }
    }

    /// [`Self::computed_input`] with the bytes as they come (constants folded into one).
    pub fn computed_input_from(
        &mut self,
        slot: usize,
        bytes: &mut dyn Iterator<Item = u8>,
    ) -> Result<(), LowerError> {
        let id = self.sink.constant_u8(bytes);
        match self.computed.get_mut(slot) {
            Some(kept) => {
                *kept = Some(id);
                Ok(())
            }
            None => Err(LowerError::Unsupported {
                what: "a computed input past the record's inputs",
            }),
        }
    }
}
