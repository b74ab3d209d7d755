//! CONV_2D: 2-D convolution of an NHWC input with an OHWI filter.
//!
//! The int8 kernel reproduces TFLite-Micro's reference `ConvPerChannel` bit for bit. Taps that
//! land in the padding are skipped: padding holds the input's zero point, which is zero in real
//! terms. Products are summed in wrapping int32 (what the C++ does on every target it runs on,
//! and only reachable past 2^16 taps), then each output channel is requantized.
//!
//! # Window geometry
//!
//! Only the padding above and left of the input is given ([`Window::pad_top`],
//! [`Window::pad_left`]); the padding below and right is whatever the output size implies.
//! Along each axis the padding must be smaller than the dilated kernel, and the output size at
//! least 1 with every window starting inside the padded input: `(out - 1) * stride < in + pad`.
//! TFLite's SAME and VALID sizes both qualify (the model loader applies the same rule).

use core::ops::Range;

use super::conv_gemm;
use super::lower::{LowerError, Lowering};
use super::operator::{Io, KernelPaths, Operator, Views, Weighted};
use super::output_stage::{check_clamp, check_int8, clamp_f32, requantize};
use super::record::record_params;
use super::KernelPath;
use super::{Int8Stage, Requant, Shape4, Tensor, TensorMut, Window};
use crate::format::DType;
use crate::format::OpCode;
use crate::geometry::{tap_range, Axis, AxisError};
use crate::model::{Decoder, Model};
use crate::quant::dot_i8;
use crate::Error;

/// Int8 convolution, bit-exact with TFLite-Micro's reference `ConvPerChannel`.
///
/// `filter` is OHWI (`n` = output channels, `c` = input channels) with zero point 0. `requant`
/// holds one multiplier per output channel, or a single one for all of them. Each output is
/// `clamp(requant[oc].apply(sum(filter * (input + input_offset)) + bias[oc]) + output_offset)`.
///
/// `scratch` (word-aligned, [`scratch_bytes`] long) holds the fast kernel's columns; with
/// less, the layer runs the reference kernel (same outputs, several times slower).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8(
    window: &Window,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    check_conv(window, &input, &filter, &output, bias.map(<[i32]>::len))?;
    check_int8(
        stage,
        requant,
        output.shape.c,
        why!("conv2d requant length"),
    )?;
    conv2d_i8_decoded(window, stage, input, filter, bias, requant, output, scratch)
}

/// [`conv2d_i8`] for a layer the model's decoder validated (the interpreter's path): the
/// buffer, channel and constant checks it already made are only debug-asserted here, which
/// keeps a second copy of them out of flash. No memory access rests on them: every loop
/// bounds its own reads and writes by the slices it is given.
#[allow(clippy::too_many_arguments)]
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub(crate) fn conv2d_i8_decoded(
    window: &Window,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    super::built(OpCode::Conv2d)?;
    debug_assert_eq!(
        check_buffers(&input, &filter, &output, bias.map(<[i32]>::len)),
        Ok(())
    );
    let what = why!("conv2d requant length");
    debug_assert_eq!(check_int8(stage, requant, output.shape.c, what), Ok(()));
    let (kernel, names) = ((filter.shape.h, filter.shape.w), conv_names());
    let checked = Geometry::new(&names, window, input.shape, kernel, output.shape);
    debug_assert!(checked.is_ok(), "{checked:?}");
    let g = Geometry::decoded(window, input.shape, kernel, output.shape);
    let args = conv_gemm::Args {
        g: &g,
        stage,
        input: input.data,
        in_c: input.shape.c,
        filter: filter.data,
        bias,
        requant,
        out_c: output.shape.c,
    };
    let out = &mut *output.data;
    let done = match conv_gemm::conv2d(&args, out, scratch) {
        conv_gemm::Ran::Done => true,
        conv_gemm::Ran::Table => conv_gemm::conv2d_table(&args, out, scratch),
        conv_gemm::Ran::No => false,
    };
    if done {
        return Ok(());
    }
    super::reference_built()?;
    reference_i8(&g, stage, input, filter, bias, requant, output)
}

