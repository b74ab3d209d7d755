//! DEPTHWISE_CONV_2D: each input channel convolved with its own `depth_multiplier` filters.
//!
//! Output channel `oc = ic * depth_multiplier + m` reads only input channel `ic`, with filter
//! column `oc` of a `[1, kh, kw, in_c * depth_multiplier]` filter. The int8 kernel reproduces
//! TFLite-Micro's reference `DepthwiseConvPerChannel` bit for bit; padding and window rules
//! are those of [`conv2d`](super::conv2d).

use super::conv2d::{same, Geometry, WindowNames};
use super::depthwise_column;
use super::depthwise_fast;
use super::depthwise_plane;
use super::lower::{LowerError, Lowering};
use super::operator::{Io, KernelPaths, Operator, Views, Weighted};
use super::output_stage::{check_clamp, check_int8, clamp_f32, requantize};
use super::record::record_params;
use super::KernelPath;
use super::{Int8Stage, Requant, Shape4, Tensor, TensorMut, Window};
use crate::format::DType;
use crate::format::OpCode;
use crate::model::{Decoder, Model};
use crate::Error;

/// Int8 depthwise convolution, bit-exact with TFLite-Micro's reference
/// `DepthwiseConvPerChannel`.
///
/// `filter` is `[1, kh, kw, in_c * depth_multiplier]` with zero point 0; `requant` holds one
/// multiplier per output channel, or a single one for all of them. `scratch` (word-aligned,
/// [`scratch_bytes`] long) holds the fast kernel's row ring; with less, or when the fast
/// kernel does not apply, the reference kernel runs (same outputs).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_i8(
    window: &Window,
    depth_multiplier: usize,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    let (dm, bias_len) = (depth_multiplier, bias.map(<[i32]>::len));
    check_depthwise(window, dm, &input, &filter, &output, bias_len)?;
    let what = why!("depthwise_conv2d requant length");
    check_int8(stage, requant, output.shape.c, what)?;
    depthwise_conv2d_i8_decoded(
        window, dm, stage, input, filter, bias, requant, output, scratch,
    )
}

/// [`depthwise_conv2d_i8`] for a layer the model's decoder validated (the interpreter's
/// path): the buffer, channel and constant checks it already made are only debug-asserted
/// here, which keeps a second copy of them out of flash. No memory access rests on them:
/// every loop bounds its own reads and writes by the slices it is given.
#[allow(clippy::too_many_arguments)]
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub(crate) fn depthwise_conv2d_i8_decoded(
    window: &Window,
    dm: usize,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    super::built(OpCode::DepthwiseConv2d)?;
    let bias_len = bias.map(<[i32]>::len);
    debug_assert_eq!(
        check_buffers(dm, &input, &filter, &output, bias_len),
        Ok(())
    );
    let what = why!("depthwise_conv2d requant length");
    debug_assert_eq!(check_int8(stage, requant, output.shape.c, what), Ok(()));
    let kernel = (filter.shape.h, filter.shape.w);
    let checked = Geometry::new(&names(), window, input.shape, kernel, output.shape);
    debug_assert!(checked.is_ok(), "{checked:?}");
    let g = Geometry::decoded(window, input.shape, kernel, output.shape);
    let (i, f, out) = (input.data, filter.data, &mut *output.data);
    let ran = match path(window, dm, input.shape, filter.shape, output.shape) {
        Path::Groups(_) => {
            depthwise_fast::depthwise(&g, dm, stage, i, f, bias, requant, out, scratch)
        }
        Path::Plane(_) => {
            depthwise_plane::depthwise(&g, dm, stage, i, f, bias, requant, out, scratch)
        }
        Path::Column(_) => {
            depthwise_column::depthwise(&g, dm, stage, i, f, bias, requant, out, scratch)
        }
        Path::Reference => false,
    };
    if ran {
        return Ok(());
    }
    super::reference_built()?;
    reference_i8(&g, dm, stage, input, filter, bias, requant, output)
}

