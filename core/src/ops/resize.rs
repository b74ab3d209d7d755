//! RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR over the height and width of an int8 NHWC
//! tensor, bit-exact with TFLite-Micro's reference kernels.
//!
//! Nearest neighbour picks each output row's and column's source by TFLite's float formula
//! (`GetNearestNeighbor`: an f32 scale, then floor, or with align_corners round half away
//! from zero). Bilinear follows `ResizeBilinearInteger`: Q10 scales (`(in << 10) / out`,
//! rounded), each output the Q20 sum of four weighted inputs, rounded half away from zero.
//! Neither requantizes: TFLite's quantizer gives input and output one quantization, which the
//! lowering checks.
//!
//! The kernels compute each output column's source once per run into their scratch (without
//! scratch, once per pixel), and each output row's once per row.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::{record_params, Field, SlotReader, SlotWriter};
use super::{round_half_away_f32, Shape4, Tensor, TensorMut};
use crate::cast;
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Model, Scratch};
use crate::{Error, Why};

/// Largest input or output height and width: TFLite's int32 Q10 positions cannot overflow and
/// every size is exact in f32.
pub const MAX_SIDE: usize = 1 << 15;

/// TFLite's two resize options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResizeMode {
    /// Corner pixels of input and output line up (scale `(in - 1) / (out - 1)`).
    pub align_corners: bool,
    /// Pixels are sampled at their centres (positions offset by half a pixel).
    pub half_pixel_centers: bool,
}

/// Two slots, each 0 or 1.
impl Field for ResizeMode {
    fn write(&self, w: &mut SlotWriter) {
        w.put(self.align_corners.into());
        w.put(self.half_pixel_centers.into());
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let flag = why!("resize flag must be 0 or 1");
        let align_corners = r.ranged(0, 1, 0, flag) == 1;
        let half_pixel_centers = r.ranged(0, 1, 0, flag) == 1;
        Self {
            align_corners,
            half_pixel_centers,
        }
    }
}

impl ResizeMode {
    /// TFLite's `GetNearestNeighbor`: the input row (or column) that output row `at` of `out`
    /// copies, of `input` rows (at least 1).
    pub fn nearest(self, at: usize, input: usize, out: usize) -> usize {
        let scale = match self.align_corners && out > 1 {
            true => input.saturating_sub(1) as f32 / (out - 1) as f32,
            false => input as f32 / out as f32,
        };
        let offset = if self.half_pixel_centers { 0.5 } else { 0.0 };
        let x = (at as f32 + offset) * scale;
        // `x` is never negative, so truncation is the floor.
        let i = match self.align_corners {
            true => round_half_away_f32(x),
            false => x as i32,
        };
        (i.max(0) as usize).min(input.saturating_sub(1))
    }

    /// TFLite's Q10 step from output to input positions (`ResizeBilinearInteger`).
    fn q10_scale(self, input: usize, out: usize) -> i64 {
        let (i, o) = match self.align_corners && out > 1 {
            true => (input as i64 - 1, out as i64 - 1),
            false => (input as i64, out as i64),
        };
        ((i << 10) + o / 2) / o.max(1)
    }

    /// TFLite's `ComputeInterpolationValuesInteger` for output row (or column) `at`.
    fn lerp(self, at: usize, scale: i64, input: usize) -> Lerp {
        let at = at as i64;
        let pos = match self.half_pixel_centers {
            true => at * scale + scale / 2 - (1 << 9),
            false => at * scale,
        };
        let lo = (pos / 1024).max(0);
        let hi = ((pos + 1023) / 1024).min(input as i64 - 1);
        Lerp {
            lo: lo as usize,
            hi: hi.max(0) as usize,
            frac: (pos - 1024 * lo) as i32,
        }
    }
}

/// Where one output row (or column) of a bilinear resize reads: rows `lo` and `hi`, blended
/// with weight `frac / 1024` on `hi` (`frac` in -512..1024; negative only where `lo == hi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lerp {
    lo: usize,
    hi: usize,
    frac: i32,
}

