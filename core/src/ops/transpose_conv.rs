//! TRANSPOSE_CONV: the transposed 2-D convolution Keras' Conv2DTranspose converts to, int8 with
//! per-channel weights, bit-exact with TFLite-Micro's `reference_integer_ops::TransposeConv`.
//!
//! TFLite-Micro scatters: each input pixel adds its products with every filter tap into an
//! int32 accumulator the size of the output, then each accumulator is requantized. mote
//! gathers instead: each output pixel sums the products that land on it, then requantizes.
//! Both sum the same int32 products with wrapping adds, which do not depend on the order, so
//! the outputs are the same, without TFLite-Micro's 4-bytes-per-output scratch.
//!
//! Input `(iy, ix)` and filter tap `(ky, kx)` land on output `(iy * stride_h - pad_top + ky,
//! ix * stride_w - pad_left + kx)`; the paddings are TFLite's `ComputePaddingHeightWidth` with
//! the output's size in the role of a convolution's input.

use super::lower::{LowerError, Lowering, TfOptions};
use super::operator::{Io, Operator, Views};
use super::output_stage::{check_int8, requantize};
use super::record::record_params;
use super::simd;
use super::{Int8Stage, Padding, Requant, Shape4, Tensor, TensorMut, Window};
use crate::cast;
use crate::format::{DType, OpCode, Storage};
use crate::model::{Decoder, Model, Scratch};
use crate::{Error, Why};

record_params! {
    /// TRANSPOSE_CONV's record parameters; one requantization constant per output channel.
    pub struct TransposeConvParams {
        /// Strides and the padding above and left of the output (dilations are 1).
        pub window: Window,
        /// Zero points and the fused activation's clamp.
        pub stage: Int8Stage,
    }
}

/// TRANSPOSE_CONV, decoded: constants borrowed from the blob, activations by tensor index.
#[derive(Debug, Clone, Copy)]
pub struct TransposeConv<'a> {
    /// Window and output stage.
    pub params: TransposeConvParams,
    /// Input tensor.
    pub input: u16,
    /// Weights, OHWI.
    pub weights: Tensor<'a, i8>,
    /// Bias per output channel.
    pub bias: Option<&'a [i32]>,
    /// Requantization per output channel.
    pub requant: Requant<'a>,
    /// Output tensor.
    pub output: u16,
    /// The fast path's working memory.
    pub scratch: Scratch,
}

/// TFLite's padding before the input along one axis (`ComputePaddingWithOffset`) for a kernel
/// of `kernel` taps over `size` with `stride`, computed in C's int arithmetic. `None` for
/// explicit padding, which TFLite's TRANSPOSE_CONV does not have.
pub fn tflite_padding(
    padding: Padding,
    size: usize,
    kernel: usize,
    stride: usize,
) -> Option<usize> {
    let (size, kernel, stride) = (size as i64, kernel as i64, stride.max(1) as i64);
    let out = match padding {
        Padding::Same => (size + stride - 1) / stride,
        Padding::Valid => (size + stride - kernel) / stride,
        Padding::Explicit { .. } => return None,
    };
    Some(((out - 1) * stride + kernel - size).max(0) as usize / 2)
}

/// Whether the shapes and window make a transposed convolution the kernel can run.
pub fn check(window: &Window, input: Shape4, filter: Shape4, output: Shape4) -> Result<(), Why> {
    if filter.c != input.c {
        return Err(why!(
            "filter input channels differ from the input's channels"
        ));
    }
    if filter.n != output.c {
        return Err(why!(
            "filter output channels differ from the output's channels"
        ));
    }
    if input.n != output.n {
        return Err(why!("batch of input and output differ"));
    }
    if window.dilation_h != 1 || window.dilation_w != 1 {
        return Err(why!("TRANSPOSE_CONV has no dilation"));
    }
    if window.stride_h == 0 || window.stride_w == 0 {
        return Err(why!("window stride is zero"));
    }
    let fits = output.h.checked_add(window.pad_top).is_some()
        && output.w.checked_add(window.pad_left).is_some();
    match fits {
        true => Ok(()),
        false => Err(why!("TRANSPOSE_CONV output too large")),
    }
}