/// The kernel a layer runs, with its scratch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Four channels at a time (`depthwise_fast`).
    Groups(usize),
    /// A channel at a time (`depthwise_plane`, feature `kernel-depthwise-plane`).
    Plane(usize),
    /// `H x 1` or `1 x W` maps, four channels at a time (`depthwise_column`, feature
    /// `kernel-depthwise-plane`).
    Column(usize),
    /// The reference kernel, without scratch.
    Reference,
}

/// Which kernel runs a layer: the four-channel one for the 3x3 layers its assembly row kernel
/// takes, else the column one for the `H x 1` and `1 x W` maps it takes, else the
/// channel-at-a-time one where its scratch is small enough, else the four-channel one where
/// it applies, else the reference kernel.
fn path(window: &Window, dm: usize, input: Shape4, filter: Shape4, output: Shape4) -> Path {
    let kernel = (filter.h, filter.w);
    let ring = depthwise_fast::ring(window, kernel, (input.w, output.w), dm, filter.c);
    let groups = ring.map(|ring| depthwise_fast::scratch_len(ring, filter.h * filter.w));
    let general = depthwise_fast::takes_general(window, kernel, groups.is_some());
    if let (Some(need), false) = (groups, general) {
        return Path::Groups(need);
    }
    // (No line is a 3x3 layer: the check above never takes one.)
    let (ins, outs) = ((input.h, input.w), (output.h, output.w));
    if let Some(line) = depthwise_column::Line::new(window, dm, kernel, ins, outs, filter.c) {
        return Path::Column(line.scratch_len());
    }
    let plan = depthwise_plane::Plan::new(window, kernel, (input.h, input.w), (output.h, output.w));
    match (plan.and_then(|p| p.scratch_len(dm)), groups) {
        (Some(need), _) => Path::Plane(need),
        (None, Some(need)) => Path::Groups(need),
        (None, None) => Path::Reference,
    }
}

/// Scratch bytes [`depthwise_conv2d_i8`]'s fast kernels need (0 where none applies): for the
/// four-channel kernel a ring of input rows, a word per pixel, and a group's constants and
/// widened taps; for the channel-at-a-time one a ring of widened rows of one channel, its
/// output channels' weights and output stages.
pub fn scratch_bytes(
    window: &Window,
    depth_multiplier: usize,
    input: Shape4,
    filter: Shape4,
    output: Shape4,
) -> usize {
    match path(window, depth_multiplier, input, filter, output) {
        Path::Groups(need) | Path::Plane(need) | Path::Column(need) => need,
        Path::Reference => 0,
    }
}

/// [`depthwise_conv2d_i8`] computed the way TFLite-Micro's reference kernel does, one multiply
/// at a time: the specification the fast path is tested against, and its fallback.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_i8_reference(
    window: &Window,
    depth_multiplier: usize,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    let (dm, bias_len) = (depth_multiplier, bias.map(<[i32]>::len));
    let g = check_depthwise(window, dm, &input, &filter, &output, bias_len)?;
    let what = why!("depthwise_conv2d requant length");
    check_int8(stage, requant, output.shape.c, what)?;
    reference_i8(&g, dm, stage, input, filter, bias, requant, output)
}

#[allow(clippy::too_many_arguments)]
fn reference_i8(
    g: &Geometry,
    dm: usize,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    let in_c = input.shape.c;
    g.for_each_pixel(output.data, |pixel, taps| {
        let out_c = pixel.len();
        for (oc, (out, q)) in pixel.iter_mut().zip(requant.iter().cycle()).enumerate() {
            let ic = oc / dm;
            let mut acc = 0i32;
            for (p, k) in taps.iter() {
                let x = i32::from(input.data[p * in_c + ic]) + stage.input_offset;
                // In range after check_int8: |x| <= 256, so the product fits easily.
                acc = acc.wrapping_add(x * i32::from(filter.data[k * out_c + oc]));
            }
            *out = requantize(acc.wrapping_add(bias.map_or(0, |b| b[oc])), *q, stage);
        }
        Ok(())
    })
}