/// Scratch bytes [`conv2d_i8`]'s fast kernel needs for this layer (its OHWI `filter`, the
/// output's shape): the column pair, at most 2,304 bytes; for a layer the table-free loop does
/// not take, also zero-padded copies of up to three filter rows and a block's tables (about
/// 1.8 KB).
pub fn scratch_bytes(
    stage: &Int8Stage,
    filter: &Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: Shape4,
) -> usize {
    conv_gemm::layer_scratch(stage, (filter.data, filter.shape), bias, requant, output)
}

/// [`conv2d_i8`] computed the way TFLite-Micro's reference kernel does, one multiply at a
/// time: the specification the fast path is tested against.
pub fn conv2d_i8_reference(
    window: &Window,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    let g = check_conv(window, &input, &filter, &output, bias.map(<[i32]>::len))?;
    check_int8(
        stage,
        requant,
        output.shape.c,
        why!("conv2d requant length"),
    )?;
    reference_i8(&g, stage, input, filter, bias, requant, output)
}

fn reference_i8(
    g: &Geometry,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    let in_c = input.shape.c;
    g.for_each_pixel(output.data, |pixel, taps| {
        // One kh * kw * in_c block per output channel; `pixel` is never empty.
        let per_filter = filter.data.len() / pixel.len();
        for (oc, (out, q)) in pixel.iter_mut().zip(requant.iter().cycle()).enumerate() {
            let f = &filter.data[oc * per_filter..][..per_filter];
            let mut acc = 0i32;
            for (p, k) in taps.iter() {
                let x = &input.data[p * in_c..][..in_c];
                acc = acc.wrapping_add(dot_i8(x, stage.input_offset, &f[k * in_c..][..in_c], 0)?);
            }
            *out = requantize(acc.wrapping_add(bias.map_or(0, |b| b[oc])), *q, stage);
        }
        Ok(())
    })
}

/// f32 convolution, as TFLite's reference float `Conv`: taps summed in order, then the bias
/// added, then the result clamped to `clamp = (min, max)` (NaN passes through, as in C++).
pub fn conv2d_f32(
    window: &Window,
    clamp: (f32, f32),
    input: Tensor<f32>,
    filter: Tensor<f32>,
    bias: Option<&[f32]>,
    output: TensorMut<f32>,
) -> Result<(), Error> {
    let g = check_conv(window, &input, &filter, &output, bias.map(<[f32]>::len))?;
    check_clamp(clamp)?;
    let in_c = input.shape.c;
    g.for_each_pixel(output.data, |pixel, taps| {
        let per_filter = filter.data.len() / pixel.len();
        for (oc, out) in pixel.iter_mut().enumerate() {
            let f = &filter.data[oc * per_filter..][..per_filter];
            let mut acc = 0.0f32;
            for (p, k) in taps.iter() {
                let x = &input.data[p * in_c..][..in_c];
                for (&x, &w) in x.iter().zip(&f[k * in_c..][..in_c]) {
                    acc += x * w;
                }
            }
            *out = clamp_f32(acc + bias.map_or(0.0, |b| b[oc]), clamp);
        }
        Ok(())
    })
}

/// Validates a convolution's buffers and shapes; returns its window geometry.
fn check_conv<T>(
    window: &Window,
    input: &Tensor<T>,
    filter: &Tensor<T>,
    output: &TensorMut<T>,
    bias_len: Option<usize>,
) -> Result<Geometry, Error> {
    check_buffers(input, filter, output, bias_len)?;
    let (i, f, o) = (input.shape, filter.shape, output.shape);
    Geometry::new(&conv_names(), window, i, (f.h, f.w), o)
}

/// Validates a convolution's buffer lengths and channel counts (not its window).
fn check_buffers<T>(
    input: &Tensor<T>,
    filter: &Tensor<T>,
    output: &TensorMut<T>,
    bias_len: Option<usize>,
) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    filter.shape.check_len(filter.data.len())?;
    output.shape.check_len(output.data.len())?;
    let (i, f, o) = (input.shape, filter.shape, output.shape);
    same(why!("conv2d filter input channels"), i.c, f.c)?;
    same(why!("conv2d output channels"), f.n, o.c)?;
    same(why!("conv2d output batch"), i.n, o.n)?;
    if let Some(len) = bias_len {
        same(why!("conv2d bias length"), o.c, len)?;
    }
    Ok(())
}

