//! AVERAGE_POOL_2D and MAX_POOL_2D (and global average pooling), NHWC.
//!
//! The int8 kernels follow TFLite-Micro's `reference_integer_ops::AveragePool` / `MaxPool`:
//! each window is clipped to the input, so padding never enters a sum, a maximum or a count.
//! Pooling does not requantize: TFLite requires the input and output to share scale and zero
//! point, so the int8 kernels only need the fused activation's clamp.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::Int8Stage;
use core::ops::Range;

use super::{Shape4, Tensor, TensorMut, Window};
use crate::format::DType;
use crate::format::OpCode;
use crate::geometry::{Axis, AxisError};
use crate::model::{Decoder, Scratch};
use crate::Error;

/// Geometry of a pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PoolParams {
    /// Strides and padding; both dilations must be 1 (TFLite pooling has no dilation).
    pub window: Window,
    /// Window height.
    pub filter_h: usize,
    /// Window width.
    pub filter_w: usize,
}

impl PoolParams {
    /// The window's rows and columns over input `is` giving output `os`.
    pub(crate) fn axes(&self, is: Shape4, os: Shape4) -> (Axis, Axis) {
        let w = &self.window;
        (
            w.rows(is.h, self.filter_h, os.h),
            w.cols(is.w, self.filter_w, os.w),
        )
    }
}

/// Parameters that pool each channel over the whole of `input`'s height and width (VALID, one
/// output pixel): global average pooling is `average_pool2d_*` with these.
pub fn global_average_pool_params(input: Shape4) -> PoolParams {
    PoolParams {
        window: Window::DENSE,
        filter_h: input.h,
        filter_w: input.w,
    }
}

/// One output element's clipped window: input rows `y0..y1`, columns `x0..x1`, of batch `n`
/// and channel `c`.
#[derive(Clone, Copy)]
pub(crate) struct Site {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) y0: usize,
    pub(crate) y1: usize,
    pub(crate) x0: usize,
    pub(crate) x1: usize,
}

impl Site {
    /// Number of in-bounds elements: what TFLite divides by.
    pub(crate) fn count(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }

    /// Calls `f` with the NHWC index of each in-bounds element, row by row: where the
    /// backward pass puts its gradients.
    pub(crate) fn for_each_index(&self, s: Shape4, mut f: impl FnMut(usize)) {
        for y in self.y0..self.y1 {
            let row = (self.n * s.h + y) * s.w;
            for x in self.x0..self.x1 {
                f((row + x) * s.c + self.c);
            }
        }
    }

    /// The window's elements, row by row, as the reference loops visit them (the order
    /// matters for f32 sums).
    fn values<'a, T: Copy>(&self, data: &'a [T], shape: Shape4) -> impl Iterator<Item = T> + 'a {
        let (n, c, x0, x1) = (self.n, self.c, self.x0, self.x1);
        (self.y0..self.y1).flat_map(move |y| {
            let row = (n * shape.h + y) * shape.w;
            // In bounds for validated shapes; `get` keeps a panic path out of the kernels.
            (x0..x1).filter_map(move |x| data.get((row + x) * shape.c + c).copied())
        })
    }
}

/// `Err(ShapeMismatch)` unless `actual` is acceptable.
fn check_dim(what: crate::Why, ok: bool, expected: usize, actual: usize) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            actual,
        })
    }
}

/// Checks shapes, buffer lengths and parameters shared by every pooling kernel.
fn validate<I, O>(p: &PoolParams, input: &Tensor<I>, output: &TensorMut<O>) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    output.shape.check_len(output.data.len())?;
    let (is, os) = (input.shape, output.shape);
    check_dim(why!("pool output batch"), os.n == is.n, is.n, os.n)?;
    check_dim(why!("pool output channels"), os.c == is.c, is.c, os.c)?;
    check_window(p, is, os)
}