/// f32 depthwise convolution, as TFLite's reference float kernel: taps summed in order, then
/// the bias added, then the result clamped to `clamp = (min, max)`.
pub fn depthwise_conv2d_f32(
    window: &Window,
    depth_multiplier: usize,
    clamp: (f32, f32),
    input: Tensor<f32>,
    filter: Tensor<f32>,
    bias: Option<&[f32]>,
    output: TensorMut<f32>,
) -> Result<(), Error> {
    let (dm, bias_len) = (depth_multiplier, bias.map(<[f32]>::len));
    let g = check_depthwise(window, dm, &input, &filter, &output, bias_len)?;
    check_clamp(clamp)?;
    let in_c = input.shape.c;
    g.for_each_pixel(output.data, |pixel, taps| {
        let out_c = pixel.len();
        for (oc, out) in pixel.iter_mut().enumerate() {
            let ic = oc / dm;
            let mut acc = 0.0f32;
            for (p, k) in taps.iter() {
                acc += input.data[p * in_c + ic] * filter.data[k * out_c + oc];
            }
            *out = clamp_f32(acc + bias.map_or(0.0, |b| b[oc]), clamp);
        }
        Ok(())
    })
}

fn names() -> WindowNames {
    WindowNames {
        output_h: why!("depthwise_conv2d output height (at most ceil((in + pad_top) / stride))"),
        output_w: why!("depthwise_conv2d output width (at most ceil((in + pad_left) / stride))"),
        pad_top: why!("depthwise_conv2d pad_top must be smaller than the dilated kernel height"),
        pad_left: why!("depthwise_conv2d pad_left must be smaller than the dilated kernel width"),
    }
}

/// Validates a depthwise convolution's buffers and shapes; returns its window geometry.
fn check_depthwise<T>(
    window: &Window,
    dm: usize,
    input: &Tensor<T>,
    filter: &Tensor<T>,
    output: &TensorMut<T>,
    bias_len: Option<usize>,
) -> Result<Geometry, Error> {
    check_buffers(dm, input, filter, output, bias_len)?;
    let (i, f, o) = (input.shape, filter.shape, output.shape);
    Geometry::new(&names(), window, i, (f.h, f.w), o)
}

/// Validates a depthwise convolution's buffer lengths, depth multiplier and channel counts
/// (not its window).
fn check_buffers<T>(
    dm: usize,
    input: &Tensor<T>,
    filter: &Tensor<T>,
    output: &TensorMut<T>,
    bias_len: Option<usize>,
) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    filter.shape.check_len(filter.data.len())?;
    output.shape.check_len(output.data.len())?;
    if dm == 0 {
        return Err(Error::InvalidParameter {
            what: why!("depthwise_conv2d depth_multiplier is zero"),
        });
    }
    let (i, f, o) = (input.shape, filter.shape, output.shape);
    let out_c = i.c.checked_mul(dm).ok_or(Error::ShapeOverflow)?;
    same(why!("depthwise_conv2d filter batch"), 1, f.n)?;
    let what = why!("depthwise_conv2d filter channels (in_c * depth_multiplier)");
    same(what, out_c, f.c)?;
    let what = why!("depthwise_conv2d output channels (in_c * depth_multiplier)");
    same(what, out_c, o.c)?;
    same(why!("depthwise_conv2d output batch"), i.n, o.n)?;
    if let Some(len) = bias_len {
        same(why!("depthwise_conv2d bias length"), out_c, len)?;
    }
    Ok(())
}

record_params! {
    /// DEPTHWISE_CONV_2D's record parameters.
    pub struct DepthwiseConv2dParams {
        /// Strides, dilation, padding.
        pub window: Window,
        /// Zero points and clamp.
        pub stage: Int8Stage,
        /// Output channels per input channel.
        pub depth_multiplier: usize,
    }
}