impl<'a> Operator<'a> for TransposeConv<'a> {
    type Params = TransposeConvParams;
    type In = i8;
    type Out = i8;
    /// TFLite's order: the output shape, the weights, the input, the bias.
    const INPUTS: usize = 4;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(2)?;
        let filter = cx.input(1)?;
        let f = cx.typed(filter, DType::I8, "weights")?;
        if let Some(bias) = cx.optional(3)? {
            cx.typed(bias, DType::I32, "bias")?;
        }
        let i = cx.tensor(input)?;
        let out = cx.tensor(cx.output())?;
        let unsupported = |what| Err(LowerError::Unsupported { what });
        if i.dims.len() != 4 || f.dims.len() != 4 || out.dims.len() != 4 {
            return unsupported("TRANSPOSE_CONV takes 4-D input, weights and output");
        }
        let shape = cx.tensor(cx.input(0)?)?.i32_data;
        let dims = out.dims.iter().map(|&d| i64::try_from(d).unwrap_or(-1));
        if !shape.is_some_and(|s| s.iter().map(|&d| i64::from(d)).eq(dims)) {
            return unsupported(
                "TRANSPOSE_CONV's output shape must be a constant equal to the output's",
            );
        }
        let (f, o) = (f.shape, out.shape);
        cx.expect_output(Shape4::new(i.shape.n, o.h, o.w, f.n))?;
        let opts = *cx.options();
        let window = lowered_window(cx.options(), f, o)?;
        check(&window, i.shape, f, o).map_err(|why| LowerError::Unsupported {
            what: why.text().unwrap_or("unsupported TRANSPOSE_CONV"),
        })?;
        let stage = cx.int8_stage(input, opts.activation)?;
        cx.channel_requant((input, filter), f.n, true)?;
        cx.params(&TransposeConvParams { window, stage })
    }

    fn decode(d: &Decoder<'_, 'a>, params: TransposeConvParams) -> Self {
        // The output shape (input 0) only repeats the output tensor's, as the lowering checked.
        d.tensor(0, DType::I32, Storage::Constant);
        let filter = d.weights(1);
        let input = d.activation(2, DType::I8);
        let output = d.output(DType::I8);
        if let Err(why) = check(&params.window, input.shape, filter.shape, output.shape) {
            d.reject(why);
        }
        let channels = filter.shape.n;
        TransposeConv {
            params,
            input: input.index,
            weights: filter,
            bias: d.bias(3, channels),
            requant: d.requant(&[channels]),
            output: output.index,
            scratch: d.scratch(),
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, self.scratch))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let p = &self.params;
        let (weights, bias, requant) = (self.weights, self.bias, self.requant);
        let (input, output, scratch) = (v.inputs[0], v.output, v.scratch);
        transpose_conv_i8(
            &p.window, &p.stage, input, weights, bias, requant, output, scratch,
        )
    }

    fn scratch_need(&self, _: &Model<'a>) -> Result<Option<usize>, Error> {
        let f = self.weights.shape;
        Ok(Some(scratch_bytes(f.c, f.n)))
    }

    fn macs(&self, model: &Model<'a>) -> Result<u64, Error> {
        let inputs = model.tensor(self.input)?.shape.elements().unwrap_or(0);
        let f = self.weights.shape;
        Ok(inputs as u64 * (f.h * f.w * f.n) as u64)
    }
}

/// The window TFLite-Micro's Prepare computes from the options, for filter `f` and output `o`.
fn lowered_window(opts: &TfOptions, f: Shape4, o: Shape4) -> Result<Window, LowerError> {
    let pad = |size, kernel, stride| {
        tflite_padding(opts.padding, size, kernel, stride).ok_or(LowerError::Unsupported {
            what: "TRANSPOSE_CONV with explicit padding",
        })
    };
    let window = Window {
        stride_h: opts.stride_h,
        stride_w: opts.stride_w,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: pad(o.h, f.h, opts.stride_h)?,
        pad_left: pad(o.w, f.w, opts.stride_w)?,
    };
    let w = &window;
    match [w.stride_h, w.stride_w, w.pad_top, w.pad_left]
        .iter()
        .all(|&v| v <= 0xFFFF)
    {
        true => Ok(window),
        false => Err(LowerError::Unsupported {
            what: "TRANSPOSE_CONV strides and paddings above 65535",
        }),
    }
}