/// The pooling window's rules, shared with the backward pass: no dilation, and each axis
/// consistent by [`Axis::check`] (which admits every SAME and VALID geometry TFLite produces
/// and rules out empty windows, so averages never divide by 0). An output with no elements
/// has no windows, so only its parameters are checked.
pub(crate) fn check_window(p: &PoolParams, is: Shape4, os: Shape4) -> Result<(), Error> {
    let w = &p.window;
    if w.dilation_h != 1 || w.dilation_w != 1 {
        return Err(Error::InvalidParameter {
            what: why!("pool dilation (must be 1)"),
        });
    }
    let empty = os.elements() == Some(0);
    let rows = w.rows(is.h, p.filter_h, os.h);
    check_axis(rows, empty, why!("pool output height"))?;
    check_axis(
        w.cols(is.w, p.filter_w, os.w),
        empty,
        why!("pool output width"),
    )
}

/// One axis of [`check_window`]; `output_what` names a wrong output size.
fn check_axis(axis: Axis, empty_output: bool, output_what: crate::Why) -> Result<(), Error> {
    let invalid = |what| Err(Error::InvalidParameter { what });
    match axis.check() {
        Ok(()) => Ok(()),
        Err(AxisError::ZeroStride) => invalid(why!("pool stride (must be >= 1)")),
        Err(AxisError::ZeroKernel) => invalid(why!("pool filter size (must be >= 1)")),
        // A window starting wholly inside the top/left padding would see no input at all.
        Err(AxisError::PadCoversKernel) => {
            invalid(why!("pool padding (must be smaller than the filter)"))
        }
        Err(AxisError::Overflow) => Err(Error::ShapeOverflow),
        Err(AxisError::ZeroInput | AxisError::Output { .. }) if empty_output => Ok(()),
        Err(AxisError::ZeroInput) => check_dim(output_what, false, 0, axis.output),
        Err(AxisError::Output { most }) => check_dim(output_what, false, most, axis.output),
        // Dilation was checked to be 1.
        Err(AxisError::ZeroDilation) => invalid(why!("pool dilation (must be 1)")),
    }
}

/// Calls `reduce` once per output element, in NHWC order, with its clipped window.
fn for_each_window<O>(
    p: &PoolParams,
    is: Shape4,
    output: &mut TensorMut<O>,
    mut reduce: impl FnMut(Site) -> O,
) {
    let (os, w) = (output.shape, &p.window);
    let mut out = output.data.iter_mut();
    for n in 0..os.n {
        for oy in 0..os.h {
            // Built where used, from `p`'s fields, as the loop always read them.
            let rows = w.rows(is.h, p.filter_h, os.h);
            let Range { start: y0, end: y1 } = rows.clipped(oy);
            for ox in 0..os.w {
                let cols = w.cols(is.w, p.filter_w, os.w);
                let Range { start: x0, end: x1 } = cols.clipped(ox);
                for c in 0..os.c {
                    let site = Site {
                        n,
                        c,
                        y0,
                        y1,
                        x0,
                        x1,
                    };
                    // The length was validated, so `out` yields exactly one slot per site.
                    if let Some(slot) = out.next() {
                        *slot = reduce(site);
                    }
                }
            }
        }
    }
}

/// The fused activation's range must not be empty; a NaN bound (f32) is refused as well.
fn check_clamp<T: PartialOrd>(min: T, max: T) -> Result<(), Error> {
    if min <= max {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            what: why!("activation range (min > max, or NaN)"),
        })
    }
}

/// Integer average with TFLite's rounding: half away from zero, division truncating.
///
/// Truncation is symmetric, so this divides magnitudes. Any real window's numbers fit in 32
/// bits, where the Cortex-M has a divide instruction; a 64-bit `/` would link ~1 KB of
/// library code for windows no microcontroller holds, so those take [`long_division`].
fn rounded_average(sum: i64, count: usize) -> i64 {
    let n = sum.unsigned_abs().saturating_add((count / 2) as u64);
    let quotient = match (u32::try_from(n), u32::try_from(count)) {
        (Ok(n), Ok(d)) => u64::from(n.checked_div(d).unwrap_or(0)),
        _ => long_division(n, count as u64),
    };
    // |sum| <= 128 * count, so the quotient is at most 129.
    let quotient = quotient as i64;
    if sum > 0 {
        quotient
    } else {
        -quotient
    }
}