/// Whether `output` is a valid resize of `input`: same batch and channels, sides in
/// `1..=MAX_SIDE`, and (bilinear) options TFLite-Micro accepts and sources inside the input.
pub fn check(bilinear: bool, mode: ResizeMode, input: Shape4, output: Shape4) -> Result<(), Why> {
    if input.n != output.n || input.c != output.c {
        return Err(why!("RESIZE keeps batch and channels"));
    }
    let side = |s: usize| (1..=MAX_SIDE).contains(&s);
    if ![input.h, input.w, output.h, output.w].into_iter().all(side) {
        return Err(why!("RESIZE heights and widths must be in 1..=32768"));
    }
    if !bilinear {
        return Ok(());
    }
    if mode.align_corners && mode.half_pixel_centers {
        return Err(why!(
            "RESIZE_BILINEAR takes align_corners or half_pixel_centers, not both"
        ));
    }
    // Q10 rounding can put the last rows of a steep upscale past the input: TFLite reads out
    // of bounds there, mote refuses the layer.
    for (i, o) in [(input.h, output.h), (input.w, output.w)] {
        let scale = mode.q10_scale(i, o);
        if (0..o).any(|at| mode.lerp(at, scale, i).lo >= i) {
            return Err(why!("RESIZE_BILINEAR samples past the input's edge"));
        }
    }
    Ok(())
}

record_params! {
    /// RESIZE_NEAREST_NEIGHBOR's and RESIZE_BILINEAR's record parameters.
    pub struct ResizeParams {
        /// TFLite's options.
        pub mode: ResizeMode,
    }
}

/// RESIZE_NEAREST_NEIGHBOR or RESIZE_BILINEAR, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Resize {
    /// TFLite's options.
    pub mode: ResizeMode,
    /// RESIZE_BILINEAR (else nearest neighbour).
    pub bilinear: bool,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
    /// The column table.
    pub scratch: Scratch,
}

impl<'a> Operator<'a> for Resize {
    type Params = ResizeParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    /// The size input must be the constant the output's shape repeats.
    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let t = cx.tensor(input)?;
        if t.dims.len() != 4 {
            return Err(LowerError::Unsupported {
                what: "RESIZE takes a 4-D input",
            });
        }
        let out = cx.tensor(cx.output())?.shape;
        let size = cx.tensor(cx.input(1)?)?;
        let same = |h: i32, w: i32| h as i64 == out.h as i64 && w as i64 == out.w as i64;
        if !matches!(size.i32_data, Some(&[h, w]) if same(h, w)) {
            return Err(LowerError::Unsupported {
                what: "RESIZE's size must be a constant int32 [2] equal to the output's height \
                       and width",
            });
        }
        cx.expect_output(Shape4::new(t.shape.n, out.h, out.w, t.shape.c))?;
        same_quantization(cx, input)?;
        let o = cx.options();
        let mode = ResizeMode {
            align_corners: o.align_corners,
            half_pixel_centers: o.half_pixel_centers,
        };
        let bilinear = cx.opcode() == OpCode::ResizeBilinear;
        check(bilinear, mode, t.shape, out).map_err(|why| LowerError::Unsupported {
            what: why.text().unwrap_or("unsupported RESIZE"),
        })?;
        cx.params(&ResizeParams { mode })
    }

    fn decode(d: &Decoder<'_, 'a>, params: ResizeParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let bilinear = d.opcode() == OpCode::ResizeBilinear;
        if let Err(why) = check(bilinear, params.mode, input.shape, output.shape) {
            d.reject(why);
        }
        Resize {
            mode: params.mode,
            bilinear,
            input: input.index,
            output: output.index,
            scratch: d.scratch(),
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, self.scratch))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        resize_i8(self.bilinear, self.mode, v.inputs[0], v.output, v.scratch)
    }

    fn scratch_need(&self, model: &Model<'a>) -> Result<Option<usize>, Error> {
        let out = model.tensor(self.output)?.shape;
        Ok(Some(out.w * table_words(self.bilinear) * 4))
    }
}

/// Input and output must share scale and zero point: copies and blends of codes mean the same
/// only then.
pub(crate) fn same_quantization(cx: &Lowering<'_>, input: usize) -> Result<(), LowerError> {
    match cx.per_tensor(input)? == cx.per_tensor(cx.output())? {
        true => Ok(()),
        false => Err(LowerError::Quantization {
            tensor: cx.output(),
            what: "must have the input's scale and zero point",
        }),
    }
}

/// Table words per output column: the source's offset (and for bilinear the second source's
/// and the blend).
fn table_words(bilinear: bool) -> usize {
    if bilinear {
        3
    } else {
        1
    }
}

