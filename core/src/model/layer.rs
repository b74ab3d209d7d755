//! Decoding an operator record into exactly what its kernel needs, checking every shape and
//! parameter on the way. `Model::parse` decodes each operator once to validate it; the
//! interpreter decodes again as it runs (a few dozen instructions per operator).

use super::{Model, TensorInfo};
use crate::format::{param, DType, OpCode, OpRecord, Storage, TensorRecord, NO_TENSOR};
use crate::ops::add::AddParams;
use crate::ops::mean::{MeanMode, MeanParams};
use crate::ops::pooling::PoolParams;
use crate::ops::softmax::SoftmaxParams;
use crate::ops::{Int8Stage, Shape4, Tensor, Window};
use crate::quant::QuantizedMultiplier;
use crate::Error;
use core::cell::Cell;

/// Arena bytes an operator's kernel works in while it runs (empty: none planned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scratch {
    /// Arena offset, a multiple of 4.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
}

impl Scratch {
    /// The arena bytes.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// One operator, ready to run: constants borrowed from the blob, activations by tensor index.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Layer<'a> {
    /// CONV_2D.
    Conv2d {
        /// Strides, dilation, padding.
        window: Window,
        /// Zero points and clamp.
        stage: Int8Stage,
        /// Input tensor.
        input: u16,
        /// Filter, OHWI.
        filter: Tensor<'a, i8>,
        /// Bias per output channel.
        bias: Option<&'a [i32]>,
        /// Requantization per output channel.
        requant: &'a [QuantizedMultiplier],
        /// Output tensor.
        output: u16,
        /// The kernel's working memory.
        scratch: Scratch,
    },
    /// DEPTHWISE_CONV_2D.
    DepthwiseConv2d {
        /// Strides, dilation, padding.
        window: Window,
        /// Output channels per input channel.
        depth_multiplier: usize,
        /// Zero points and clamp.
        stage: Int8Stage,
        /// Input tensor.
        input: u16,
        /// Filter, 1 x H x W x (C*M).
        filter: Tensor<'a, i8>,
        /// Bias per output channel.
        bias: Option<&'a [i32]>,
        /// Requantization per output channel.
        requant: &'a [QuantizedMultiplier],
        /// Output tensor.
        output: u16,
        /// The kernel's working memory.
        scratch: Scratch,
    },
    /// FULLY_CONNECTED.
    FullyConnected {
        /// Zero points and clamp.
        stage: Int8Stage,
        /// Input tensor.
        input: u16,
        /// Weights, out x in.
        weights: Tensor<'a, i8>,
        /// Bias per output.
        bias: Option<&'a [i32]>,
        /// One (per-tensor) or one per output.
        requant: &'a [QuantizedMultiplier],
        /// Output tensor.
        output: u16,
        /// The kernel's working memory.
        scratch: Scratch,
    },
    /// AVERAGE_POOL_2D.
    AveragePool2d {
        /// Window and filter size.
        params: PoolParams,
        /// Clamp low.
        act_min: i8,
        /// Clamp high.
        act_max: i8,
        /// Input tensor.
        input: u16,
        /// Output tensor.
        output: u16,
    },
    /// MAX_POOL_2D.
    MaxPool2d {
        /// Window and filter size.
        params: PoolParams,
        /// Clamp low.
        act_min: i8,
        /// Clamp high.
        act_max: i8,
        /// Input tensor.
        input: u16,
        /// Output tensor.
        output: u16,
    },
    /// ADD.
    Add {
        /// Offsets, multipliers, clamp.
        params: AddParams,
        /// First input.
        a: u16,
        /// Second input.
        b: u16,
        /// Output tensor.
        output: u16,
    },
    /// SOFTMAX over the last dimension.
    Softmax {
        /// Fixed-point parameters.
        params: SoftmaxParams,
        /// Row length.
        depth: usize,
        /// Input tensor.
        input: u16,
        /// Output tensor.
        output: u16,
    },
    /// RESHAPE: no work, the output aliases the input.
    Reshape {
        /// Input tensor.
        input: u16,
        /// Output tensor.
        output: u16,
    },
    /// MEAN over height and width.
    Mean {
        /// Algorithm and requantization.
        params: MeanParams,
        /// Input tensor.
        input: u16,
        /// Output tensor.
        output: u16,
    },
    /// QUANTIZE f32 -> int8.
    Quantize {
        /// Output scale.
        scale: f32,
        /// Output zero point.
        zero_point: i32,
        /// Input tensor (f32).
        input: u16,
        /// Output tensor (int8).
        output: u16,
    },
    /// DEQUANTIZE int8 -> f32.
    Dequantize {
        /// Input scale.
        scale: f32,
        /// Input zero point.
        zero_point: i32,
        /// Input tensor (int8).
        input: u16,
        /// Output tensor (f32).
        output: u16,
    },
}