/// `n / d` (0 for `d == 0`) by shift and subtract, without the 64-bit division routine.
#[cold]
fn long_division(n: u64, d: u64) -> u64 {
    if d == 0 {
        return 0;
    }
    let (mut quotient, mut rest) = (0u64, 0u64);
    for bit in (0..64).rev() {
        // `rest < d` before the shift; the bit shifted out (`carry`) makes it 2^64 more.
        let carry = rest >> 63;
        rest = (rest << 1) | ((n >> bit) & 1);
        if carry != 0 || rest >= d {
            rest = rest.wrapping_sub(d);
            quotient |= 1 << bit;
        }
    }
    quotient
}

/// int8 AVERAGE_POOL_2D, bit-exact with TFLite-Micro's reference kernel.
///
/// Each output is the sum of the in-bounds window elements divided by their number (padding
/// is neither summed nor counted), rounded half away from zero, then clamped to
/// `[act_min, act_max]`.
pub fn average_pool2d_i8(
    p: &PoolParams,
    act_min: i8,
    act_max: i8,
    input: Tensor<i8>,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    check_clamp(act_min, act_max)?;
    validate(p, &input, &output)?;
    average_pool2d_i8_decoded(p, act_min, act_max, input, output)
}

/// [`average_pool2d_i8`] for a layer the model's decoder validated (the interpreter's path):
/// the checks it already made are only debug-asserted here, which keeps a second copy of them
/// out of flash. No memory access rests on them: the loops read through `get` and write
/// through the output's iterator.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub(crate) fn average_pool2d_i8_decoded(
    p: &PoolParams,
    act_min: i8,
    act_max: i8,
    input: Tensor<i8>,
    mut output: TensorMut<i8>,
) -> Result<(), Error> {
    super::built(OpCode::AveragePool2d)?;
    debug_assert_eq!(check_clamp(act_min, act_max), Ok(()));
    debug_assert_eq!(validate(p, &input, &output), Ok(()));
    let (lo, hi) = (i64::from(act_min), i64::from(act_max));
    for_each_window(p, input.shape, &mut output, |site| {
        // TFLite sums in i32; the i64 sum is the same value wherever that does not overflow.
        // Up to 2^24 int8 values cannot overflow i32, and an i32 sum is cheaper.
        let count = site.count();
        let values = site.values(input.data, input.shape);
        let sum = if count <= 1 << 24 {
            i64::from(values.map(i32::from).sum::<i32>())
        } else {
            values.map(i64::from).sum()
        };
        // TFLite's max-then-min: no assertion that the range is nonempty (parse checked it).
        rounded_average(sum, count).max(lo).min(hi) as i8
    });
    Ok(())
}

/// int8 MAX_POOL_2D, bit-exact with TFLite-Micro's reference kernel: the maximum of the
/// in-bounds window elements, clamped to `[act_min, act_max]`.
pub fn max_pool2d_i8(
    p: &PoolParams,
    act_min: i8,
    act_max: i8,
    input: Tensor<i8>,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    check_clamp(act_min, act_max)?;
    validate(p, &input, &output)?;
    max_pool2d_i8_decoded(p, act_min, act_max, input, output)
}

/// [`max_pool2d_i8`] for a layer the model's decoder validated (the interpreter's path), as
/// [`average_pool2d_i8_decoded`].
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub(crate) fn max_pool2d_i8_decoded(
    p: &PoolParams,
    act_min: i8,
    act_max: i8,
    input: Tensor<i8>,
    mut output: TensorMut<i8>,
) -> Result<(), Error> {
    super::built(OpCode::MaxPool2d)?;
    debug_assert_eq!(check_clamp(act_min, act_max), Ok(()));
    debug_assert_eq!(validate(p, &input, &output), Ok(()));
    for_each_window(p, input.shape, &mut output, |site| {
        let max = site.values(input.data, input.shape).fold(i8::MIN, i8::max);
        max.max(act_min).min(act_max)
    });
    Ok(())
}