/// The int8 kernel (nearest neighbour, or `bilinear`). `scratch` holds the column table when
/// it has `4 * output.w` bytes (nearest) or `12 * output.w` (bilinear).
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn resize_i8(
    bilinear: bool,
    mode: ResizeMode,
    input: Tensor<i8>,
    output: TensorMut<i8>,
    mut scratch: &mut [u8],
) -> Result<(), Error> {
    let op = match bilinear {
        true => OpCode::ResizeBilinear,
        false => OpCode::ResizeNearestNeighbor,
    };
    super::built(op)?;
    input.shape.check_len(input.data.len())?;
    output.shape.check_len(output.data.len())?;
    check(bilinear, mode, input.shape, output.shape)
        .map_err(|what| Error::InvalidParameter { what })?;
    if output.data.is_empty() {
        return Ok(()); // no batch or no channels
    }
    let words = output.shape.w * table_words(bilinear);
    let table = cast::take_mut::<u32>(&mut scratch, words);
    match bilinear {
        true => bilinear_i8(mode, input, output, table),
        false => nearest_i8(mode, input, output, table),
    }
    Ok(())
}

/// Nearest neighbour on checked shapes. An output row with the same source as the row above
/// is a copy of it.
fn nearest_i8(
    mode: ResizeMode,
    input: Tensor<i8>,
    output: TensorMut<i8>,
    table: Option<&mut [u32]>,
) {
    let (i, o) = (input.shape, output.shape);
    let c = o.c;
    let (row_in, row_out) = (i.w * c, o.w * c);
    let column = |x: usize| mode.nearest(x, i.w, o.w) * c;
    let table = table.map(|t| {
        for (x, e) in t.iter_mut().enumerate() {
            *e = column(x) as u32;
        }
        &*t
    });
    let images = input.data.chunks_exact(i.h * row_in);
    for (image, out) in images.zip(output.data.chunks_exact_mut(o.h * row_out)) {
        let mut previous = None;
        for y in 0..o.h {
            let from = mode.nearest(y, i.h, o.h);
            let (done, rest) = out.split_at_mut(y * row_out);
            let dst = &mut rest[..row_out];
            if previous == Some(from) {
                super::bytes::copy(dst, &done[(y - 1) * row_out..]);
                continue;
            }
            previous = Some(from);
            let src = &image[from * row_in..][..row_in];
            for (x, pixel) in dst.chunks_exact_mut(c).enumerate() {
                let at = match table {
                    Some(t) => t[x] as usize,
                    None => column(x),
                };
                match c {
                    1 => pixel[0] = src[at],
                    _ => super::bytes::copy(pixel, &src[at..at + c]),
                }
            }
        }
    }
}

/// Bilinear on checked shapes: `ResizeBilinearInteger`'s Q20 sums, which fit in i32 (four
/// int8 values times weights whose magnitudes sum to at most 2559^2).
fn bilinear_i8(
    mode: ResizeMode,
    input: Tensor<i8>,
    output: TensorMut<i8>,
    table: Option<&mut [u32]>,
) {
    let (i, o) = (input.shape, output.shape);
    let c = o.c;
    let (row_in, row_out) = (i.w * c, o.w * c);
    let (scale_y, scale_x) = (mode.q10_scale(i.h, o.h), mode.q10_scale(i.w, o.w));
    let column = |x: usize| {
        let l = mode.lerp(x, scale_x, i.w);
        [(l.lo * c) as u32, (l.hi * c) as u32, l.frac as u32]
    };
    let table = table.map(|t| {
        for (x, e) in t.chunks_exact_mut(3).enumerate() {
            e.copy_from_slice(&column(x));
        }
        &*t
    });
    let images = input.data.chunks_exact(i.h * row_in);
    for (image, out) in images.zip(output.data.chunks_exact_mut(o.h * row_out)) {
        for (y, dst) in out.chunks_exact_mut(row_out).enumerate() {
            let ly = mode.lerp(y, scale_y, i.h);
            let (top, bottom) = (&image[ly.lo * row_in..], &image[ly.hi * row_in..]);
            let fy = ly.frac;
            for (x, pixel) in dst.chunks_exact_mut(c).enumerate() {
                let [a, b, fx] = match table {
                    Some(t) => [t[3 * x], t[3 * x + 1], t[3 * x + 2]],
                    None => column(x),
                };
                let (a, b, fx) = (a as usize, b as usize, fx as i32);
                let w = [
                    (1024 - fy) * (1024 - fx),
                    fy * (1024 - fx),
                    (1024 - fy) * fx,
                    fy * fx,
                ];
                let rows = (&top[a..a + c], &bottom[a..a + c]);
                let cols = (&top[b..b + c], &bottom[b..b + c]);
                for (k, out) in pixel.iter_mut().enumerate() {
                    let sum = i32::from(rows.0[k]) * w[0]
                        + i32::from(rows.1[k]) * w[1]
                        + i32::from(cols.0[k]) * w[2]
                        + i32::from(cols.1[k]) * w[3];
                    *out = round_q20(sum);
                }
            }
        }
    }
}

