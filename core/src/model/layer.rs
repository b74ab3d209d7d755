//! Decoding an operator record into exactly what its kernel needs, checking every shape and
//! parameter on the way. `Model::parse` decodes each operator once to validate it; the
//! interpreter decodes again as it runs (a few dozen instructions per operator).

use super::{Model, TensorInfo};
use crate::format::{param, DType, OpCode, OpRecord, Storage, NO_TENSOR};
use crate::ops::add::AddParams;
use crate::ops::mean::{MeanMode, MeanParams};
use crate::ops::pooling::PoolParams;
use crate::ops::softmax::SoftmaxParams;
use crate::ops::{Int8Stage, Shape4, Tensor, Window};
use crate::quant::QuantizedMultiplier;
use crate::Error;

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

struct Decoder<'m, 'a> {
    model: &'m Model<'a>,
    index: u16,
    op: &'m OpRecord,
}

impl<'a> Decoder<'_, 'a> {
    fn bad<T>(&self, what: crate::Why) -> Result<T, Error> {
        Err(Error::invalid_operator(self.index, what))
    }

    fn tensor(&self, slot: usize, dtype: DType, storage: Storage) -> Result<TensorInfo, Error> {
        let index = match slot {
            usize::MAX => self.op.output,
            _ => self.op.inputs[slot],
        };
        if index == NO_TENSOR {
            return self.bad(why!("a required input is missing"));
        }
        let t = self.model.tensor(index)?;
        if t.record.dtype != dtype {
            return self.bad(why!("tensor has the wrong element type"));
        }
        if t.record.storage != storage {
            return self.bad(why!(
                "tensor is constant where an activation is expected, or vice versa"
            ));
        }
        Ok(t)
    }

    fn activation(&self, slot: usize, dtype: DType) -> Result<TensorInfo, Error> {
        self.tensor(slot, dtype, Storage::Arena)
    }

    fn output(&self, dtype: DType) -> Result<TensorInfo, Error> {
        self.tensor(usize::MAX, dtype, Storage::Arena)
    }

    fn weights(&self, slot: usize) -> Result<Tensor<'a, i8>, Error> {
        let t = self.tensor(slot, DType::I8, Storage::Constant)?;
        Ok(Tensor {
            data: self.model.constant(&t)?,
            shape: t.shape,
        })
    }

    fn bias(&self, slot: usize, channels: usize) -> Result<Option<&'a [i32]>, Error> {
        if self.op.inputs[slot] == NO_TENSOR {
            return Ok(None);
        }
        let t = self.tensor(slot, DType::I32, Storage::Constant)?;
        let bias: &[i32] = self.model.constant(&t)?;
        if bias.len() != channels {
            return self.bad(why!("bias length differs from the output channels"));
        }
        Ok(Some(bias))
    }

    fn requant(&self, counts: &[usize]) -> Result<&'a [QuantizedMultiplier], Error> {
        let requant = self.model.requant(self.index, self.op)?;
        if !counts.contains(&requant.len()) {
            return self.bad(why!("wrong number of requantization constants"));
        }
        if requant
            .iter()
            .any(|q| !(-31..=30).contains(&q.shift) || q.multiplier < 0)
        {
            return self.bad(why!("requantization constant out of range"));
        }
        Ok(requant)
    }

    /// The operator's planned scratch: inside the arena, word-aligned. (Parsing checks that
    /// no tensor live during the operator overlaps it.)
    fn scratch(&self) -> Result<Scratch, Error> {
        let (offset, len) = (self.p(param::SCRATCH_OFFSET), self.p(param::SCRATCH_LEN));
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return self.bad(why!("negative scratch offset or length"));
        };
        if len == 0 {
            return Ok(Scratch::default());
        }
        if offset % 4 != 0 || offset.saturating_add(len) > self.model.arena_size() {
            return self.bad(why!("scratch misaligned or past the arena's end"));
        }
        Ok(Scratch { offset, len })
    }

    fn p(&self, i: usize) -> i32 {
        self.op.params[i]
    }

    fn positive(&self, i: usize, what: crate::Why) -> Result<usize, Error> {
        match self.p(i) {
            v @ 1..=0xFFFF => Ok(v as usize),
            _ => self.bad(what),
        }
    }

    fn int8(&self, i: usize, what: crate::Why) -> Result<i8, Error> {
        i8::try_from(self.p(i)).or_else(|_| self.bad(what))
    }

    fn stage(&self) -> Result<Int8Stage, Error> {
        let input_offset = self.p(param::INPUT_OFFSET);
        let output_offset = self.p(param::OUTPUT_OFFSET);
        if !(-127..=128).contains(&input_offset) || !(-128..=127).contains(&output_offset) {
            return self.bad(why!("zero point out of the int8 range"));
        }
        let act_min = self.int8(
            param::ACT_MIN,
            why!("activation clamp out of the int8 range"),
        )?;
        let act_max = self.int8(
            param::ACT_MAX,
            why!("activation clamp out of the int8 range"),
        )?;
        if act_min > act_max {
            return self.bad(why!("activation clamp is empty"));
        }
        Ok(Int8Stage {
            input_offset,
            output_offset,
            act_min,
            act_max,
        })
    }

    fn window(&self) -> Result<Window, Error> {
        let pad = |i| match self.p(i) {
            v @ 0..=0xFFFF => Ok(v as usize),
            _ => self.bad(why!("negative or huge padding")),
        };
        Ok(Window {
            stride_h: self.positive(param::STRIDE_H, why!("stride must be positive"))?,
            stride_w: self.positive(param::STRIDE_W, why!("stride must be positive"))?,
            dilation_h: self.positive(param::DILATION_H, why!("dilation must be positive"))?,
            dilation_w: self.positive(param::DILATION_W, why!("dilation must be positive"))?,
            pad_top: pad(param::PAD_TOP)?,
            pad_left: pad(param::PAD_LEFT)?,
        })
    }

    /// The output's spatial size must come from sliding `kernel` over the input with `window`:
    /// at least one output, the padding smaller than the kernel, every window starting inside
    /// the padded input.
    fn check_spatial(
        &self,
        window: &Window,
        kernel: (usize, usize),
        input: Shape4,
        output: Shape4,
    ) -> Result<(), Error> {
        let axis = |inp: usize, out: usize, k: usize, stride: usize, dil: usize, pad: usize| {
            let effective = (k - 1) * dil + 1;
            pad < effective && out >= 1 && (out - 1) * stride < inp + pad
        };
        let ok_h = axis(
            input.h,
            output.h,
            kernel.0,
            window.stride_h,
            window.dilation_h,
            window.pad_top,
        );
        let ok_w = axis(
            input.w,
            output.w,
            kernel.1,
            window.stride_w,
            window.dilation_w,
            window.pad_left,
        );
        if !(ok_h && ok_w) {
            return self.bad(why!(
                "output height/width do not follow from the input, kernel and window"
            ));
        }
        if input.n != output.n {
            return self.bad(why!("batch of input and output differ"));
        }
        Ok(())
    }

    fn same_elements(&self, a: &TensorInfo, b: &TensorInfo) -> Result<(), Error> {
        if a.shape.elements() != b.shape.elements() {
            return self.bad(why!("input and output sizes differ"));
        }
        Ok(())
    }
}