/// DEPTHWISE_CONV_2D, decoded.
pub type DepthwiseConv2d<'a> = Weighted<'a, DepthwiseConv2dParams>;

impl<'a> Operator<'a> for DepthwiseConv2d<'a> {
    type Params = DepthwiseConv2dParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 3;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let (filter, f) = cx.weights()?;
        let f = f.shape;
        // Derived rather than read: some converters write a wrong multiplier.
        let in_c = cx.tensor(input)?.shape.c;
        if in_c == 0 || f.c % in_c != 0 {
            return Err(LowerError::Unsupported {
                what: "the filter's channels are not a multiple of the input's",
            });
        }
        let o = *cx.options();
        let window = cx.window(input, (f.h, f.w), (o.dilation_h, o.dilation_w), f.c)?;
        let stage = cx.int8_stage(input, o.activation)?;
        cx.channel_requant((input, filter), f.c, true)?;
        cx.params(&DepthwiseConv2dParams {
            window,
            stage,
            depth_multiplier: f.c / in_c,
        })
    }

    fn decode(d: &Decoder<'_, 'a>, params: DepthwiseConv2dParams) -> Self {
        let input = d.activation(0, DType::I8);
        let filter = d.weights(1);
        let output = d.output(DType::I8);
        let channels = input.shape.c.checked_mul(params.depth_multiplier);
        d.check(
            filter.shape.n == 1 && Some(filter.shape.c) == channels,
            why!("filter channels must be input channels x depth multiplier"),
        );
        d.check(
            output.shape.c == filter.shape.c,
            why!("output channels differ from the filter's"),
        );
        let kernel = (filter.shape.h, filter.shape.w);
        d.check_spatial(&params.window, kernel, input.shape, output.shape);
        let channels = filter.shape.c;
        let tensors = (input.index, filter, output.index);
        Weighted::decoded(d, params, tensors, &[channels])
    }

    fn io(&self) -> Option<Io> {
        Some(Weighted::io(self))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let p = &self.params;
        depthwise_conv2d_i8_decoded(
            &p.window,
            p.depth_multiplier,
            &p.stage,
            v.inputs[0],
            self.weights,
            self.bias,
            self.requant,
            v.output,
            v.scratch,
        )
    }

    fn scratch_need(&self, model: &Model<'a>) -> Result<Option<usize>, Error> {
        let (input, output) = (model.tensor(self.input)?, model.tensor(self.output)?);
        let p = &self.params;
        let filter = self.weights.shape;
        let multiplier = p.depth_multiplier;
        Ok(
            match scratch_bytes(&p.window, multiplier, input.shape, filter, output.shape) {
                0 => None,
                need => Some(need),
            },
        )
    }

    fn macs(&self, model: &Model<'a>) -> Result<u64, Error> {
        let outputs = model.tensor(self.output)?.shape.elements().unwrap_or(0);
        let f = self.weights.shape;
        Ok((outputs as u64) * (f.h * f.w) as u64)
    }

    fn needs_reference(&self, model: &Model<'a>) -> Result<bool, Error> {
        Ok(self.runs_reference(self.scratch_need(model)?))
    }

    fn kernel_paths(&self, model: &Model<'a>, paths: &mut KernelPaths) -> Result<(), Error> {
        let (input, output) = (model.tensor(self.input)?, model.tensor(self.output)?);
        let (p, f) = (&self.params, self.weights.shape);
        let chosen = path(&p.window, p.depth_multiplier, input.shape, f, output.shape);
        let fast = matches!(chosen, Path::Groups(_));
        let plane = matches!(chosen, Path::Plane(_) | Path::Column(_));
        paths.take(KernelPath::DepthwisePlane, plane);
        let kernel = (f.h, f.w);
        let general = depthwise_fast::takes_general(&p.window, kernel, fast);
        paths.take(KernelPath::DepthwiseGeneral, general);
        let consts = (self.bias, self.requant, f.c);
        let fix = depthwise_fast::takes_fix(&p.window, kernel, &p.stage, consts, fast);
        paths.take(KernelPath::DepthwiseFix, fix);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, Padding, Shape4};
    use crate::quant::QuantizedMultiplier;
    use crate::test_support::*;
    use std::vec::Vec;

    fn run_i8(
        (w, dm, st): (Window, usize, Int8Stage),
        (input, filter): (Tensor<i8>, Tensor<i8>),
        bias: Option<&[i32]>,
        rq: &[QuantizedMultiplier],
        os: Shape4,
    ) -> Result<Vec<i8>, Error> {
        let mut out = vec![0i8; len(os)];
        let need = scratch_bytes(&w, dm, input.shape, filter.shape, os);
        let mut words = vec![0u32; need.div_ceil(4)];
        let scratch = crate::cast::words_as_bytes_mut(&mut words);
        depthwise_conv2d_i8(
            &w,
            dm,
            &st,
            input,
            filter,
            bias,
            rq,
            tm(&mut out, os),
            scratch,
        )?;
        Ok(out)
    }

    #[test]
    fn depth_multiplier_2_with_same_padding_and_stride_2() {
        // 3x3 image, 1 channel, q = 0..8, input_offset 1 -> rows 1 2 3 / 4 5 6 / 7 8 9.
        // 2x2 kernel, stride 2, SAME: out 2x2, total pad 1 -> pad_top 0, implicit pad at the end.
        assert_eq!(Padding::Same.output_and_pad(3, 2, 2, 1), Some((2, 0)));
        let input: Vec<i8> = (0..9).collect();
        // Filter [1, kh, kw, 2]: oc0 = all ones, oc1 = [[1, -1], [0, 2]].
        // oc0: 1+2+4+5 = 12, 3+6 = 9, 7+8 = 15, 9.   oc1: 1-2+10 = 9, 3 = 3, 7-8 = -1, 9.
        let filter = [1, 1, 1, -1, 1, 0, 1, 2];
        // Bias [0, 5]; oc0 x1, oc1 x0.5 (14 -> 7, 8 -> 4, 4 -> 2, 14 -> 7); zero point -3.
        let io = (t(&input, s(1, 3, 3, 1)), t(&filter, s(1, 2, 2, 2)));
        let (wds, rq) = ((win((2, 2), ONE, ZERO), 2, stage(1, -3)), [q(1.0), q(0.5)]);
        let out = run_i8(wds, io, Some(&[0, 5]), &rq, s(1, 2, 2, 2));
        assert_eq!(out, Ok(vec![9, 4, 6, 1, 12, -1, 6, 4]));
    }

    #[test]
    fn depth_multiplier_3_with_kx1_kernel_and_dilation_2() {
        // 5x1 column, 2 channels: [1,-1] [2,-2] [3,-3] [4,-4] [5,-5], input_offset 0.
        // 2x1 kernel, dilation 2 (extent 3), VALID: out 3, acc[i] = w0 x[i] + w1 x[i+2].
        // oc = ic*3 + m. Taps w0 / w1 per oc: [1,1,0,1,2,-1] / [1,-1,1,0,0,1].
        let input = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5];
        let filter = [1, 1, 0, 1, 2, -1, 1, -1, 1, 0, 0, 1];
        // i=0: ic0 (1, 3): 4, -2, 3; ic1 (-1, -3): -1, -2, -2.
        // i=1: ic0 (2, 4): 6, -2, 4; ic1 (-2, -4): -2, -4, -2.
        // i=2: ic0 (3, 5): 8, -2, 5; ic1 (-3, -5): -3, -6, -2. x1, zero point 0.
        let io = (t(&input, s(1, 5, 1, 2)), t(&filter, s(1, 2, 1, 6)));
        let wds = (win(ONE, (2, 1), ZERO), 3, stage(0, 0));
        let out = run_i8(wds, io, None, &[q(1.0)], s(1, 3, 1, 6));
        let want = [
            4, -2, 3, -1, -2, -2, 6, -2, 4, -2, -4, -2, 8, -2, 5, -3, -6, -2,
        ];
        assert_eq!(out, Ok(want.to_vec()));
    }

    #[test]
    fn saturation_and_relu6_on_a_1x1_image_batch_2() {
        // 3x3 SAME on 1x1 images: only the centre taps [127, -127] count. Batch 0 is 127s,
        // batch 1 is -128s: acc 16129, -16129 | -16256, 16256, x1, + zero point 5 -> clamp.
        let mut filter = vec![50i8; 18];
        filter[8..10].copy_from_slice(&[127, -127]);
        let io = (
            t(&[127, 127, -128, -128], s(2, 1, 1, 2)),
            t(&filter, s(1, 3, 3, 2)),
        );
        let mut st = stage(0, 5);
        (st.act_min, st.act_max) = Activation::Relu6.int8_range(0.1, 5); // (5, 65)
        let out = run_i8(
            (win(ONE, ONE, ONE), 1, st),
            io,
            None,
            &[q(1.0)],
            s(2, 1, 1, 2),
        );
        assert_eq!(out, Ok(vec![65, 5, 5, 65]));
    }

    #[test]
    fn matches_naive_reference_on_random_configs() {
        let mut rng = Rng(0x5eed_0fda_7a01);
        for case in 0..600 {
            let (y, x) = (random_axis(&mut rng), random_axis(&mut rng));
            let (n, ic, dm) = (rng.size(1, 2), rng.size(1, 7), rng.size(1, 3));
            let oc = ic * dm;
            let (is, fs) = (s(n, y.input, x.input, ic), s(1, y.kernel, x.kernel, oc));
            let (input, filter) = (rng.i8s(len(is)), rng.i8s(len(fs)));
            let (st, bias, rq) = (rng.stage(), rng.bias(oc), rng.requant(oc));
            let padded = pad_input(&input, is, y, x, (-st.input_offset) as i8);
            let mut want = Vec::new();
            for taps in all_taps(n, y, x) {
                for o in 0..oc {
                    let mut acc = bias.as_ref().map_or(0, |b| i64::from(b[o]));
                    for &(p, k) in &taps {
                        let v = i64::from(padded[p * ic + o / dm]) + i64::from(st.input_offset);
                        acc += v * i64::from(filter[k * oc + o]);
                    }
                    want.push(reference_requant(acc, rq[o % rq.len()], &st));
                }
            }
            let io = (t(&input, is), t(&filter, fs));
            let os = s(n, y.output, x.output, oc);
            let got = run_i8(
                (Window::from_axes(&y, &x), dm, st),
                io,
                bias.as_deref(),
                &rq,
                os,
            );
            assert_eq!(got, Ok(want), "case {case}: {y:?} {x:?} dm={dm}");
        }
    }

    #[test]
    fn f32_matches_f64_reference() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for case in 0..200 {
            let (y, x) = (random_axis(&mut rng), random_axis(&mut rng));
            let (n, ic, dm) = (rng.size(1, 2), rng.size(1, 5), rng.size(1, 3));
            let oc = ic * dm;
            let (is, fs) = (s(n, y.input, x.input, ic), s(1, y.kernel, x.kernel, oc));
            let (input, filter, bias) = (rng.f32s(len(is)), rng.f32s(len(fs)), rng.f32s(oc));
            let clamp = [(-0.5, 0.75), Activation::None.f32_range()][case % 2];
            let os = s(n, y.output, x.output, oc);
            let mut got = vec![0f32; len(os)];
            let (w, io) = (Window::from_axes(&y, &x), (t(&input, is), t(&filter, fs)));
            let out = tm(&mut got, os);
            let res = depthwise_conv2d_f32(&w, dm, clamp, io.0, io.1, Some(&bias), out);
            assert_eq!(res, Ok(()));
            let padded = pad_input(&input, is, y, x, 0.0);
            let mut got = got.into_iter();
            for taps in all_taps(n, y, x) {
                for o in 0..oc {
                    let (mut acc, mut mag) = (f64::from(bias[o]), f64::from(bias[o].abs()));
                    for &(p, k) in &taps {
                        let term =
                            f64::from(padded[p * ic + o / dm]) * f64::from(filter[k * oc + o]);
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
        // A valid 1x3x3x2 -> 1x3x3x4 SAME 3x3 depthwise conv (multiplier 2), broken one way at a time.
        struct Case {
            dm: usize,
            shapes: [Shape4; 3],
            in_len: usize,
            bias: usize,
            rq: usize,
        }
        type Edit = (fn(&mut Case), Result<(), Error>);
        let run = |edit: fn(&mut Case)| {
            let shapes = [s(1, 3, 3, 2), s(1, 3, 3, 4), s(1, 3, 3, 4)];
            let mut c = Case {
                dm: 2,
                shapes,
                in_len: 18,
                bias: 4,
                rq: 4,
            };
            edit(&mut c);
            let [is, fs, os] = c.shapes;
            let (input, filter) = (vec![0i8; c.in_len], vec![0i8; fs.elements().unwrap_or(0)]);
            let (mut out, bias) = (vec![0i8; os.elements().unwrap_or(0)], vec![0; c.bias]);
            let (io, out) = ((t(&input, is), t(&filter, fs)), tm(&mut out, os));
            let (w, rq) = (win(ONE, ONE, ONE), vec![q(0.5); c.rq]);
            depthwise_conv2d_i8(
                &w,
                c.dm,
                &stage(0, 0),
                io.0,
                io.1,
                Some(&bias),
                &rq,
                out,
                &mut [],
            )
        };
        assert_eq!(run(|_| {}), Ok(()));
        assert_eq!(run(|c| c.rq = 1), Ok(()));
        let dm = why!("depthwise_conv2d filter channels (in_c * depth_multiplier)");
        let cases: [Edit; 10] = [
            (
                |c| c.in_len = 17,
                Err(Error::LengthMismatch {
                    expected: 18,
                    actual: 17,
                }),
            ),
            (
                |c| c.dm = 0,
                invalid(why!("depthwise_conv2d depth_multiplier is zero")),
            ),
            (|c| c.dm = usize::MAX, Err(Error::ShapeOverflow)),
            (|c| c.dm = 3, mismatch(dm, 6, 4)),
            (
                |c| c.shapes[1].n = 2,
                mismatch(why!("depthwise_conv2d filter batch"), 1, 2),
            ),
            (
                |c| c.shapes[2].c = 6,
                mismatch(
                    why!("depthwise_conv2d output channels (in_c * depth_multiplier)"),
                    4,
                    6,
                ),
            ),
            (|c| c.shapes[2].h = 5, mismatch(names().output_h, 4, 5)),
            (|c| c.shapes[1].w = 1, invalid(names().pad_left)),
            (
                |c| c.bias = 2,
                mismatch(why!("depthwise_conv2d bias length"), 4, 2),
            ),
            (
                |c| c.rq = 2,
                mismatch(why!("depthwise_conv2d requant length"), 4, 2),
            ),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            assert_eq!(run(edit), want, "case {i}");
        }
        let f32_run = |dm| {
            let (one, w, mut out) = (s(1, 1, 1, 1), win(ONE, ONE, ZERO), [0f32]);
            let (input, filter) = (t(&[1.0], one), t(&[1.0], one));
            let clamp = (0.0, 1.0);
            depthwise_conv2d_f32(&w, dm, clamp, input, filter, None, tm(&mut out, one))
        };
        assert_eq!(f32_run(1), Ok(()));
        assert_eq!(f32_run(2), mismatch(dm, 2, 1));
    }
}