/// A Q20 value to the nearest integer, ties away from zero (TFLite without single rounding).
#[inline(always)]
fn round_q20(sum: i32) -> i8 {
    let half = if sum > 0 { 1 << 19 } else { -(1 << 19) };
    ((sum + half) / (1 << 20)) as i8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use std::vec::Vec;

    const MODES: [ResizeMode; 4] = [
        ResizeMode {
            align_corners: false,
            half_pixel_centers: false,
        },
        ResizeMode {
            align_corners: true,
            half_pixel_centers: false,
        },
        ResizeMode {
            align_corners: false,
            half_pixel_centers: true,
        },
        ResizeMode {
            align_corners: true,
            half_pixel_centers: true,
        },
    ];

    /// TFLite's float `GetNearestNeighbor`, written out in f64 where f32 is exact.
    fn nearest_reference(mode: ResizeMode, at: usize, input: usize, out: usize) -> usize {
        let scale = if mode.align_corners && out > 1 {
            (input - 1) as f32 / (out - 1) as f32
        } else {
            input as f32 / out as f32
        };
        let off = if mode.half_pixel_centers { 0.5f32 } else { 0.0 };
        let x = f64::from((at as f32 + off) * scale);
        let i = if mode.align_corners {
            x.round()
        } else {
            x.floor()
        };
        (i as usize).min(input - 1)
    }

    /// Bilinear as `ResizeBilinearInteger` writes it: int64 products, per element.
    fn bilinear_reference(mode: ResizeMode, x: &[i8], is: Shape4, os: Shape4) -> Vec<i8> {
        let q10 = |i: i64, o: i64| {
            if mode.align_corners && o > 1 {
                (1024 * (i - 1) + (o - 1) / 2) / (o - 1)
            } else {
                (1024 * i + o / 2) / o
            }
        };
        let interp = |v: i64, s: i64, n: i64| {
            let p = if mode.half_pixel_centers {
                v * s + s / 2 - 512
            } else {
                v * s
            };
            (p, (p / 1024).max(0), ((p + 1023) / 1024).min(n - 1))
        };
        let (sy, sx) = (q10(is.h as i64, os.h as i64), q10(is.w as i64, os.w as i64));
        let at = |b: usize, y: i64, xx: i64, c: usize| {
            i64::from(x[((b * is.h + y as usize) * is.w + xx as usize) * is.c + c])
        };
        let mut out = Vec::new();
        for b in 0..os.n {
            for y in 0..os.h as i64 {
                let (py, y0, y1) = interp(y, sy, is.h as i64);
                for xx in 0..os.w as i64 {
                    let (px, x0, x1) = interp(xx, sx, is.w as i64);
                    for c in 0..os.c {
                        let (dy, dx) = (py - 1024 * y0, px - 1024 * x0);
                        let s = at(b, y0, x0, c) * (1024 - dy) * (1024 - dx)
                            + at(b, y1, x0, c) * dy * (1024 - dx)
                            + at(b, y0, x1, c) * (1024 - dy) * dx
                            + at(b, y1, x1, c) * dy * dx;
                        let r = if s > 0 { 1 << 19 } else { -(1 << 19) };
                        out.push(((s + r) / (1 << 20)) as i8);
                    }
                }
            }
        }
        out
    }

    fn run(
        bilinear: bool,
        mode: ResizeMode,
        x: &[i8],
        is: Shape4,
        os: Shape4,
        table: bool,
    ) -> Result<Vec<i8>, Error> {
        let mut out = vec![0i8; len(os)];
        let mut words = vec![0u32; if table { os.w * 3 } else { 0 }];
        let scratch = crate::cast::words_as_bytes_mut(&mut words);
        resize_i8(bilinear, mode, t(x, is), tm(&mut out, os), scratch)?;
        Ok(out)
    }

    #[test]
    fn nearest_upscale_by_two_repeats_pixels() {
        let x = [1, 2, 3, 4];
        let (is, os) = (s(1, 2, 2, 1), s(1, 4, 4, 1));
        let want = vec![1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4];
        for table in [false, true] {
            assert_eq!(run(false, MODES[0], &x, is, os, table), Ok(want.clone()));
        }
    }

    #[test]
    fn nearest_matches_tflite_formula() {
        for mode in MODES {
            for input in 1..12 {
                for out in 1..12 {
                    for at in 0..out {
                        let got = mode.nearest(at, input, out);
                        assert_eq!(got, nearest_reference(mode, at, input, out), "{mode:?}");
                    }
                }
            }
        }
        // 5 -> 7 without options: scale 5/7 in f32; row 6 reads floor(4.2857) = 4.
        assert_eq!(MODES[0].nearest(6, 5, 7), 4);
        // align_corners 7 -> 5: scale 1.5, row 1 reads round(1.5) = 2 (half away from zero).
        assert_eq!(MODES[1].nearest(1, 7, 5), 2);
    }

    #[test]
    fn random_shapes_match_the_references() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for case in 0..400 {
            let mode = MODES[rng.below(4)];
            let (n, c) = (rng.size(1, 2), rng.size(1, 5));
            let is = s(n, rng.size(1, 7), rng.size(1, 7), c);
            let os = s(n, rng.size(1, 11), rng.size(1, 11), c);
            let x = rng.i8s(len(is));
            let table = case % 2 == 0;
            // Nearest: each output pixel copies its source.
            let mut want = Vec::new();
            for b in 0..n {
                for y in 0..os.h {
                    let sy = nearest_reference(mode, y, is.h, os.h);
                    for xx in 0..os.w {
                        let sx = nearest_reference(mode, xx, is.w, os.w);
                        let at = ((b * is.h + sy) * is.w + sx) * c;
                        want.extend_from_slice(&x[at..at + c]);
                    }
                }
            }
            assert_eq!(run(false, mode, &x, is, os, table), Ok(want), "case {case}");
            let got = run(true, mode, &x, is, os, table);
            if mode.align_corners && mode.half_pixel_centers {
                assert!(got.is_err());
                continue;
            }
            assert_eq!(got, Ok(bilinear_reference(mode, &x, is, os)), "case {case}");
        }
    }

    #[test]
    fn bilinear_blends_and_rounds_half_away_from_zero() {
        // 1x2 -> 1x4 without options: scale 512 (Q10 0.5); columns at 0, 0.5, 1, 1.5 (the
        // last clamps to column 1). 0.5 * (-3) + 0.5 * 0 = -1.5 -> -2.
        let (is, os) = (s(1, 1, 2, 1), s(1, 1, 4, 1));
        assert_eq!(
            run(true, MODES[0], &[-3, 0], is, os, true),
            Ok(vec![-3, -2, 0, 0])
        );
        assert_eq!(
            run(true, MODES[0], &[3, 0], is, os, false),
            Ok(vec![3, 2, 0, 0])
        );
        // Half-pixel centres: columns at -0.25 (column 0 alone), 0.25, 0.75 and 1.25 (column
        // 1 alone): -0.75 * 128 + 0.25 * 127 = -64.25 -> -64.
        assert_eq!(
            run(true, MODES[2], &[-128, 127], is, os, true),
            Ok(vec![-128, -64, 63, 127])
        );
    }

    #[test]
    fn refuses_bad_shapes_and_options() {
        let bad = |bilinear, mode, is, os| check(bilinear, mode, is, os).is_err();
        assert!(bad(false, MODES[0], s(1, 2, 2, 3), s(1, 4, 4, 2)));
        assert!(bad(false, MODES[0], s(1, 2, 2, 3), s(2, 4, 4, 3)));
        assert!(bad(false, MODES[0], s(1, 0, 2, 3), s(1, 4, 4, 3)));
        assert!(bad(
            false,
            MODES[0],
            s(1, 2, 2, 3),
            s(1, 4, MAX_SIDE + 1, 3)
        ));
        assert!(!bad(false, MODES[3], s(1, 2, 2, 3), s(1, 4, 4, 3)));
        assert!(bad(true, MODES[3], s(1, 2, 2, 3), s(1, 4, 4, 3)));
        // One input column to 1100: Q10 rounds 1024 / 1100 up to 1, so the last columns sit
        // at 1099 / 1024: past the input. Half-pixel centres start 512 lower, until 1600.
        assert!(bad(true, MODES[0], s(1, 1, 1, 1), s(1, 1, 1100, 1)));
        assert!(!bad(true, MODES[2], s(1, 1, 1, 1), s(1, 1, 1100, 1)));
        assert!(bad(true, MODES[2], s(1, 1, 1, 1), s(1, 1, 1600, 1)));
        let mut out = [0i8; 4];
        let empty = s(1, 2, 2, 0);
        let r = resize_i8(true, MODES[0], t(&[], empty), tm(&mut [], empty), &mut []);
        assert_eq!(r, Ok(()));
        let r = resize_i8(
            false,
            MODES[0],
            t(&[1, 2, 3], s(1, 2, 2, 1)),
            tm(&mut out, s(1, 2, 2, 1)),
            &mut [],
        );
        assert!(r.is_err());
    }
}