/// `Ok` if `actual == expected`, else a [`Error::ShapeMismatch`] naming `what`.
pub(crate) fn same(what: crate::Why, expected: usize, actual: usize) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            actual,
        })
    }
}

/// Error names for one operator's window checks.
pub(crate) struct WindowNames {
    /// Output height is zero or has a window starting past the padded input.
    pub(crate) output_h: crate::Why,
    /// Same for the width.
    pub(crate) output_w: crate::Why,
    /// `pad_top` covers the whole dilated kernel.
    pub(crate) pad_top: crate::Why,
    /// `pad_left` covers the whole dilated kernel.
    pub(crate) pad_left: crate::Why,
}

fn conv_names() -> WindowNames {
    WindowNames {
        output_h: why!("conv2d output height (at most ceil((in + pad_top) / stride))"),
        output_w: why!("conv2d output width (at most ceil((in + pad_left) / stride))"),
        pad_top: why!("conv2d pad_top must be smaller than the dilated kernel height"),
        pad_left: why!("conv2d pad_left must be smaller than the dilated kernel width"),
    }
}

/// A validated sliding window over validated shapes: everything the loops need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) window: Window,
    pub(crate) batches: usize,
    pub(crate) in_h: usize,
    pub(crate) in_w: usize,
    pub(crate) kernel_h: usize,
    pub(crate) kernel_w: usize,
    pub(crate) out_h: usize,
    pub(crate) out_w: usize,
}

impl Geometry {
    /// Checks the window against the input, kernel `(height, width)` and output shapes.
    pub(crate) fn new(
        names: &WindowNames,
        window: &Window,
        input: Shape4,
        (kernel_h, kernel_w): (usize, usize),
        output: Shape4,
    ) -> Result<Self, Error> {
        let rows = window.rows(input.h, kernel_h, output.h);
        check_axis(rows, (names.output_h, names.pad_top))?;
        let cols = window.cols(input.w, kernel_w, output.w);
        check_axis(cols, (names.output_w, names.pad_left))?;
        Ok(Self::decoded(window, input, (kernel_h, kernel_w), output))
    }

    /// The geometry of a window the model's decoder checked as [`Self::new`] would (the
    /// interpreter's path), without checking it again.
    pub(crate) fn decoded(
        window: &Window,
        input: Shape4,
        (kernel_h, kernel_w): (usize, usize),
        output: Shape4,
    ) -> Self {
        Self {
            window: *window,
            batches: output.n,
            in_h: input.h,
            in_w: input.w,
            kernel_h,
            kernel_w,
            out_h: output.h,
            out_w: output.w,
        }
    }