/// The filter taps along one axis that land on one output position: taps `first_k + j *
/// stride` read inputs `first_i - j`, for `j` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Taps {
    first_k: usize,
    first_i: usize,
    count: usize,
}

impl Taps {
    /// The taps of a `kernel` with `stride` over `input` that land on output `at`, `pad`
    /// being the padding before the input (no overflow: the decoder checked `at + pad`).
    fn new(at: usize, pad: usize, stride: usize, kernel: usize, input: usize) -> Self {
        let (t, stride) = (at + pad, stride.max(1));
        let (k0, i0) = (t % stride, t / stride);
        let Some(last) = input.checked_sub(1) else {
            return Taps {
                first_k: 0,
                first_i: 0,
                count: 0,
            };
        };
        // Tap k0 + j * stride reads input i0 - j: it must be at most `last` and at least 0.
        let skip = i0.saturating_sub(last);
        let end = kernel.saturating_sub(k0).div_ceil(stride).min(i0 + 1);
        Taps {
            first_k: k0 + skip * stride,
            first_i: i0.saturating_sub(skip),
            count: end.saturating_sub(skip),
        }
    }

    /// `(tap, input index)` pairs.
    fn iter(self, stride: usize) -> impl Iterator<Item = (usize, usize)> {
        (0..self.count).map(move |j| (self.first_k + j * stride, self.first_i - j))
    }
}

/// Scratch bytes the fast path needs for `in_c` input and `out_c` output channels: one output
/// pixel's int32 sums and one input pixel's whole words widened to q15.
pub fn scratch_bytes(in_c: usize, out_c: usize) -> usize {
    (out_c * 4).next_multiple_of(8) + (in_c / 4) * 8
}

/// The int8 kernel. `filter` is OHWI with zero point 0; `requant` holds one constant per
/// output channel (or one for all). Each output is
/// `clamp(requant[oc].apply(sum((input + input_offset) * filter) + bias[oc]) + output_offset)`.
/// With [`scratch_bytes`] of word-aligned `scratch` it runs four output channels at a time in
/// DSP instructions; with less, one product at a time (the same outputs).
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn transpose_conv_i8(
    window: &Window,
    stage: &Int8Stage,
    input: Tensor<i8>,
    filter: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    mut scratch: &mut [u8],
) -> Result<(), Error> {
    super::built(OpCode::TransposeConv)?;
    let (i, f, o) = (input.shape, filter.shape, output.shape);
    i.check_len(input.data.len())?;
    f.check_len(filter.data.len())?;
    o.check_len(output.data.len())?;
    check(window, i, f, o).map_err(|what| Error::InvalidParameter { what })?;
    check_int8(stage, requant, o.c, why!("transpose conv requant length"))?;
    if bias.is_some_and(|b| b.len() != o.c) {
        return Err(Error::InvalidParameter {
            what: why!("transpose conv bias length"),
        });
    }
    if output.data.is_empty() || requant.is_empty() {
        return Ok(());
    }
    let k = Kernel {
        window,
        stage,
        input,
        filter,
        bias,
        requant,
    };
    let acc = cast::take_mut::<i32>(&mut scratch, o.c);
    let col = cast::take_mut::<[u32; 2]>(&mut scratch, i.c / 4);
    match (acc, col) {
        (Some(acc), Some(col)) => k.run(output, |x, w, out| k.gather_simd(x, w, out, acc, col)),
        _ => k.run(output, |x, w, out| k.gather(x, w, out)),
    }
    Ok(())
}

/// A checked layer's arguments.
struct Kernel<'k> {
    window: &'k Window,
    stage: &'k Int8Stage,
    input: Tensor<'k, i8>,
    filter: Tensor<'k, i8>,
    bias: Option<&'k [i32]>,
    requant: Requant<'k>,
}