/// f32 AVERAGE_POOL_2D: the in-bounds window's f32 sum (row-major order) over its count,
/// clamped to `clamp = (min, max)`.
pub fn average_pool2d_f32(
    p: &PoolParams,
    clamp: (f32, f32),
    input: Tensor<f32>,
    mut output: TensorMut<f32>,
) -> Result<(), Error> {
    check_clamp(clamp.0, clamp.1)?;
    validate(p, &input, &output)?;
    for_each_window(p, input.shape, &mut output, |site| {
        let sum = site
            .values(input.data, input.shape)
            .fold(0.0f32, |acc, v| acc + v);
        (sum / site.count() as f32).max(clamp.0).min(clamp.1)
    });
    Ok(())
}

/// f32 MAX_POOL_2D: the in-bounds window's maximum, clamped to `clamp = (min, max)`.
pub fn max_pool2d_f32(
    p: &PoolParams,
    clamp: (f32, f32),
    input: Tensor<f32>,
    mut output: TensorMut<f32>,
) -> Result<(), Error> {
    check_clamp(clamp.0, clamp.1)?;
    validate(p, &input, &output)?;
    for_each_window(p, input.shape, &mut output, |site| {
        let max = site
            .values(input.data, input.shape)
            .fold(f32::MIN, f32::max);
        max.max(clamp.0).min(clamp.1)
    });
    Ok(())
}

record_params! {
    /// AVERAGE_POOL_2D's and MAX_POOL_2D's record parameters.
    pub struct Pool2dParams {
        /// Strides and padding (no dilation).
        pub window: Window,
        /// The fused activation's clamp (pooling keeps the input's quantization).
        pub stage: Int8Stage,
        /// Window height.
        pub filter_h: usize,
        /// Window width.
        pub filter_w: usize,
    }
}

/// AVERAGE_POOL_2D or MAX_POOL_2D, decoded (they differ only in what a window computes).
#[derive(Debug, Clone, Copy)]
pub struct Pool2d {
    /// MAX_POOL_2D (else AVERAGE_POOL_2D).
    pub max: bool,
    /// Window and filter size.
    pub pool: PoolParams,
    /// Clamp low.
    pub act_min: i8,
    /// Clamp high.
    pub act_max: i8,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Pool2d {
    type Params = Pool2dParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let o = *cx.options();
        let channels = cx.tensor(input)?.shape.c;
        let window = cx.window(input, (o.filter_h, o.filter_w), (1, 1), channels)?;
        if cx.per_tensor(input)? != cx.per_tensor(cx.output())? {
            return Err(LowerError::Quantization {
                tensor: cx.output(),
                what: "pooling needs the same scale and zero point on input and output",
            });
        }
        let stage = cx.int8_stage(input, o.activation)?;
        cx.params(&Pool2dParams {
            window,
            stage,
            filter_h: o.filter_h,
            filter_w: o.filter_w,
        })
    }