    /// Calls `f` with each output pixel's channels, in NHWC order, and the taps of its window
    /// that land on the input. Tap bounds are found once per row and pixel, not per tap.
    pub(crate) fn for_each_pixel<O>(
        &self,
        output: &mut [O],
        mut f: impl FnMut(&mut [O], &Taps) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if output.is_empty() {
            return Ok(());
        }
        // Nonempty, so each factor is nonzero and their product is at most output.len().
        let pixels = self.batches * self.out_h * self.out_w;
        let w = &self.window;
        let mut chunks = output.chunks_exact_mut(output.len() / pixels);
        for b in 0..self.batches {
            for oy in 0..self.out_h {
                let y0 = oy * w.stride_h;
                let ky = tap_range(y0, w.pad_top, self.in_h, self.kernel_h, w.dilation_h);
                for ox in 0..self.out_w {
                    let x0 = ox * w.stride_w;
                    let kx = tap_range(x0, w.pad_left, self.in_w, self.kernel_w, w.dilation_w);
                    let taps = Taps {
                        g: self,
                        image: b * self.in_h * self.in_w,
                        y0,
                        x0,
                        ky: ky.clone(),
                        kx,
                    };
                    match chunks.next() {
                        Some(pixel) => f(pixel, &taps)?,
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// The taps of one output pixel's window that land on the input.
#[derive(Debug)]
pub(crate) struct Taps<'a> {
    g: &'a Geometry,
    /// Pixel index of the image's top-left corner.
    image: usize,
    /// Position of tap 0 in padded coordinates.
    y0: usize,
    x0: usize,
    /// Kernel rows and columns inside the input.
    ky: Range<usize>,
    kx: Range<usize>,
}

impl Taps<'_> {
    /// `(input pixel index, kernel tap index ky * kernel_w + kx)` for each in-bounds tap.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (g, w) = (self.g, &self.g.window);
        self.ky.clone().flat_map(move |ky| {
            let row = self.image + (self.y0 + ky * w.dilation_h - w.pad_top) * g.in_w;
            // Add before subtracting: tap 0 itself may sit in the padding.
            let at = move |kx: usize| row + self.x0 + kx * w.dilation_w - w.pad_left;
            self.kx
                .clone()
                .map(move |kx| (at(kx), ky * g.kernel_w + kx))
        })
    }
}

/// Checks one axis by the geometry module's rule, naming a failure as the operator does.
fn check_axis(axis: Axis, (output_what, pad_what): (crate::Why, crate::Why)) -> Result<(), Error> {
    let invalid = |what| Err(Error::InvalidParameter { what });
    match axis.check() {
        Ok(()) => Ok(()),
        Err(AxisError::ZeroStride) => invalid(why!("window stride is zero")),
        Err(AxisError::ZeroDilation) => invalid(why!("window dilation is zero")),
        Err(AxisError::ZeroKernel) => invalid(why!("kernel height or width is zero")),
        Err(AxisError::ZeroInput) => invalid(why!("input height or width is zero")),
        Err(AxisError::PadCoversKernel) => invalid(pad_what),
        Err(AxisError::Overflow) => Err(Error::ShapeOverflow),
        Err(AxisError::Output { most }) => Err(Error::ShapeMismatch {
            what: output_what,
            expected: most,
            actual: axis.output,
        }),
    }
}

record_params! {
    /// CONV_2D's record parameters.
    pub struct Conv2dParams {
        /// Strides, dilation, padding.
        pub window: Window,
        /// Zero points and clamp.
        pub stage: Int8Stage,
    }
}

/// CONV_2D, decoded.
pub type Conv2d<'a> = Weighted<'a, Conv2dParams>;

impl<'a> Operator<'a> for Conv2d<'a> {
    type Params = Conv2dParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 3;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let (filter, f) = cx.weights()?;
        let f = f.shape;
        let o = *cx.options();
        let window = cx.window(input, (f.h, f.w), (o.dilation_h, o.dilation_w), f.n)?;
        let stage = cx.int8_stage(input, o.activation)?;
        cx.channel_requant((input, filter), f.n, true)?;
        cx.params(&Conv2dParams { window, stage })
    }

    fn decode(d: &Decoder<'_, 'a>, params: Conv2dParams) -> Self {
        let input = d.activation(0, DType::I8);
        let filter = d.weights(1);
        let output = d.output(DType::I8);
        d.check(
            filter.shape.c == input.shape.c,
            why!("filter input channels differ from the input's channels"),
        );
        d.check(
            filter.shape.n == output.shape.c,
            why!("filter output channels differ from the output's channels"),
        );
        let kernel = (filter.shape.h, filter.shape.w);
        d.check_spatial(&params.window, kernel, input.shape, output.shape);
        let channels = filter.shape.n;
        let tensors = (input.index, filter, output.index);
        Weighted::decoded(d, params, tensors, &[channels])
    }

    fn io(&self) -> Option<Io> {
        Some(Weighted::io(self))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let p = &self.params;
        let (filter, bias, requant) = (self.weights, self.bias, self.requant);
        conv2d_i8_decoded(
            &p.window,
            &p.stage,
            v.inputs[0],
            filter,
            bias,
            requant,
            v.output,
            v.scratch,
        )
    }

    fn scratch_need(&self, model: &Model<'a>) -> Result<Option<usize>, Error> {
        let output = model.tensor(self.output)?.shape;
        let p = &self.params;
        let need = scratch_bytes(&p.stage, &self.weights, self.bias, self.requant, output);
        Ok(Some(need))
    }

    fn macs(&self, model: &Model<'a>) -> Result<u64, Error> {
        let outputs = model.tensor(self.output)?.shape.elements().unwrap_or(0);
        let f = self.weights.shape;
        Ok((outputs as u64) * (f.h * f.w * f.c) as u64)
    }

    fn needs_reference(&self, model: &Model<'a>) -> Result<bool, Error> {
        Ok(self.runs_reference(self.scratch_need(model)?))
    }

    fn kernel_paths(&self, model: &Model<'a>, paths: &mut KernelPaths) -> Result<(), Error> {
        let output = model.tensor(self.output)?.shape;
        let (p, f) = (&self.params, self.weights.shape);
        let layer = (self.weights.data, f);
        let (bias, requant) = (self.bias, self.requant);
        let table = conv_gemm::takes_table(&p.stage, layer, bias, requant, output);
        paths.take(KernelPath::ConvTable, table);
        let runs = conv_gemm::takes_runs(&p.window, (f.h, f.w, f.c));
        paths.take(KernelPath::ConvGatherRuns, runs);
        let tail = conv_gemm::takes_tail(&p.stage, layer, bias, requant, output);
        paths.take(KernelPath::ConvTail, tail);
        let rect = conv_gemm::takes_rect(&p.window, (f.h, f.w, f.c));
        paths.take(KernelPath::ConvRect, rect);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, Padding};
    use crate::quant::QuantizedMultiplier;
    use crate::test_support::*;
    use std::vec::Vec;

    type Io<'a> = (Tensor<'a, i8>, Tensor<'a, i8>);

    fn run_i8(
        (w, st): (Window, Int8Stage),
        (input, filter): Io,
        bias: Option<&[i32]>,
        rq: &[QuantizedMultiplier],
        os: Shape4,
    ) -> Result<Vec<i8>, Error> {
        let mut out = vec![0i8; len(os)];
        let mut words = vec![0u32; scratch_bytes(&st, &filter, bias, rq, os).div_ceil(4)];
        let scratch = crate::cast::words_as_bytes_mut(&mut words);
        conv2d_i8(&w, &st, input, filter, bias, rq, tm(&mut out, os), scratch)?;
        Ok(out)
    }

    #[test]
    fn same_padding_stride_2_per_channel() {
        // 4x4 input q = 0..15, input_offset 1 -> rows 1..4 / 5..8 / 9..12 / 13..16.
        // SAME, 3x3, stride 2: out 2x2, total pad 1 -> pad_top 0, one implicit row/col at the end.
        assert_eq!(Padding::Same.output_and_pad(4, 3, 2, 1), Some((2, 0)));
        let input: Vec<i8> = (0..16).collect();
        // oc0 all ones: window sums 54, 45 (cols 2,3 + pad), 72 (rows 2,3 + pad), 54.
        // oc1 2*centre - top-left: 2*6-1 = 11, 2*8-3 = 13, 2*14-9 = 19, 2*16-11 = 21.
        let mut filter = vec![1i8; 9];
        filter.extend([-1, 0, 0, 0, 2, 0, 0, 0, 0]);
        // Bias 10 / -3: acc0 64, 55, 82, 64; acc1 8, 10, 16, 18.
        // oc0 x0.5, positive ties up: 32, 28, 41, 32. oc1 x1.5: 12, 15, 24, 27. Then - 5.
        let io = (t(&input, s(1, 4, 4, 1)), t(&filter, s(2, 3, 3, 1)));
        let (ws, rq) = ((win((2, 2), ONE, ZERO), stage(1, -5)), [q(0.5), q(1.5)]);
        let out = run_i8(ws, io, Some(&[10, -3]), &rq, s(1, 2, 2, 2));
        assert_eq!(out, Ok(vec![27, 7, 23, 10, 36, 19, 27, 22]));
    }

    #[test]
    fn stride_larger_than_kernel() {
        // 1x7 row, 1x2 kernel [2, -1], stride 3, VALID: out 2. input_offset 3 -> 4..10.
        // acc = 2*4-5+100 = 103, 2*7-8+100 = 106. x0.25 = x0.5 (51.5 -> 52, 53) then a
        // rounding shift by 1 (26, 26.5 -> 27).
        let input = t(&[1, 2, 3, 4, 5, 6, 7], s(1, 1, 7, 1));
        let io = (input, t(&[2, -1], s(1, 1, 2, 1)));
        let ws = (win((1, 3), ONE, ZERO), stage(3, 0));
        let out = run_i8(ws, io, Some(&[100]), &[q(0.25)], s(1, 1, 2, 1));
        assert_eq!(out, Ok(vec![26, 27]));
    }

    #[test]
    fn dilation_2_with_kx1_kernel_and_same_padding() {
        // Height-7 column, 3x1 kernel [1, 10, 100], dilation 2 (extent 5), SAME: pad_top 2.
        // acc[i] = x[i-2] + 10 x[i] + 100 x[i+2] = 310, 420, 531, 642, 753, 64, 75.
        // x0.125 is x0.5 then a rounding shift by 2; the double rounding takes 531 -> 266 -> 67
        // and 75 -> 38 -> 10 where exact rounding would give 66 and 9: TFLite-Micro's result.
        assert_eq!(Padding::Same.output_and_pad(7, 3, 1, 2), Some((7, 2)));
        let column = s(1, 7, 1, 1);
        let io = (
            t(&[1, 2, 3, 4, 5, 6, 7], column),
            t(&[1, 10, 100], s(1, 3, 1, 1)),
        );
        let ws = (win(ONE, (2, 1), (2, 0)), stage(0, 0));
        let out = run_i8(ws, io, None, &[q(0.125)], column);
        assert_eq!(out, Ok(vec![39, 53, 67, 80, 94, 8, 10]));
    }

    #[test]
    fn pointwise_1x1_with_three_channels() {
        // Pixels [1,2,3], [-1,0,4], input_offset 1 -> [2,3,4], [0,1,5]. The five filters pick
        // each channel, sum them, and weigh [-1,2,-3]: acc 2,3,4,9,-8 and 0,1,5,6,-13. x1, -1.
        let filter = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, -1, 2, -3];
        let io = (
            t(&[1, 2, 3, -1, 0, 4], s(1, 1, 2, 3)),
            t(&filter, s(5, 1, 1, 3)),
        );
        let ws = (win(ONE, ONE, ZERO), stage(1, -1));
        let out = run_i8(ws, io, None, &[q(1.0)], s(1, 1, 2, 5));
        assert_eq!(out, Ok(vec![1, 2, 3, 8, -9, -1, 0, 4, 5, -14]));
    }