impl Kernel<'_> {
    /// Calls `pixel(rows, cols, out)` for each output pixel with the taps that land on it.
    fn run(&self, output: TensorMut<i8>, mut pixel: impl FnMut(usize, (Taps, Taps), &mut [i8])) {
        let (i, f, o, w) = (
            self.input.shape,
            self.filter.shape,
            output.shape,
            self.window,
        );
        let mut pixels = output.data.chunks_exact_mut(o.c);
        for b in 0..o.n {
            for oy in 0..o.h {
                let rows = Taps::new(oy, w.pad_top, w.stride_h, f.h, i.h);
                for ox in 0..o.w {
                    let cols = Taps::new(ox, w.pad_left, w.stride_w, f.w, i.w);
                    let Some(out) = pixels.next() else {
                        return;
                    };
                    pixel(b * i.h, (rows, cols), out);
                }
            }
        }
    }

    /// `(input pixel offset, filter tap offset)` in elements for each tap of a pixel.
    fn taps(
        &self,
        image: usize,
        (rows, cols): (Taps, Taps),
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (i, f, w) = (self.input.shape, self.filter.shape, self.window);
        rows.iter(w.stride_h).flat_map(move |(ky, iy)| {
            cols.iter(w.stride_w)
                .map(move |(kx, ix)| (((image + iy) * i.w + ix) * i.c, (ky * f.w + kx) * i.c))
        })
    }

    /// One output pixel, one product at a time.
    fn gather(&self, image: usize, taps: (Taps, Taps), out: &mut [i8]) {
        let (c, per_filter) = (self.input.shape.c, self.filter.data.len() / out.len());
        let channels = out.iter_mut().zip(self.requant.iter().cycle());
        for (oc, (out, q)) in channels.enumerate() {
            let w = &self.filter.data[oc * per_filter..][..per_filter];
            let mut acc = self.bias.map_or(0, |b| b[oc]);
            for (x, k) in self.taps(image, taps) {
                acc = acc.wrapping_add(self.dot(&self.input.data[x..][..c], &w[k..][..c]));
            }
            *out = requantize(acc, *q, self.stage);
        }
    }

    /// One output pixel: each tap's input widened once, then four output channels at a time.
    fn gather_simd(
        &self,
        image: usize,
        taps: (Taps, Taps),
        out: &mut [i8],
        acc: &mut [i32],
        col: &mut [[u32; 2]],
    ) {
        let (c, body) = (self.input.shape.c, col.len() * 4);
        let per_filter = self.filter.data.len() / out.len();
        let off2 = (self.stage.input_offset as u16 as u32) * 0x1_0001;
        for (oc, a) in acc.iter_mut().enumerate() {
            *a = self.bias.map_or(0, |b| b[oc]);
        }
        for (x, k) in self.taps(image, taps) {
            let x = &self.input.data[x..][..c];
            for (g, word) in col.iter_mut().zip(x.chunks_exact(4)) {
                let w = u32::from_le_bytes([
                    word[0] as u8,
                    word[1] as u8,
                    word[2] as u8,
                    word[3] as u8,
                ]);
                *g = [simd::sxtab16(off2, w), simd::sxtab16_ror8(off2, w)];
            }
            let done = acc.len() / 4 * 4;
            for (q, a) in acc.chunks_exact_mut(4).enumerate() {
                let w = &self.filter.data[4 * q * per_filter + k..];
                let sums = simd::mac_1x4(col, w, per_filter, [a[0], a[1], a[2], a[3]]);
                a.copy_from_slice(&sums);
            }
            for (oc, a) in acc.iter_mut().enumerate() {
                let w = &self.filter.data[oc * per_filter + k..][..c];
                let from = if oc < done { body } else { 0 };
                *a = a.wrapping_add(self.dot(&x[from..], &w[from..]));
            }
        }
        for ((out, a), q) in out
            .iter_mut()
            .zip(acc.iter())
            .zip(self.requant.iter().cycle())
        {
            *out = requantize(*a, *q, self.stage);
        }
    }

    /// `sum((x + input_offset) * w)`, wrapping.
    #[inline(always)]
    fn dot(&self, x: &[i8], w: &[i8]) -> i32 {
        x.iter().zip(w).fold(0i32, |acc, (&x, &w)| {
            acc.wrapping_add((i32::from(x) + self.stage.input_offset) * i32::from(w))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantizedMultiplier;
    use crate::test_support::*;
    use std::vec::Vec;

    /// TFLite-Micro's scatter into a whole-output int32 accumulator, then requantization.
    #[allow(clippy::too_many_arguments)]
    fn scatter_reference(
        w: &Window,
        st: &Int8Stage,
        x: &[i8],
        is: Shape4,
        k: &[i8],
        fs: Shape4,
        bias: Option<&[i32]>,
        rq: &[QuantizedMultiplier],
        os: Shape4,
    ) -> Vec<i8> {
        let mut acc = vec![0i64; len(os)];
        for b in 0..is.n {
            for iy in 0..is.h {
                for ix in 0..is.w {
                    for ic in 0..is.c {
                        for ky in 0..fs.h {
                            for kx in 0..fs.w {
                                let oy = (iy * w.stride_h + ky) as i64 - w.pad_top as i64;
                                let ox = (ix * w.stride_w + kx) as i64 - w.pad_left as i64;
                                if oy < 0 || ox < 0 || oy >= os.h as i64 || ox >= os.w as i64 {
                                    continue;
                                }
                                for oc in 0..fs.n {
                                    let v = i64::from(x[((b * is.h + iy) * is.w + ix) * is.c + ic])
                                        + i64::from(st.input_offset);
                                    let f =
                                        i64::from(k[((oc * fs.h + ky) * fs.w + kx) * fs.c + ic]);
                                    let at =
                                        ((b * os.h + oy as usize) * os.w + ox as usize) * os.c + oc;
                                    acc[at] += v * f;
                                }
                            }
                        }
                    }
                }
            }
        }
        acc.iter()
            .enumerate()
            .map(|(at, &a)| {
                let oc = at % os.c;
                let a = a + bias.map_or(0, |b| i64::from(b[oc]));
                reference_requant(a, rq[oc % rq.len()], st)
            })
            .collect()
    }

    #[test]
    fn matches_the_scatter_reference() {
        let mut rng = Rng(0x07c0_5eed);
        for case in 0..300 {
            let (stride_h, stride_w) = (rng.size(1, 3), rng.size(1, 3));
            let (kh, kw) = (rng.size(1, 4), rng.size(1, 4));
            let (n, ic, oc) = (rng.size(1, 2), rng.size(1, 9), rng.size(1, 9));
            let is = s(n, rng.size(1, 5), rng.size(1, 5), ic);
            let padding = [Padding::Same, Padding::Valid][rng.below(2)];
            // Keras' output sizes, sometimes one more or less (TFLite takes any).
            let side = |i: usize, k: usize, s: usize| match padding {
                Padding::Same => i * s,
                _ => i * s + k.saturating_sub(s),
            };
            let jitter = |v: usize, r: &mut Rng| (v + r.below(3)).saturating_sub(1).max(1);
            let os = s(
                n,
                jitter(side(is.h, kh, stride_h), &mut rng),
                jitter(side(is.w, kw, stride_w), &mut rng),
                oc,
            );
            let fs = s(oc, kh, kw, ic);
            let w = Window {
                stride_h,
                stride_w,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: tflite_padding(padding, os.h, kh, stride_h).unwrap(),
                pad_left: tflite_padding(padding, os.w, kw, stride_w).unwrap(),
            };
            let (x, k) = (rng.i8s(len(is)), rng.i8s(len(fs)));
            let (st, bias, rq) = (rng.stage(), rng.bias(oc), rng.requant(oc));
            let want = scatter_reference(&w, &st, &x, is, &k, fs, bias.as_deref(), &rq, os);
            for fast in [false, true] {
                let mut words = vec![0u32; if fast { scratch_bytes(ic, oc) / 4 } else { 0 }];
                let scratch = crate::cast::words_as_bytes_mut(&mut words);
                let mut got = vec![0i8; len(os)];
                let (x, k, b) = (t(&x, is), t(&k, fs), bias.as_deref());
                let r = transpose_conv_i8(&w, &st, x, k, b, &rq, tm(&mut got, os), scratch);
                assert_eq!(r, Ok(()), "case {case}");
                assert_eq!(got, want, "case {case} {fast}: {w:?} {is:?} {fs:?} {os:?}");
            }
        }
    }

    #[test]
    fn taps_are_the_ones_that_land() {
        for (pad, stride, kernel, input) in [(0, 1, 3, 4), (1, 2, 3, 4), (2, 3, 5, 2), (0, 2, 1, 3)]
        {
            for at in 0..12usize {
                let want: Vec<(usize, usize)> = (0..kernel)
                    .filter_map(|k| {
                        let t = (at + pad).checked_sub(k)?;
                        (t % stride == 0 && t / stride < input).then_some((k, t / stride))
                    })
                    .collect();
                let got: Vec<_> = Taps::new(at, pad, stride, kernel, input)
                    .iter(stride)
                    .collect();
                assert_eq!(
                    got, want,
                    "at {at} pad {pad} stride {stride} kernel {kernel}"
                );
            }
        }
    }

    #[test]
    fn paddings_follow_tflite() {
        // Keras SAME, stride 2, 3x3 onto 8: a convolution over 8 gives 4, covering 9: pad 0.
        assert_eq!(tflite_padding(Padding::Same, 8, 3, 2), Some(0));
        // 4x4 kernel, stride 2 onto 8: covers 10, pad 1.
        assert_eq!(tflite_padding(Padding::Same, 8, 4, 2), Some(1));
        // VALID never pads, whatever the sizes.
        assert_eq!(tflite_padding(Padding::Valid, 9, 3, 2), Some(0));
        assert_eq!(tflite_padding(Padding::Valid, 1, 5, 1), Some(0));
    }

    #[test]
    fn refuses_inconsistent_shapes() {
        let w = win((2, 2), ONE, ZERO);
        assert!(check(&w, s(1, 2, 2, 3), s(4, 3, 3, 3), s(1, 4, 4, 4)).is_ok());
        assert!(check(&w, s(1, 2, 2, 3), s(4, 3, 3, 2), s(1, 4, 4, 4)).is_err());
        assert!(check(&w, s(1, 2, 2, 3), s(4, 3, 3, 3), s(1, 4, 4, 5)).is_err());
        assert!(check(&w, s(1, 2, 2, 3), s(4, 3, 3, 3), s(2, 4, 4, 4)).is_err());
        assert!(check(
            &win((2, 2), (2, 1), ZERO),
            s(1, 2, 2, 3),
            s(4, 3, 3, 3),
            s(1, 4, 4, 4)
        )
        .is_err());
        // No input pixels or no channels: only the bias lands (or nothing at all).
        let mut out = [0i8; 2];
        let r = transpose_conv_i8(
            &w,
            &stage(0, 0),
            t(&[], s(1, 0, 2, 1)),
            t(&[2], s(1, 1, 1, 1)),
            Some(&[3]),
            &[q(1.0)],
            tm(&mut out, s(1, 1, 2, 1)),
            &mut [],
        );
        assert_eq!((r, out), (Ok(()), [3, 3]));
        let r = transpose_conv_i8(
            &w,
            &stage(0, 0),
            t(&[], s(1, 2, 2, 0)),
            t(&[], s(0, 1, 1, 0)),
            None,
            &[],
            tm(&mut [], s(1, 4, 4, 0)),
            &mut [],
        );
        assert_eq!(r, Ok(()));
        let mut out = [0i8; 4];
        let r = transpose_conv_i8(
            &w,
            &stage(0, 0),
            t(&[0; 3], s(1, 1, 1, 3)),
            t(&[0; 3], s(1, 1, 1, 3)),
            Some(&[0, 0]),
            &[q(1.0)],
            tm(&mut out, s(1, 2, 2, 1)),
            &mut [],
        );
        assert!(r.is_err());
    }
}