/// Decodes and validates operator `index`.
pub(super) fn decode<'a>(model: &Model<'a>, index: u16, op: &OpRecord) -> Result<Layer<'a>, Error> {
    let d = Decoder { model, index, op };
    let used_inputs = match op.opcode {
        OpCode::Conv2d | OpCode::DepthwiseConv2d | OpCode::FullyConnected => 3,
        OpCode::Add => 2,
        _ => 1,
    };
    if op.inputs[used_inputs..].iter().any(|&t| t != NO_TENSOR) {
        return d.bad(why!("too many inputs for the operator"));
    }
    if !op.opcode.is_built() {
        // Refused when the model is parsed, not halfway through an invoke.
        return d.bad(why!(
            "operator not built in (its mote-core op-* feature is off)"
        ));
    }
    Ok(match op.opcode {
        OpCode::Conv2d => {
            let input = d.activation(0, DType::I8)?;
            let filter = d.weights(1)?;
            let output = d.output(DType::I8)?;
            let window = d.window()?;
            if filter.shape.c != input.shape.c {
                return d.bad(why!(
                    "filter input channels differ from the input's channels"
                ));
            }
            if filter.shape.n != output.shape.c {
                return d.bad(why!(
                    "filter output channels differ from the output's channels"
                ));
            }
            d.check_spatial(
                &window,
                (filter.shape.h, filter.shape.w),
                input.shape,
                output.shape,
            )?;
            Layer::Conv2d {
                window,
                stage: d.stage()?,
                input: input.index,
                bias: d.bias(2, filter.shape.n)?,
                requant: d.requant(&[filter.shape.n])?,
                filter,
                output: output.index,
                scratch: d.scratch()?,
            }
        }
        OpCode::DepthwiseConv2d => {
            let input = d.activation(0, DType::I8)?;
            let filter = d.weights(1)?;
            let output = d.output(DType::I8)?;
            let window = d.window()?;
            let multiplier = d.positive(
                param::DEPTH_MULTIPLIER,
                why!("depth multiplier must be positive"),
            )?;
            if filter.shape.n != 1 || Some(filter.shape.c) != input.shape.c.checked_mul(multiplier)
            {
                return d.bad(why!(
                    "filter channels must be input channels x depth multiplier"
                ));
            }
            if output.shape.c != filter.shape.c {
                return d.bad(why!("output channels differ from the filter's"));
            }
            d.check_spatial(
                &window,
                (filter.shape.h, filter.shape.w),
                input.shape,
                output.shape,
            )?;
            Layer::DepthwiseConv2d {
                window,
                depth_multiplier: multiplier,
                stage: d.stage()?,
                input: input.index,
                bias: d.bias(2, filter.shape.c)?,
                requant: d.requant(&[filter.shape.c])?,
                filter,
                output: output.index,
                scratch: d.scratch()?,
            }
        }
        OpCode::FullyConnected => {
            let input = d.activation(0, DType::I8)?;
            let mut weights = d.weights(1)?;
            let output = d.output(DType::I8)?;
            // Weights are [outputs, inputs] whatever rank they were written with.
            let inputs = weights.shape.c;
            // Checked: `inputs` is never 0 (parse refuses zero-sized dimensions).
            let outputs = weights.data.len().checked_div(inputs).unwrap_or(0);
            weights.shape = Shape4::new(outputs, 1, 1, inputs);
            let in_elements = input.shape.elements().unwrap_or(0);
            let rows = in_elements.checked_div(inputs).unwrap_or(0);
            if rows * inputs != in_elements
                || output.shape.c != outputs
                || output.shape.elements() != rows.checked_mul(outputs)
            {
                return d.bad(why!("input, weights and output sizes do not match"));
            }
            Layer::FullyConnected {
                stage: d.stage()?,
                input: input.index,
                bias: d.bias(2, outputs)?,
                requant: d.requant(&[1, outputs])?,
                weights,
                output: output.index,
                scratch: d.scratch()?,
            }
        }
        OpCode::AveragePool2d | OpCode::MaxPool2d => {
            let input = d.activation(0, DType::I8)?;
            let output = d.output(DType::I8)?;
            let window = d.window()?;
            if window.dilation_h != 1 || window.dilation_w != 1 {
                return d.bad(why!("pooling does not dilate"));
            }
            let params = PoolParams {
                window,
                filter_h: d.positive(param::FILTER_H, why!("filter size must be positive"))?,
                filter_w: d.positive(param::FILTER_W, why!("filter size must be positive"))?,
            };
            if input.shape.c != output.shape.c {
                return d.bad(why!("pooling keeps the channel count"));
            }
            d.check_spatial(
                &window,
                (params.filter_h, params.filter_w),
                input.shape,
                output.shape,
            )?;
            let stage = d.stage()?;
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
            let a = d.activation(0, DType::I8)?;
            let b = d.activation(1, DType::I8)?;
            let output = d.output(DType::I8)?;
            if a.shape != b.shape || a.shape != output.shape {
                return d.bad(why!("ADD needs inputs and output of one shape"));
            }
            let stage = d.stage()?;
            let requant = d.requant(&[param::ADD_REQUANT_COUNT])?;
            let input2_offset = d.p(param::INPUT2_OFFSET);
            let left_shift = d.p(param::LEFT_SHIFT);
            if !(-127..=128).contains(&input2_offset) || !(0..=20).contains(&left_shift) {
                return d.bad(why!("ADD offsets or shift out of range"));
            }
            Layer::Add {
                params: AddParams {
                    input1_offset: stage.input_offset,
                    input2_offset,
                    output_offset: stage.output_offset,
                    left_shift,
                    input1: requant[0],
                    input2: requant[1],
                    output: requant[2],
                    act_min: stage.act_min,
                    act_max: stage.act_max,
                },
                a: a.index,
                b: b.index,
                output: output.index,
            }
        }
        OpCode::Softmax => {
            let input = d.activation(0, DType::I8)?;
            let output = d.output(DType::I8)?;
            d.same_elements(&input, &output)?;
            if output.zero_point() != -128 || output.scale() != 1.0 / 256.0 {
                return d.bad(why!(
                    "int8 SOFTMAX output must have scale 1/256 and zero point -128"
                ));
            }
            let shift = d.p(param::SOFTMAX_LEFT_SHIFT);
            if !(0..=31).contains(&shift) || d.p(param::SOFTMAX_DIFF_MIN) > 0 {
                return d.bad(why!("SOFTMAX parameters out of range"));
            }
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
            let input = model.tensor(op.inputs[0])?;
            let output = model.tensor(op.output)?;
            if input.record.storage != Storage::Arena || output.record.storage != Storage::Arena {
                return d.bad(why!("RESHAPE works on activations"));
            }
            if input.dtype() != output.dtype() || input.arena_range() != output.arena_range() {
                return d.bad(why!(
                    "RESHAPE's output must alias its input (same type and bytes)"
                ));
            }
            d.same_elements(&input, &output)?;
            Layer::Reshape {
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Mean => {
            let input = d.activation(0, DType::I8)?;
            let output = d.output(DType::I8)?;
            if output.shape.elements() != input.shape.n.checked_mul(input.shape.c)
                || output.shape.c != input.shape.c
            {
                return d.bad(why!(
                    "MEAN over height and width keeps only batch and channels"
                ));
            }
            let mode = MeanMode::from_i32(d.p(param::MEAN_MODE))
                .ok_or_else(|| Error::invalid_operator(index, why!("unknown MEAN mode")))?;
            let requant = d.requant(&[1])?[0];
            Layer::Mean {
                params: MeanParams {
                    mode,
                    requant,
                    input_zero_point: input.zero_point(),
                    output_zero_point: output.zero_point(),
                },
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Quantize => {
            let input = d.activation(0, DType::F32)?;
            let output = d.output(DType::I8)?;
            d.same_elements(&input, &output)?;
            if output.scale() <= 0.0 {
                return d.bad(why!("QUANTIZE needs a positive output scale"));
            }
            Layer::Quantize {
                scale: output.scale(),
                zero_point: output.zero_point(),
                input: input.index,
                output: output.index,
            }
        }
        OpCode::Dequantize => {
            let input = d.activation(0, DType::I8)?;
            let output = d.output(DType::F32)?;
            d.same_elements(&input, &output)?;
            Layer::Dequantize {
                scale: input.scale(),
                zero_point: input.zero_point(),
                input: input.index,
                output: output.index,
            }
        }
    })
}