    #[test]
    fn one_pixel_images_batch_2_use_only_the_centre_tap() {
        // 3x3 SAME over a 1x1 image pads 1 on every side, so only the centre [2, 3] counts
        // (the 100s sit on padding). acc = 2*5 + 3*-3 + 4 = 5 and 2*-7 + 3*2 + 4 = -4.
        assert_eq!(Padding::Same.output_and_pad(1, 3, 1, 1), Some((1, 1)));
        let mut filter = vec![100i8; 18];
        filter[8..10].copy_from_slice(&[2, 3]);
        let io = (t(&[5, -3, -7, 2], s(2, 1, 1, 2)), t(&filter, s(1, 3, 3, 2)));
        let ws = (win(ONE, ONE, ONE), stage(0, 0));
        let out = run_i8(ws, io, Some(&[4]), &[q(1.0)], s(2, 1, 1, 1));
        assert_eq!(out, Ok(vec![5, -4]));
    }

    #[test]
    fn saturation_and_fused_activations() {
        // 1x1 conv; pixels [127,127], [-128,-128], [0,0]; filters [127,127], [-128,-128], [1,0].
        // acc 32258, -32512, 127 | -32512, 32768, -128 | 0, 0, 0; x1, then + zero point -100.
        // Scale 0.05: 6.0 is 120 steps above the zero point, so ReLU6 tops out at 20.
        let acts = [Activation::None, Activation::Relu, Activation::Relu6];
        let expected = [
            [127, -128, 27, -128, 127, -128, -100, -100, -100],
            [127, -100, 27, -100, 127, -100, -100, -100, -100],
            [20, -100, 20, -100, 20, -100, -100, -100, -100],
        ];
        for (act, expected) in acts.into_iter().zip(expected) {
            let mut st = stage(0, -100);
            (st.act_min, st.act_max) = act.int8_range(0.05, -100);
            let input = t(&[127, 127, -128, -128, 0, 0], s(1, 1, 3, 2));
            let io = (input, t(&[127, 127, -128, -128, 1, 0], s(3, 1, 1, 2)));
            let out = run_i8(
                (win(ONE, ONE, ZERO), st),
                io,
                None,
                &[q(1.0)],
                s(1, 1, 3, 3),
            );
            assert_eq!(out, Ok(expected.to_vec()), "{act:?}");
        }
    }