/// Checks an operator record field by field. A failed check is latched (the first one wins)
/// and the helper goes on with a harmless placeholder, so [`decode`] tests for failure once,
/// at the end, instead of unwinding a `Result` after every step: on the device that is a
/// kilobyte less of flash, and a valid model (the only kind that reaches an invoke) never
/// pays for the placeholders. The helpers several arms call are `#[inline(never)]`: inlined,
/// they made `decode` 2.4 KB larger.
struct Decoder<'m, 'a> {
    model: &'m Model<'a>,
    index: u16,
    op: &'m OpRecord,
    failed: Cell<Option<Error>>,
}

/// What a failed tensor lookup leaves behind: one element of every dimension, so the checks
/// after it still compute without overflow (and fail or pass harmlessly).
const PLACEHOLDER_TENSOR: TensorInfo = TensorInfo {
    index: NO_TENSOR,
    record: TensorRecord {
        dtype: DType::I8,
        storage: Storage::Arena,
        channel_axis: 0,
        shape: [1; 4],
        offset: 0,
        byte_len: 0,
        scale: 0.0,
        zero_point: 0,
        channel_scales: 0,
        live_from: 0,
        live_to: 0,
    },
    shape: Shape4::new(1, 1, 1, 1),
};

impl<'a> Decoder<'_, 'a> {
    /// Latches `e` unless an earlier check already failed.
    #[cold]
    #[inline(never)]
    fn fail(&self, e: Error) {
        if self.failed.get().is_none() {
            self.failed.set(Some(e));
        }
    }

    /// Latches an invalid-operator error for `what`.
    #[cold]
    #[inline(never)]
    fn reject(&self, what: crate::Why) {
        self.fail(Error::InvalidOperator {
            index: self.index,
            what,
        });
    }

    /// Latches an invalid-operator error unless `ok`.
    #[inline(always)]
    fn check(&self, ok: bool, what: crate::Why) {
        if !ok {
            self.reject(what);
        }
    }

    /// The value of `r`, or (latching its error) `placeholder`.
    fn take<T>(&self, r: Result<T, Error>, placeholder: T) -> T {
        r.unwrap_or_else(|e| {
            self.fail(e);
            placeholder
        })
    }

    /// The first failure, if any check failed so far.
    fn result<T>(&self, value: T) -> Result<T, Error> {
        match self.failed.get() {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }

    #[inline(never)]
    fn tensor(&self, slot: usize, dtype: DType, storage: Storage) -> TensorInfo {
        let index = match slot {
            usize::MAX => self.op.output,
            _ => self.op.inputs[slot],
        };
        let found = match index {
            NO_TENSOR => Err(Error::invalid_operator(
                self.index,
                why!("a required input is missing"),
            )),
            _ => self.model.tensor(index),
        };
        let t = self.take(found, PLACEHOLDER_TENSOR);
        self.check(
            t.record.dtype == dtype,
            why!("tensor has the wrong element type"),
        );
        self.check(
            t.record.storage == storage,
            why!("tensor is constant where an activation is expected, or vice versa"),
        );
        t
    }

    fn activation(&self, slot: usize, dtype: DType) -> TensorInfo {
        self.tensor(slot, dtype, Storage::Arena)
    }

    fn output(&self, dtype: DType) -> TensorInfo {
        self.tensor(usize::MAX, dtype, Storage::Arena)
    }

    #[inline(never)]
    fn weights(&self, slot: usize) -> Tensor<'a, i8> {
        let t = self.tensor(slot, DType::I8, Storage::Constant);
        Tensor {
            data: self.take(self.model.constant(&t), &[]),
            shape: t.shape,
        }
    }

    #[inline(never)]
    fn bias(&self, slot: usize, channels: usize) -> Option<&'a [i32]> {
        if self.op.inputs[slot] == NO_TENSOR {
            return None;
        }
        let t = self.tensor(slot, DType::I32, Storage::Constant);
        let bias: &[i32] = self.take(self.model.constant(&t), &[]);
        self.check(
            bias.len() == channels,
            why!("bias length differs from the output channels"),
        );
        Some(bias)
    }

    /// The requantization constants, `counts` (one of them) in number (after a failed check,
    /// maybe fewer).
    #[inline(never)]
    fn requant(&self, counts: &[usize]) -> &'a [QuantizedMultiplier] {
        let requant = self.take(self.model.requant(self.index, self.op), &[]);
        self.check(
            counts.contains(&requant.len()),
            why!("wrong number of requantization constants"),
        );
        self.check(
            requant
                .iter()
                .all(|q| (-31..=30).contains(&q.shift) && q.multiplier >= 0),
            why!("requantization constant out of range"),
        );
        requant
    }

    /// Exactly `N` requantization constants (zeros after a failed check).
    fn requant_array<const N: usize>(&self) -> [QuantizedMultiplier; N] {
        let zero = QuantizedMultiplier {
            multiplier: 0,
            shift: 0,
        };
        self.requant(&[N]).try_into().unwrap_or([zero; N])
    }

    /// The operator's planned scratch: inside the arena, word-aligned. (Parsing checks that
    /// no tensor live during the operator overlaps it.)
    #[inline(never)]
    fn scratch(&self) -> Scratch {
        let (offset, len) = (self.p(param::SCRATCH_OFFSET), self.p(param::SCRATCH_LEN));
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            self.reject(why!("negative scratch offset or length"));
            return Scratch::default();
        };
        if len == 0 {
            return Scratch::default();
        }
        self.check(
            offset % 4 == 0 && offset.saturating_add(len) <= self.model.arena_size(),
            why!("scratch misaligned or past the arena's end"),
        );
        Scratch { offset, len }
    }

    fn p(&self, i: usize) -> i32 {
        self.op.params[i]
    }

    /// Parameter `i`, which must be in `1..=0xFFFF` (1 if not).
    #[inline(never)]
    fn positive(&self, i: usize, what: crate::Why) -> usize {
        match self.p(i) {
            v @ 1..=0xFFFF => v as usize,
            _ => {
                self.reject(what);
                1
            }
        }
    }

    #[inline(never)]
    fn stage(&self) -> Int8Stage {
        let input_offset = self.p(param::INPUT_OFFSET);
        let output_offset = self.p(param::OUTPUT_OFFSET);
        self.check(
            (-127..=128).contains(&input_offset) && (-128..=127).contains(&output_offset),
            why!("zero point out of the int8 range"),
        );
        let (act_min, act_max) = (self.p(param::ACT_MIN), self.p(param::ACT_MAX));
        let in_range = |v| (-128..=127).contains(&v);
        self.check(
            in_range(act_min) && in_range(act_max),
            why!("activation clamp out of the int8 range"),
        );
        self.check(act_min <= act_max, why!("activation clamp is empty"));
        Int8Stage {
            input_offset,
            output_offset,
            act_min: act_min as i8,
            act_max: act_max as i8,
        }
    }

    #[inline(never)]
    fn window(&self) -> Window {
        let pad = |i| match self.p(i) {
            v @ 0..=0xFFFF => v as usize,
            _ => {
                self.reject(why!("negative or huge padding"));
                0
            }
        };
        Window {
            stride_h: self.positive(param::STRIDE_H, why!("stride must be positive")),
            stride_w: self.positive(param::STRIDE_W, why!("stride must be positive")),
            dilation_h: self.positive(param::DILATION_H, why!("dilation must be positive")),
            dilation_w: self.positive(param::DILATION_W, why!("dilation must be positive")),
            pad_top: pad(param::PAD_TOP),
            pad_left: pad(param::PAD_LEFT),
        }
    }

    /// The output's spatial size must come from sliding `kernel` over the input with `window`:
    /// at least one output, the padding smaller than the kernel, every window starting inside
    /// the padded input.
    #[inline(never)]
    fn check_spatial(
        &self,
        window: &Window,
        kernel: (usize, usize),
        input: Shape4,
        output: Shape4,
    ) {
        // Checked arithmetic throughout: these sizes come from the blob, and usize may be 32 bits.
        let ok_h = window.rows(input.h, kernel.0, output.h).is_consistent();
        let ok_w = window.cols(input.w, kernel.1, output.w).is_consistent();
        self.check(
            ok_h && ok_w,
            why!("output height/width do not follow from the input, kernel and window"),
        );
        self.check(
            input.n == output.n,
            why!("batch of input and output differ"),
        );
    }

    fn same_elements(&self, a: &TensorInfo, b: &TensorInfo) {
        self.check(
            a.shape.elements() == b.shape.elements(),
            why!("input and output sizes differ"),
        );
    }
}