    fn decode(d: &Decoder<'_, 'a>, p: Pool2dParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        d.check(
            p.window.dilation_h == 1 && p.window.dilation_w == 1,
            why!("pooling does not dilate"),
        );
        d.check(
            input.shape.c == output.shape.c,
            why!("pooling keeps the channel count"),
        );
        let kernel = (p.filter_h, p.filter_w);
        d.check_spatial(&p.window, kernel, input.shape, output.shape);
        Pool2d {
            max: d.opcode() == OpCode::MaxPool2d,
            pool: PoolParams {
                window: p.window,
                filter_h: p.filter_h,
                filter_w: p.filter_w,
            },
            act_min: p.stage.act_min,
            act_max: p.stage.act_max,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let (p, lo, hi) = (&self.pool, self.act_min, self.act_max);
        match self.max {
            true => max_pool2d_i8_decoded(p, lo, hi, v.inputs[0], v.output),
            false => average_pool2d_i8_decoded(p, lo, hi, v.inputs[0], v.output),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rounded_average_matches_i64_division_at_every_width() {
        let reference = |sum: i64, count: i64| {
            if sum > 0 {
                (sum + count / 2) / count
            } else {
                (sum - count / 2) / count
            }
        };
        for count in [
            1usize,
            2,
            3,
            7,
            125,
            1 << 24,
            (1 << 24) + 1,
            1 << 33,
            (1 << 40) + 3,
        ] {
            for sum in [
                -128 * count as i64,
                -7,
                -1,
                0,
                1,
                5,
                127 * count as i64,
                count as i64 / 2,
            ] {
                assert_eq!(
                    rounded_average(sum, count),
                    reference(sum, count as i64),
                    "{sum}/{count}"
                );
            }
        }
        for (n, d) in [
            (0u64, 1u64),
            (u64::MAX, 1),
            (u64::MAX, u64::MAX),
            (u64::MAX, 3),
            (1 << 63, (1 << 63) + 1),
        ] {
            assert_eq!(long_division(n, d), n / d);
        }
        assert_eq!(long_division(5, 0), 0);
    }

    use super::*;
    use crate::ops::Padding;
    use crate::test_support::{s as sh, Rng};

    const FULL: (i8, i8) = (i8::MIN, i8::MAX);

    fn params(f: (usize, usize), stride: (usize, usize), pad: (usize, usize)) -> PoolParams {
        let (stride_h, stride_w, pad_top, pad_left) = (stride.0, stride.1, pad.0, pad.1);
        let (dilation_h, dilation_w) = (1, 1);
        let window = Window {
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
        };
        PoolParams {
            window,
            filter_h: f.0,
            filter_w: f.1,
        }
    }

    fn run(
        avg: bool,
        p: &PoolParams,
        clamp: (i8, i8),
        is: Shape4,
        data: &[i8],
        os: Shape4,
    ) -> Result<Vec<i8>, Error> {
        let mut out = vec![0i8; os.elements().unwrap()];
        let (input, output) = (
            Tensor { data, shape: is },
            TensorMut {
                data: &mut out,
                shape: os,
            },
        );
        let kernel = if avg {
            average_pool2d_i8
        } else {
            max_pool2d_i8
        };
        kernel(p, clamp.0, clamp.1, input, output)?;
        Ok(out)
    }

    fn run_f32(
        avg: bool,
        p: &PoolParams,
        clamp: (f32, f32),
        is: Shape4,
        data: &[f32],
        os: Shape4,
    ) -> Result<Vec<f32>, Error> {
        let mut out = vec![0f32; os.elements().unwrap()];
        let (input, output) = (
            Tensor { data, shape: is },
            TensorMut {
                data: &mut out,
                shape: os,
            },
        );
        let kernel = if avg {
            average_pool2d_f32
        } else {
            max_pool2d_f32
        };
        kernel(p, clamp, input, output)?;
        Ok(out)
    }

    /// Straightforward reference: walks the unclipped window in signed coordinates and returns
    /// each output's (sum, count, max) over the in-bounds elements, in f64.
    fn naive(p: &PoolParams, is: Shape4, os: Shape4, d: &[f64]) -> Vec<(f64, f64, f64)> {
        let w = &p.window;
        let mut out = Vec::new();
        for n in 0..os.n {
            for oy in 0..os.h {
                for ox in 0..os.w {
                    for ch in 0..os.c {
                        let (mut sum, mut count, mut max) = (0.0, 0.0, f64::NEG_INFINITY);
                        for fy in 0..p.filter_h {
                            for fx in 0..p.filter_w {
                                let y = (oy * w.stride_h + fy) as isize - w.pad_top as isize;
                                let x = (ox * w.stride_w + fx) as isize - w.pad_left as isize;
                                if y < 0 || x < 0 || y >= is.h as isize || x >= is.w as isize {
                                    continue;
                                }
                                let (y, x) = (y as usize, x as usize);
                                let v = d[((n * is.h + y) * is.w + x) * is.c + ch];
                                sum += v;
                                count += 1.0;
                                max = max.max(v);
                            }
                        }
                        out.push((sum, count, max));
                    }
                }
            }
        }
        out
    }

    /// A random SAME or VALID geometry (None when a VALID window does not fit).
    fn random_geometry(rng: &mut Rng) -> Option<(PoolParams, Shape4, Shape4)> {
        let is = sh(
            1 + rng.below(2),
            1 + rng.below(7),
            1 + rng.below(7),
            1 + rng.below(3),
        );
        let (fh, fw) = (1 + rng.below(4), 1 + rng.below(4));
        let (sh_, sw) = (1 + rng.below(3), 1 + rng.below(3));
        let padding = [Padding::Same, Padding::Valid][rng.below(2)];
        let (oh, ph) = padding.output_and_pad(is.h, fh, sh_, 1)?;
        let (ow, pw) = padding.output_and_pad(is.w, fw, sw, 1)?;
        Some((
            params((fh, fw), (sh_, sw), (ph, pw)),
            is,
            sh(is.n, oh, ow, is.c),
        ))
    }

    #[test]
    fn same_padded_average_excludes_padding_from_the_count() {
        // 3x3 input, 2x2 filter, stride 1, SAME: output 3x3, pad 0 before / 1 after.
        assert_eq!(Padding::Same.output_and_pad(3, 2, 1, 1), Some((3, 0)));
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 10];
        let p = params((2, 2), (1, 1), (0, 0));
        let out = run(true, &p, FULL, sh(1, 3, 3, 1), &data, sh(1, 3, 3, 1)).unwrap();
        // (0,0): (1+2+4+5)/4 = 12/4 = 3.        (0,1): (2+3+5+6)=16 -> 4.
        // (0,2): clipped to 1 column: (3+6)=9, count 2 -> (9+1)/2 = 5 (4.5 rounds up).
        // (1,0): (4+5+7+8)=24 -> 6.              (1,1): (5+6+8+10)=29 -> (29+2)/4 = 7 (7.25).
        // (1,2): (6+10)=16, count 2 -> 8.        (2,0): (7+8)=15, count 2 -> (15+1)/2 = 8.
        // (2,1): (8+10)=18 -> 9.                 (2,2): 10 alone, count 1 -> 10.
        // Had padding been counted, (2,2) would be 10/4 -> 3.
        assert_eq!(out, [3, 4, 5, 6, 7, 8, 8, 9, 10]);
    }

    #[test]
    fn negative_averages_round_half_away_from_zero() {
        // One 1x2 window per output column, two channels, stride 2.
        // Channel 0 pairs: (-1,-2) (-3,-3) (-2,-1); channel 1 pairs: (1,2) (-1,0) (0,-4).
        let data = [-1, 1, -2, 2, -3, -1, -3, 0, -2, 0, -1, -4];
        let p = params((1, 2), (1, 2), (0, 0));
        let out = run(true, &p, FULL, sh(1, 1, 6, 2), &data, sh(1, 1, 3, 2)).unwrap();
        // ch0: -3 -> (-3 - 1)/2 = -2 (-1.5 away from zero); -6 -> (-6-1)/2 = -3 (C truncation);
        //      -3 -> -2.
        // ch1: 3 -> (3 + 1)/2 = 2; -1 -> (-1 - 1)/2 = -1 (-0.5 -> -1); -4 -> (-4-1)/2 = -2.
        assert_eq!(out, [-2, 2, -3, -1, -2, -2]);
    }

    #[test]
    fn average_saturates_and_applies_the_fused_clamp() {
        let (is, one) = (sh(1, 2, 2, 1), sh(1, 1, 1, 1));
        let g = global_average_pool_params(is);
        // All -128: sum -512, (-512 - 2)/4 = -128 (truncates toward zero from -128.5).
        assert_eq!(run(true, &g, FULL, is, &[-128; 4], one), Ok(vec![-128]));
        assert_eq!(run(true, &g, FULL, is, &[127; 4], one), Ok(vec![127]));
        // Sum -60: (-60 - 2)/4 = -15 (C division truncates -15.5 toward zero). It lies inside
        // [-20, 60], and is raised to -10 by a floor of -10. The maximum, 90, is cut to 60.
        let data = [-50, -50, -50, 90];
        assert_eq!(run(true, &g, (-20, 60), is, &data, one), Ok(vec![-15]));
        assert_eq!(run(true, &g, (-10, 60), is, &data, one), Ok(vec![-10]));
        assert_eq!(run(false, &g, (-20, 60), is, &data, one), Ok(vec![60]));
        assert_eq!(run(false, &g, (-20, 60), is, &[-50; 4], one), Ok(vec![-20]));
    }

    #[test]
    fn global_average_pool_over_each_channel() {
        let is = sh(2, 2, 3, 2);
        let data: Vec<i8> = (0..24).map(|i| (i * 10 - 115) as i8).collect();
        let p = global_average_pool_params(is);
        let out = run(true, &p, FULL, is, &data, sh(2, 1, 1, 2)).unwrap();
        // Batch 0, channel 0: -115,-95,..,-15: sum -390 -> (-390 - 3)/6 = -65 (-65.5 truncated).
        // Channel 1: -105,-85,..,-5: sum -330 -> (-330 - 3)/6 = -55.
        // Batch 1 adds 120 to each of 6 values: 330 -> (330 + 3)/6 = 55; 390 -> 393/6 = 65.
        assert_eq!(out, [-65, -55, 55, 65]);
    }

    #[test]
    fn max_pool_ignores_padding_even_when_all_values_are_negative() {
        // SAME 3x3 stride 2 on 3x3 (pad 1): zero padding would win if it were included.
        assert_eq!(Padding::Same.output_and_pad(3, 3, 2, 1), Some((2, 1)));
        let data = [-9, -8, -7, -6, -5, -4, -3, -2, -100];
        let p = params((3, 3), (2, 2), (1, 1));
        let out = run(false, &p, FULL, sh(1, 3, 3, 1), &data, sh(1, 2, 2, 1)).unwrap();
        // (0,0): rows 0-1, cols 0-1 -> max(-9,-8,-6,-5) = -5. (0,1): rows 0-1, cols 1-2 -> -4.
        // (1,0): rows 1-2, cols 0-1 -> -2. (1,1): rows 1-2, cols 1-2 -> max(-5,-4,-2,-100) = -2.
        assert_eq!(out, [-5, -4, -2, -2]);
    }

    #[test]
    fn int8_pooling_matches_a_naive_reference() {
        let mut rng = Rng(0xdead_beef);
        for case in 0..600 {
            let Some((p, is, os)) = random_geometry(&mut rng) else {
                continue;
            };
            let data: Vec<i8> = (0..is.elements().unwrap())
                .map(|_| rng.next() as i8)
                .collect();
            let (lo, hi) = (
                i8::MIN + (rng.next() % 64) as i8,
                127 - (rng.next() % 64) as i8,
            );
            let wide: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
            let want = naive(&p, is, os, &wide);
            let clamp = |v: f64| v.clamp(f64::from(lo), f64::from(hi)) as i8;
            // Round half away from zero via f64, independently of the kernel's integer formula.
            let avg: Vec<i8> = want
                .iter()
                .map(|&(s, n, _)| clamp(((s / n).abs() + 0.5).floor() * s.signum()))
                .collect();
            let max: Vec<i8> = want.iter().map(|&(_, _, m)| clamp(m)).collect();
            assert_eq!(
                run(true, &p, (lo, hi), is, &data, os),
                Ok(avg),
                "case {case} {p:?}"
            );
            assert_eq!(
                run(false, &p, (lo, hi), is, &data, os),
                Ok(max),
                "case {case} {p:?}"
            );
        }
    }

    #[test]
    fn f32_pooling_matches_f64() {
        let mut rng = Rng(77);
        for _ in 0..600 {
            let Some((p, is, os)) = random_geometry(&mut rng) else {
                continue;
            };
            let data: Vec<f32> = (0..is.elements().unwrap())
                .map(|_| rng.next() as i32 as f32 / 1e9)
                .collect();
            let wide: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
            let want = naive(&p, is, os, &wide);
            let clamp = (-1.5f32, f32::INFINITY);
            let avg = run_f32(true, &p, clamp, is, &data, os).unwrap();
            let max = run_f32(false, &p, clamp, is, &data, os).unwrap();
            for (k, &(s, n, m)) in want.iter().enumerate() {
                // f32 sums of <= 16 terms below 2.2 in magnitude: well inside 1e-5.
                assert!((f64::from(avg[k]) - (s / n).max(-1.5)).abs() <= 1e-5);
                // A maximum involves no rounding at all.
                assert_eq!(f64::from(max[k]), m.max(-1.5));
            }
        }
    }

    #[test]
    fn bad_shapes_and_parameters_are_refused() {
        let (is, os) = (sh(1, 4, 4, 2), sh(1, 2, 2, 2));
        let data = [0i8; 32];
        let ok = params((2, 2), (2, 2), (0, 0));
        assert!(run(true, &ok, FULL, is, &data, os).is_ok());
        // Input buffer shorter than its shape; output buffer longer than its shape.
        let mismatch = |expected, actual| Err(Error::LengthMismatch { expected, actual });
        let (input, mut out) = (
            Tensor {
                data: &data[..31],
                shape: is,
            },
            [0i8; 9],
        );
        let output = TensorMut {
            data: &mut out[..8],
            shape: os,
        };
        assert_eq!(
            average_pool2d_i8(&ok, -128, 127, input, output),
            mismatch(32, 31)
        );
        let (input, output) = (
            Tensor {
                data: &data[..],
                shape: is,
            },
            TensorMut {
                data: &mut out,
                shape: os,
            },
        );
        assert_eq!(max_pool2d_i8(&ok, -128, 127, input, output), mismatch(8, 9));
        // Channel / batch mismatch.
        let shape_err = |r: Result<Vec<i8>, Error>| match r {
            Err(Error::ShapeMismatch {
                what,
                expected,
                actual,
            }) => (what, expected, actual),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            shape_err(run(true, &ok, FULL, is, &data, sh(1, 2, 2, 1))).0,
            why!("pool output channels")
        );
        assert_eq!(
            shape_err(run(true, &ok, FULL, is, &data, sh(2, 2, 2, 2))).0,
            why!("pool output batch")
        );
        // An output row or column whose window would lie past the input: 4 / stride 2 allow 2.
        assert_eq!(
            shape_err(run(true, &ok, FULL, is, &data, sh(1, 3, 2, 2))),
            (why!("pool output height"), 2, 3)
        );
        assert_eq!(
            shape_err(run(false, &ok, FULL, is, &data, sh(1, 2, 3, 2))),
            (why!("pool output width"), 2, 3)
        );
        let invalid = |p: PoolParams, clamp| {
            matches!(
                run(true, &p, clamp, is, &data, os),
                Err(Error::InvalidParameter { .. })
            )
        };
        let mut p = ok;
        p.window.stride_h = 0;
        assert!(invalid(p, FULL));
        p = ok;
        p.window.dilation_w = 2;
        assert!(invalid(p, FULL));
        p = ok;
        p.filter_w = 0;
        assert!(invalid(p, FULL));
        p = ok;
        p.window.pad_top = 2; // >= filter: the first window would see only padding
        assert!(invalid(p, FULL));
        assert!(invalid(ok, (10, -10)));
        assert!(matches!(
            run_f32(true, &ok, (f32::NAN, 1.0), is, &[0.0; 32], os),
            Err(Error::InvalidParameter { .. })
        ));
        // Overflowing shapes are reported, not wrapped.
        let huge = sh(usize::MAX, 2, 2, 2);
        assert_eq!(
            run(true, &ok, FULL, huge, &data, os),
            Err(Error::ShapeOverflow)
        );
    }
}