    #[test]
    fn matches_naive_reference_on_random_configs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..600 {
            let (y, x) = (random_axis(&mut rng), random_axis(&mut rng));
            let (n, ic, oc) = (rng.size(1, 2), rng.size(1, 6), rng.size(1, 5));
            let (is, fs) = (s(n, y.input, x.input, ic), s(oc, y.kernel, x.kernel, ic));
            let (input, filter) = (rng.i8s(len(is)), rng.i8s(len(fs)));
            let (st, bias, rq) = (rng.stage(), rng.bias(oc), rng.requant(oc));
            // Reference: pad with the zero point, then sum every tap in i64.
            let padded = pad_input(&input, is, y, x, (-st.input_offset) as i8);
            let mut want = Vec::new();
            for taps in all_taps(n, y, x) {
                for o in 0..oc {
                    let mut acc = bias.as_ref().map_or(0, |b| i64::from(b[o]));
                    for (&(p, k), c) in taps.iter().flat_map(|tap| (0..ic).map(move |c| (tap, c))) {
                        let v = i64::from(padded[p * ic + c]) + i64::from(st.input_offset);
                        acc += v * i64::from(filter[(o * y.kernel * x.kernel + k) * ic + c]);
                    }
                    want.push(reference_requant(acc, rq[o % rq.len()], &st));
                }
            }
            let io = (t(&input, is), t(&filter, fs));
            let os = s(n, y.output, x.output, oc);
            let got = run_i8(
                (Window::from_axes(&y, &x), st),
                io,
                bias.as_deref(),
                &rq,
                os,
            );
            assert_eq!(got, Ok(want), "case {case}: {y:?} {x:?}");
        }
    }

    #[test]
    fn f32_matches_f64_reference() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for case in 0..200 {
            let (y, x) = (random_axis(&mut rng), random_axis(&mut rng));
            let (n, ic, oc) = (rng.size(1, 2), rng.size(1, 5), rng.size(1, 4));
            let (is, fs) = (s(n, y.input, x.input, ic), s(oc, y.kernel, x.kernel, ic));
            let (input, filter, bias) = (rng.f32s(len(is)), rng.f32s(len(fs)), rng.f32s(oc));
            let clamp = [(-0.5, 0.75), Activation::None.f32_range()][case % 2];
            let os = s(n, y.output, x.output, oc);
            let mut got = vec![0f32; len(os)];
            let (w, io) = (Window::from_axes(&y, &x), (t(&input, is), t(&filter, fs)));
            let res = conv2d_f32(&w, clamp, io.0, io.1, Some(&bias), tm(&mut got, os));
            assert_eq!(res, Ok(()));
            let padded = pad_input(&input, is, y, x, 0.0);
            let mut got = got.into_iter();
            for taps in all_taps(n, y, x) {
                for o in 0..oc {
                    let (mut acc, mut mag) = (f64::from(bias[o]), f64::from(bias[o].abs()));
                    for (&(p, k), c) in taps.iter().flat_map(|tap| (0..ic).map(move |c| (tap, c))) {
                        let w = filter[(o * y.kernel * x.kernel + k) * ic + c];
                        let term = f64::from(padded[p * ic + c]) * f64::from(w);
                        acc += term;
                        mag += term.abs();
                    }
                    let want = acc.clamp(clamp.0.into(), clamp.1.into());
                    let g = got.next().unwrap();
                    assert!(close(g, want, mag), "case {case}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        // A valid 1x4x4x3 -> 1x2x2x2 SAME stride-2 conv, broken one way at a time.
        struct Case {
            w: Window,
            st: Int8Stage,
            shapes: [Shape4; 3],
            in_len: usize,
            bias: usize,
            rq: Vec<QuantizedMultiplier>,
        }
        type Edit = (fn(&mut Case), Result<(), Error>);
        let run = |edit: fn(&mut Case)| {
            let shapes = [s(1, 4, 4, 3), s(2, 3, 3, 3), s(1, 2, 2, 2)];
            let (w, st, rq) = (win((2, 2), ONE, ZERO), stage(0, 0), vec![q(0.5); 2]);
            let mut c = Case {
                w,
                st,
                shapes,
                in_len: 48,
                bias: 2,
                rq,
            };
            edit(&mut c);
            let [is, fs, os] = c.shapes;
            let (input, filter) = (vec![0i8; c.in_len], vec![0i8; fs.elements().unwrap_or(0)]);
            let (mut out, bias) = (vec![0i8; os.elements().unwrap_or(0)], vec![0; c.bias]);
            let (io, out) = ((t(&input, is), t(&filter, fs)), tm(&mut out, os));
            conv2d_i8(&c.w, &c.st, io.0, io.1, Some(&bias), &c.rq, out, &mut [])
        };
        assert_eq!(run(|_| {}), Ok(()));
        // Cropped (VALID, 1 row) and one-requant-for-all variants are fine too.
        assert_eq!(run(|c| c.shapes[2].h = 1), Ok(()));
        assert_eq!(run(|c| c.rq.truncate(1)), Ok(()));
        let cases: [Edit; 19] = [
            (
                |c| c.in_len = 47,
                Err(Error::LengthMismatch {
                    expected: 48,
                    actual: 47,
                }),
            ),
            (|c| c.shapes[0].n = usize::MAX, Err(Error::ShapeOverflow)),
            (|c| c.w.stride_w = 0, invalid(why!("window stride is zero"))),
            (
                |c| c.w.dilation_h = 0,
                invalid(why!("window dilation is zero")),
            ),
            (|c| c.w.pad_top = 3, invalid(conv_names().pad_top)),
            (
                |c| c.shapes[1].h = 0,
                invalid(why!("kernel height or width is zero")),
            ),
            (
                |c| c.shapes[1].c = 2,
                mismatch(why!("conv2d filter input channels"), 3, 2),
            ),
            (
                |c| c.shapes[2].c = 3,
                mismatch(why!("conv2d output channels"), 2, 3),
            ),
            (
                |c| c.shapes[2].n = 2,
                mismatch(why!("conv2d output batch"), 1, 2),
            ),
            // A third row would start past the input; zero rows is no output at all.
            (|c| c.shapes[2].h = 3, mismatch(conv_names().output_h, 2, 3)),
            (|c| c.shapes[2].w = 0, mismatch(conv_names().output_w, 2, 0)),
            (|c| c.bias = 3, mismatch(why!("conv2d bias length"), 2, 3)),
            (
                |c| c.rq.push(q(1.0)),
                mismatch(why!("conv2d requant length"), 2, 3),
            ),
            (
                |c| c.rq[1].shift = i32::MIN,
                invalid(why!("requant shift outside -31..=30")),
            ),
            (
                |c| c.st.input_offset = -128,
                invalid(why!("int8 input_offset outside -127..=128")),
            ),
            (
                |c| c.st.output_offset = 128,
                invalid(why!("int8 output_offset outside -128..=127")),
            ),
            (|c| c.st.act_min = 127, Ok(())),
            (|c| c.st.act_max = -128, Ok(())),
            (
                |c| (c.st.act_min, c.st.act_max) = (5, 4),
                invalid(why!("int8 activation range is empty (act_min > act_max)")),
            ),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            assert_eq!(run(edit), want, "case {i}");
        }
        // The f32 kernel shares the checks and refuses an empty clamp range.
        let f32_run = |clamp, is: Shape4| {
            let (one, w) = (s(1, 1, 1, 1), win(ONE, ONE, ZERO));
            let filter = t(&[1.0], chans(one, is.c));
            conv2d_f32(&w, clamp, t(&[1.0], is), filter, None, tm(&mut [0f32], one))
        };
        assert_eq!(f32_run((0.0, 1.0), s(1, 1, 1, 1)), Ok(()));
        let nan = invalid(why!("f32 clamp range is empty or NaN"));
        assert_eq!(f32_run((f32::NAN, 1.0), s(1, 1, 1, 1)), nan);
        let len_err = Err(Error::LengthMismatch {
            expected: 2,
            actual: 1,
        });
        assert_eq!(f32_run((0.0, 1.0), s(1, 1, 1, 2)), len_err);
    }
}