/// Decodes and validates operator `index`.
pub(super) fn decode<'a>(model: &Model<'a>, index: u16, op: &OpRecord) -> Result<Layer<'a>, Error> {
    let d = Decoder {
        model,
        index,
        op,
        failed: Cell::new(None),
    };
    let used_inputs = match op.opcode {
        OpCode::Conv2d | OpCode::DepthwiseConv2d | OpCode::FullyConnected => 3,
        OpCode::Add => 2,
        _ => 1,
    };
    d.check(
        op.inputs[used_inputs..].iter().all(|&t| t == NO_TENSOR),
        why!("too many inputs for the operator"),
    );
    if !op.opcode.is_built() {
        // Refused when the model is parsed, not halfway through an invoke.
        d.reject(why!(
            "operator not built in (its mote-core op-* feature is off)"
        ));
        return d.result(Layer::Reshape {
            input: NO_TENSOR,
            output: NO_TENSOR,
        });
    }
    let layer = match op.opcode {
        OpCode::Conv2d => {
            let input = d.activation(0, DType::I8);
            let filter = d.weights(1);
            let output = d.output(DType::I8);
            let window = d.window();
            d.check(
                filter.shape.c == input.shape.c,
                why!("filter input channels differ from the input's channels"),
            );
            d.check(
                filter.shape.n == output.shape.c,
                why!("filter output channels differ from the output's channels"),
            );
            d.check_spatial(
                &window,
                (filter.shape.h, filter.shape.w),
                input.shape,
                output.shape,
            );
            Layer::Conv2d {
                window,
                stage: d.stage(),
                input: input.index,
                bias: d.bias(2, filter.shape.n),
                requant: d.requant(&[filter.shape.n]),
                filter,
                output: output.index,
                scratch: d.scratch(),
            }
        }
        OpCode::DepthwiseConv2d => {
            let input = d.activation(0, DType::I8);
            let filter = d.weights(1);
            let output = d.output(DType::I8);
            let window = d.window();
            let multiplier = d.positive(
                param::DEPTH_MULTIPLIER,
                why!("depth multiplier must be positive"),
            );
            d.check(
                filter.shape.n == 1
                    && Some(filter.shape.c) == input.shape.c.checked_mul(multiplier),
                why!("filter channels must be input channels x depth multiplier"),
            );
            d.check(
                output.shape.c == filter.shape.c,
                why!("output channels differ from the filter's"),
            );
            d.check_spatial(
                &window,
                (filter.shape.h, filter.shape.w),
                input.shape,
                output.shape,
            );
            Layer::DepthwiseConv2d {
                window,
                depth_multiplier: multiplier,
                stage: d.stage(),
                input: input.index,
                bias: d.bias(2, filter.shape.c),
                requant: d.requant(&[filter.shape.c]),
                filter,
                output: output.index,
                scratch: d.scratch(),
            }
        }
        OpCode::FullyConnected => {
            let input = d.activation(0, DType::I8);
            let mut weights = d.weights(1);
            let output = d.output(DType::I8);
            // Weights are [outputs, inputs] whatever rank they were written with.
            let inputs = weights.shape.c;
            // Checked: `inputs` is never 0 (parse refuses zero-sized dimensions).
            let outputs = weights.data.len().checked_div(inputs).unwrap_or(0);
            weights.shape = Shape4::new(outputs, 1, 1, inputs);
            let in_elements = input.shape.elements().unwrap_or(0);
            let rows = in_elements.checked_div(inputs).unwrap_or(0);
            d.check(
                rows * inputs == in_elements
                    && output.shape.c == outputs
                    && output.shape.elements() == rows.checked_mul(outputs),
                why!("input, weights and output sizes do not match"),
            );
            Layer::FullyConnected {
                stage: d.stage(),
                input: input.index,
                bias: d.bias(2, outputs),
                requant: d.requant(&[1, outputs]),
                weights,
                output: output.index,
                scratch: d.scratch(),
            }
        }
        OpCode::AveragePool2d | OpCode::MaxPool2d => {
            let input = d.activation(0, DType::I8);
            let output = d.output(DType::I8);
            let window = d.window();
            d.check(
                window.dilation_h == 1 && window.dilation_w == 1,
                why!("pooling does not dilate"),
            );
            let params = PoolParams {
                window,
                filter_h: d.positive(param::FILTER_H, why!("filter size must be positive")),
                filter_w: d.positive(param::FILTER_W, why!("filter size must be positive")),
            };
            d.check(
                input.shape.c == output.shape.c,
                why!("pooling keeps the channel count"),
            );
            d.check_spatial(
                &window,
                (params.filter_h, params.filter_w),
                input.shape,
                output.shape,
            );
            let stage = d.stage();
            let (act_min, act_max) = (stage.act_min, stage.act_max);
            let (input, output) = (input.index, output.index);
            if op.opcode == OpCode::AveragePool2d {
                Layer::AveragePool2d {
                    params,
                    act_min,
                    act_max,
                    input,
                    output,
                }
            } else {
                Layer::MaxPool2d {
                    params,
                    act_min,
                    act_max,
                    input,
                    output,
                }
            }
        }
        OpCode::Add => {
            let a = d.activation(0, DType::I8);
            let b = d.activation(1, DType::I8);
            let output = d.output(DType::I8);
            d.check(
                a.shape == b.shape && a.shape == output.shape,
                why!("ADD needs inputs and output of one shape"),
            );
            let stage = d.stage();
            let [input1, input2, output_requant] =
                d.requant_array::<{ param::ADD_REQUANT_COUNT }>();
            let input2_offset = d.p(param::INPUT2_OFFSET);
            let left_shift = d.p(param::LEFT_SHIFT);
            d.check(
                (-127..=128).contains(&input2_offset) && (0..=20).contains(&left_shift),
                why!("ADD offsets or shift out of range"),
            );
            Layer::Add {
                params: AddParams {
                    input1_offset: stage.input_offset,
                    input2_offset,
                    output_offset: stage.output_offset,
                    left_shift,
                    input1,
                    input2,
                    output: output_requant,
                    act_min: stage.act_min,
                    act_max: stage.act_max,
                },
                a: a.index,
                b: b.index,
                output: output.index,
            }
        }
        OpCode::Softmax => {
            let input = d.activation(0, DType::I8);
            let output = d.output(DType::I8);
            d.same_elements(&input, &output);
            d.check(
                output.zero_point() == -128 && output.scale() == 1.0 / 256.0,
                why!("int8 SOFTMAX output must have scale 1/256 and zero point -128"),
            );
            let shift = d.p(param::SOFTMAX_LEFT_SHIFT);
            d.check(
                (0..=31).contains(&shift) && d.p(param::SOFTMAX_DIFF_MIN) <= 0,
                why!("SOFTMAX parameters out of range"),
            );
            Layer::Softmax {
                params: SoftmaxParams {
                    input_multiplier: d.p(param::SOFTMAX_MULTIPLIER),
                    input_left_shift: shift,
                    diff_min: d.p(param::SOFTMAX_DIFF_MIN),
                },
                depth: input.shape.c,
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Reshape => {
            let input = d.take(model.tensor(op.inputs[0]), PLACEHOLDER_TENSOR);
            let output = d.take(model.tensor(op.output), PLACEHOLDER_TENSOR);
            d.check(
                input.record.storage == Storage::Arena && output.record.storage == Storage::Arena,
                why!("RESHAPE works on activations"),
            );
            d.check(
                input.dtype() == output.dtype() && input.arena_range() == output.arena_range(),
                why!("RESHAPE's output must alias its input (same type and bytes)"),
            );
            d.same_elements(&input, &output);
            Layer::Reshape {
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Mean => {
            let input = d.activation(0, DType::I8);
            let output = d.output(DType::I8);
            d.check(
                output.shape.elements() == input.shape.n.checked_mul(input.shape.c)
                    && output.shape.c == input.shape.c,
                why!("MEAN over height and width keeps only batch and channels"),
            );
            let mode = MeanMode::from_i32(d.p(param::MEAN_MODE));
            d.check(mode.is_some(), why!("unknown MEAN mode"));
            let [requant] = d.requant_array::<1>();
            Layer::Mean {
                params: MeanParams {
                    mode: mode.unwrap_or(MeanMode::General),
                    requant,
                    input_zero_point: input.zero_point(),
                    output_zero_point: output.zero_point(),
                },
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Quantize => {
            let input = d.activation(0, DType::F32);
            let output = d.output(DType::I8);
            d.same_elements(&input, &output);
            d.check(
                output.scale() > 0.0,
                why!("QUANTIZE needs a positive output scale"),
            );
            Layer::Quantize {
                scale: output.scale(),
                zero_point: output.zero_point(),
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Dequantize => {
            let input = d.activation(0, DType::I8);
            let output = d.output(DType::F32);
            d.same_elements(&input, &output);
            Layer::Dequantize {
                scale: input.scale(),
                zero_point: input.zero_point(),
                input: input.index,
                output: output.index,
            }
        }
    };
    d.result(layer)
}
