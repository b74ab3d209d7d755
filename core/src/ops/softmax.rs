//! SOFTMAX over the innermost dimension, int8 (to int8 or int16) and f32.
//!
//! The int8 kernel reproduces TFLite-Micro's `reference_ops::Softmax` for int8 input and int8
//! output bit for bit. That kernel runs entirely in gemmlowp fixed point: input differences
//! become Q5.26 numbers, `exp` is a polynomial plus a table of `exp(-2^k)` factors, the sum is
//! held in Q12.19, and its reciprocal comes from Newton-Raphson iterations. The private helpers
//! below implement those gemmlowp routines with the same integer widths, rounding and
//! saturation. Plain `+`/`-` of fixed-point values wrap in gemmlowp (C++ signed arithmetic that
//! never overflows on valid data); they are `wrapping_*` here so hostile data cannot panic.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, KernelPaths, Operator, Views};
use super::record::record_params;
use super::KernelPath;
use crate::format::DType;
use crate::format::OpCode;
use crate::model::{Decoder, Model, Scratch};
use crate::quant::{rounding_divide_by_pot, saturating_rounding_doubling_high_mul};
use crate::Error;

/// gemmlowp's `SaturatingRoundingDoublingHighMul`, kept out of line: SOFTMAX calls it ~30 times
/// per element and runs once per model on a few values, so inlining each call would cost
/// flash (~1 KB) for no measurable speed.
#[inline(never)]
fn mul(a: i32, b: i32) -> i32 {
    saturating_rounding_doubling_high_mul(a, b)
}

/// Integer bits of the Q5.26 input differences (TFLite's `kScaledDiffIntegerBits`).
const DIFF_INTEGER_BITS: i32 = 5;
/// Integer bits of the Q12.19 sum of exponentials (TFLite's `kAccumulationIntegerBits`).
const ACCUM_INTEGER_BITS: i32 = 12;

record_params! {
    /// Integer parameters of an int8 SOFTMAX, as TFLite-Micro's prepare step computes them
    /// (also its record parameters).
    ///
    /// The output is always int8 with scale 1/256 and zero point -128, as TFLite requires.
    pub struct SoftmaxParams {
        /// Q31 mantissa of `beta * input_scale * 2^26` (capped at `2^31 - 1`), positive.
        pub input_multiplier: i32,
        /// Left shift applied with `input_multiplier`, in `0..=31`.
        pub input_left_shift: i32,
        /// Input differences from the row maximum below this (in input units, so `<= 0`)
        /// count as `exp = 0`.
        pub diff_min: i32,
    }
}

impl SoftmaxParams {
    /// Parameters for a layer with this `beta` and input scale, computed in f64 exactly as
    /// TFLite's `PreprocessSoftmaxScaling` and `CalculateInputRadius` do.
    ///
    /// `None` if either value is not a positive finite number or the product is too small for
    /// TFLite (`beta * input_scale * 2^26 <= 1`, where TFLite's prepare aborts).
    pub fn from_scale(beta: f32, input_scale: f32) -> Option<Self> {
        if !(beta.is_finite() && beta > 0.0 && input_scale.is_finite() && input_scale > 0.0) {
            return None;
        }
        let max_real_multiplier = (1u64 << 31) as f64 - 1.0;
        let real = (f64::from(beta)
            * f64::from(input_scale)
            * f64::from(1u32 << (31 - DIFF_INTEGER_BITS)))
        .min(max_real_multiplier);
        // Finite here: both factors were checked and the product is capped.
        if real <= 1.0 {
            return None;
        }
        // `from_f64` stops at shift 30, but this multiplier may need 31. Halving is exact and
        // keeps frexp's mantissa, so encoding `real / 2` and adding one to the shift gives
        // precisely TFLite's `QuantizeMultiplier(real)`.
        let half = crate::quant::QuantizedMultiplier::from_f64(real * 0.5)?;
        let input_left_shift = half.shift + 1;
        if !(0..=31).contains(&input_left_shift) {
            return None;
        }
        Some(Self {
            input_multiplier: half.multiplier,
            input_left_shift,
            diff_min: -input_radius(input_left_shift),
        })
    }

    fn validate(&self) -> Result<(), Error> {
        if !(0..=31).contains(&self.input_left_shift) || self.input_multiplier <= 0 {
            return Err(Error::InvalidParameter {
                what: why!("softmax input multiplier (shift must be in 0..=31, multiplier > 0)"),
            });
        }
        // A positive diff_min would drop the row maximum itself and leave an empty sum.
        if self.diff_min > 0 {
            return Err(Error::InvalidParameter {
                what: why!("softmax diff_min (must be <= 0)"),
            });
        }
        Ok(())
    }

    /// The row element's difference from the row maximum as a Q5.26 number, or `None` if it
    /// is below `diff_min` (its exponential is taken as zero).
    #[inline(always)]
    fn scaled_diff(&self, x: i8, max: i8) -> Option<i32> {
        let diff = i32::from(x) - i32::from(max);
        if diff < self.diff_min {
            return None;
        }
        // TFLite's MultiplyByQuantizedMultiplierGreaterThanOne. diff_min guarantees the shift
        // does not overflow for valid parameters; wrapping keeps odd ones from panicking.
        let shifted = diff.wrapping_mul(1i32.wrapping_shl(self.input_left_shift as u32));
        Some(mul(shifted, self.input_multiplier))
    }
}

/// TFLite's `CalculateInputRadius(5, left_shift, 31)`: the largest input difference whose
/// rescaled value still fits the Q5.26 range, `floor((2^5 - 1) * 2^26 / 2^left_shift)`.
fn input_radius(left_shift: i32) -> i32 {
    let max_input_rescaled = f64::from((1i32 << DIFF_INTEGER_BITS) - 1)
        * (1u64 << (31 - DIFF_INTEGER_BITS)) as f64
        / (1u64 << left_shift) as f64;
    // At most 31 * 2^26 < 2^31, so the conversion is exact.
    libm::floor(max_input_rescaled) as i32
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT<exponent>` for `exponent > 0`: a left shift
/// that saturates instead of overflowing.
#[inline(always)]
fn saturating_shl(x: i32, exponent: u32) -> i32 {
    let threshold = (1i32 << (31 - exponent)) - 1;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x << exponent
    }
}

/// `exp(a)` for a Q0.31 `a` in `[-1/4, 0)`, as Q0.31: a 4th-order Taylor expansion around
/// -1/8 (gemmlowp's `exp_on_interval_between_negative_one_quarter_and_0_excl`).
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const EXP_MINUS_ONE_EIGHTH: i32 = 1_895_147_668; // exp(-1/8) in Q0.31
    const ONE_THIRD: i32 = 715_827_883; // 1/3 in Q0.31
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = mul(x, x);
    let x3 = mul(x2, x);
    let x4 = mul(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    // (x^4/4 + x^3) / 3 + x^2, halved: x^4/24 + x^3/6 + x^2/2.
    let poly = rounding_divide_by_pot(
        mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        1,
    );
    EXP_MINUS_ONE_EIGHTH.wrapping_add(mul(EXP_MINUS_ONE_EIGHTH, x.wrapping_add(poly)))
}

/// `exp(a)` for a Q5.26 `a <= 0`, as Q0.31 (gemmlowp's `exp_on_negative_values` with five
/// integer bits).
fn exp_on_negative_values(a: i32) -> i32 {
    exp_on_negative_values_q::<DIFF_INTEGER_BITS>(a)
}

/// `exp(a)` for an `a <= 0` with `BITS` integer bits (at most 5), as Q0.31: gemmlowp's
/// `exp_on_negative_values`. The fraction modulo 1/4 goes through the polynomial; each set
/// bit of the rest multiplies in a precomputed `exp(-2^k)`.
pub(crate) fn exp_on_negative_values_q<const BITS: i32>(a: i32) -> i32 {
    const { assert!(BITS >= 0 && BITS <= 5) };
    let fractional_bits = 31 - BITS;
    let one_quarter = 1 << (fractional_bits - 2);
    // exp(-2^k) in Q0.31 for k = -2..=4; gemmlowp takes those with k < BITS.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    let a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    // Rescaled to Q0.31: the value is in [-1/4, 0), so the saturating shift is exact.
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(saturating_shl(
        a_mod_quarter_minus_one_quarter,
        BITS as u32,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    for (k, factor) in BARREL {
        if k < BITS && remainder & (1 << (fractional_bits + k)) != 0 {
            result = mul(result, factor);
        }
    }
    if a == 0 {
        // exp(0) = 1 is not representable in Q0.31; gemmlowp's One() saturates.
        result = i32::MAX;
    }
    result
}

/// `1 / (1 + a)` for a Q0.31 `a` in `[0, 1)`, as Q0.31 (gemmlowp's
/// `one_over_one_plus_x_for_x_in_0_1`).
pub(crate) fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    // x approximates 2 / (1 + a) in Q2.29; halving and returning to Q0.31 is a shift of 1.
    saturating_shl(two_over_one_plus_x(a), 1)
}

/// `(1 - a) / (1 + a)` for a Q0.31 `a` in `[0, 1)`, as Q0.31 (gemmlowp's
/// `one_minus_x_over_one_plus_x_for_x_in_0_1`): `2 / (1 + a) - 1`.
pub(crate) fn one_minus_x_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    saturating_shl(two_over_one_plus_x(a).wrapping_sub(ONE_Q2_29), 2)
}

/// One in Q2.29.
const ONE_Q2_29: i32 = 1 << 29;

/// `2 / (1 + a)` for a Q0.31 `a` in `[0, 1)`, as Q2.29: three Newton-Raphson steps from the
/// 48/17 - 32/17 * d starting point, `d = (1 + a) / 2`.
fn two_over_one_plus_x(a: i32) -> i32 {
    const FORTY_EIGHT_OVER_SEVENTEEN: i32 = 1_515_870_810; // Q2.29
    const MINUS_THIRTY_TWO_OVER_SEVENTEEN: i32 = -1_010_580_540; // Q2.29
                                                                 // RoundingHalfSum(a, One): (a + 1) / 2 with gemmlowp's rounding, in Q0.31.
    let sum = i64::from(a) + i64::from(i32::MAX);
    let half_denominator = ((sum + if sum >= 0 { 1 } else { -1 }) / 2) as i32;
    let mut x = FORTY_EIGHT_OVER_SEVENTEEN
        .wrapping_add(mul(half_denominator, MINUS_THIRTY_TWO_OVER_SEVENTEEN));
    for _ in 0..3 {
        let half_denominator_times_x = mul(half_denominator, x);
        let one_minus = ONE_Q2_29.wrapping_sub(half_denominator_times_x);
        // Q2.29 * Q2.29 = Q4.27, back to Q2.29 with a saturating shift.
        x = x.wrapping_add(saturating_shl(mul(x, one_minus), 2));
    }
    x
}

/// An int8 SOFTMAX's output type: int8 (scale 1/256, zero point -128) or int16 (scale 1/65536,
/// zero point -32768).
trait SoftmaxOut: Copy {
    /// Bits, which fix the final shift.
    const BITS: i32;
    /// The zero point, the type's minimum.
    const MIN: i32;
    /// The type's maximum.
    const MAX: i32;
    /// `v`, which lies in `MIN..=MAX`.
    fn narrow(v: i32) -> Self;
}

impl SoftmaxOut for i8 {
    const BITS: i32 = 8;
    const MIN: i32 = i8::MIN as i32;
    const MAX: i32 = i8::MAX as i32;
    fn narrow(v: i32) -> Self {
        v as i8
    }
}

impl SoftmaxOut for i16 {
    const BITS: i32 = 16;
    const MIN: i32 = i16::MIN as i32;
    const MAX: i32 = i16::MAX as i32;
    fn narrow(v: i32) -> Self {
        v as i16
    }
}

/// TFLite's `GetReciprocal` for a positive Q12.19 sum: a Q0.31 `scale` and `bits_over_unit`
/// with `1 / sum = scale * 2^-bits_over_unit` (approximately).
fn reciprocal(sum: i32) -> (i32, i32) {
    let headroom_plus_one = (sum as u32).leading_zeros();
    let bits_over_unit = ACCUM_INTEGER_BITS - headroom_plus_one as i32;
    // Normalize into [1, 2) and subtract 1 (in Q0.31); sum > 0 keeps the shift below 32.
    let normalized = (sum as u32).checked_shl(headroom_plus_one).unwrap_or(0);
    let shifted_sum_minus_one = normalized.wrapping_sub(1 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        bits_over_unit,
    )
}

/// The Q0.31 reciprocal of a row's Q12.19 sum and the right shift that turns
/// `reciprocal * exp` into `output_bits`; `None` where TFLite's `0 <= exponent <= 31` check
/// would fail (int8: sum >= 512) or the sum does not fit in i32.
fn row_scale(sum: i64, output_bits: i32) -> Option<(i32, i32)> {
    // The row maximum contributes exp(0) = 2^19, so a valid sum is positive.
    let sum = i32::try_from(sum).ok().filter(|&s| s > 0)?;
    let (scale, bits_over_unit) = reciprocal(sum);
    let exponent = bits_over_unit + 31 - output_bits;
    (0..=31).contains(&exponent).then_some((scale, exponent))
}

/// Checks the row layout shared by both kernels.
fn check_rows(input: usize, output: usize, depth: usize) -> Result<(), Error> {
    if depth == 0 {
        return Err(Error::InvalidParameter {
            what: why!("softmax depth (must be >= 1)"),
        });
    }
    if output != input {
        return Err(Error::LengthMismatch {
            expected: input,
            actual: output,
        });
    }
    if input % depth != 0 {
        return Err(Error::ShapeMismatch {
            what: why!("softmax input length (a multiple of depth)"),
            expected: input - input % depth,
            actual: input,
        });
    }
    Ok(())
}

/// int8 SOFTMAX over rows of `depth` values, bit-exact with TFLite-Micro's reference kernel.
/// The output has scale 1/256 and zero point -128.
///
/// TFLite requires the row's sum of exponentials (each at most 1) to stay below 512; a row
/// that reaches it (512 or more near-maximal values) makes TFLite abort, and makes this
/// return `InvalidParameter`, with `output` partly written.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn softmax_i8(
    p: &SoftmaxParams,
    input: &[i8],
    output: &mut [i8],
    depth: usize,
) -> Result<(), Error> {
    softmax_int(p, input, output, depth)
}

/// int8 SOFTMAX with an int16 output (scale 1/65536, zero point -32768), bit-exact with
/// TFLite-Micro's reference kernel: [`softmax_i8`]'s arithmetic, 16 output bits.
#[inline(never)]
pub fn softmax_i8_i16(
    p: &SoftmaxParams,
    input: &[i8],
    output: &mut [i16],
    depth: usize,
) -> Result<(), Error> {
    softmax_int(p, input, output, depth)
}

/// TFLite-Micro's `reference_ops::Softmax` for an int8 input and output type `O`.
fn softmax_int<O: SoftmaxOut>(
    p: &SoftmaxParams,
    input: &[i8],
    output: &mut [O],
    depth: usize,
) -> Result<(), Error> {
    super::built(OpCode::Softmax)?;
    check_rows(input.len(), output.len(), depth)?;
    p.validate()?;
    for (row_in, row_out) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = row_in.iter().copied().fold(i8::MIN, i8::max);

        // Q12.19 sum; i64 so that a sum TFLite could not represent is caught, not wrapped.
        let mut sum: i64 = 0;
        for &x in row_in {
            if let Some(d) = p.scaled_diff(x, max) {
                let e = exp_on_negative_values(d);
                sum += i64::from(rounding_divide_by_pot(e, ACCUM_INTEGER_BITS));
            }
        }
        let Some((scale, exponent)) = row_scale(sum, O::BITS) else {
            return Err(Error::InvalidParameter {
                what: why!("softmax row (sum of exponentials >= 512, beyond TFLite's int8 kernel)"),
            });
        };

        for (o, &x) in row_out.iter_mut().zip(row_in) {
            *o = match p.scaled_diff(x, max) {
                Some(d) => {
                    let unsat =
                        rounding_divide_by_pot(mul(scale, exp_on_negative_values(d)), exponent);
                    O::narrow((unsat + O::MIN).clamp(O::MIN, O::MAX))
                }
                None => O::narrow(O::MIN),
            };
        }
    }
    Ok(())
}

/// `e^x` in f32: libm's `expf`, or micromath's faster approximation with `fast-math`.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    #[cfg(feature = "fast-math")]
    {
        // Called through the trait: under `std` (tests) `x.exp()` would pick std's exp.
        micromath::F32Ext::exp(x)
    }
    #[cfg(not(feature = "fast-math"))]
    {
        libm::expf(x)
    }
}

/// f32 SOFTMAX over rows of `depth` values: `exp(beta * (x - max)) / sum`, as TFLite's
/// reference kernel computes it (subtracting the row maximum keeps `exp` from overflowing).
pub fn softmax_f32(
    beta: f32,
    input: &[f32],
    output: &mut [f32],
    depth: usize,
) -> Result<(), Error> {
    check_rows(input.len(), output.len(), depth)?;
    if !beta.is_finite() {
        return Err(Error::InvalidParameter {
            what: why!("softmax beta (must be finite)"),
        });
    }
    for (row_in, row_out) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = row_in.iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0f32;
        for (o, &x) in row_out.iter_mut().zip(row_in) {
            *o = exp_f32((x - max) * beta);
            sum += *o;
        }
        for o in row_out.iter_mut() {
            *o /= sum;
        }
    }
    Ok(())
}

/// The longest row the int8 kernel takes: its sum of exponentials (each at most 1) must stay
/// below 512, and a row of 512 equal values reaches it.
const MAX_ROW: usize = 511;

/// SOFTMAX over the last dimension, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Softmax {
    /// Fixed-point parameters.
    pub params: SoftmaxParams,
    /// Row length.
    pub depth: usize,
    /// Whether the output is int16 (else int8).
    pub wide: bool,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Softmax {
    type Params = SoftmaxParams;
    type In = i8;
    type Out = u8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        cx.typed(input, DType::I8, "input")?;
        if cx.tensor(cx.output())?.dtype != DType::I16 {
            cx.typed(cx.output(), DType::I8, "output (int8 or int16)")?;
        }
        if cx.tensor(input)?.shape.c > MAX_ROW {
            return Err(LowerError::Unsupported {
                what: "int8 SOFTMAX over rows of 512 or more values can overflow TFLite's sum \
                       of exponentials at run time (rows of at most 511 cannot)",
            });
        }
        let (s_in, _) = cx.per_tensor(input)?;
        let params =
            SoftmaxParams::from_scale(cx.options().beta, s_in).ok_or(LowerError::Unsupported {
                what: "SOFTMAX's beta and input scale are out of TFLite's range",
            })?;
        cx.params(&params)
    }

    fn decode(d: &Decoder<'_, 'a>, params: SoftmaxParams) -> Self {
        let input = d.activation(0, DType::I8);
        let wide = d.any_tensor(usize::MAX).record.dtype == DType::I16;
        let output = d.output(if wide { DType::I16 } else { DType::I8 });
        d.same_elements(&input, &output);
        match wide {
            false => d.check(
                output.zero_point() == -128 && output.scale() == 1.0 / 256.0,
                why!("int8 SOFTMAX output must have scale 1/256 and zero point -128"),
            ),
            // TFLite-Micro's Prepare takes a scale within 0.1 % of 1/65536.
            true => d.check(
                output.zero_point() == -32768
                    && (output.scale() - 1.0 / 65536.0).abs() <= 0.001 / 65536.0,
                why!("int16 SOFTMAX output must have scale 1/65536 and zero point -32768"),
            ),
        }
        d.check(
            params.validate().is_ok(),
            why!("SOFTMAX parameters out of range"),
        );
        d.check(
            input.shape.c <= MAX_ROW,
            why!("int8 SOFTMAX rows longer than 511 can overflow TFLite's sum"),
        );
        Softmax {
            params,
            depth: input.shape.c,
            wide,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, u8>) -> Result<(), Error> {
        let input = v.inputs[0].data;
        match self.wide {
            false => {
                let output = crate::cast::slice_mut::<i8>(v.output.data).ok_or_else(misaligned)?;
                softmax_i8(&self.params, input, output, self.depth)
            }
            true if cfg!(feature = "kernel-softmax-int16") => {
                let output = crate::cast::slice_mut::<i16>(v.output.data).ok_or_else(misaligned)?;
                softmax_i8_i16(&self.params, input, output, self.depth)
            }
            true => Err(Error::InvalidParameter {
                what: why!("int16 SOFTMAX output needs feature kernel-softmax-int16"),
            }),
        }
    }

    fn kernel_paths(&self, _model: &Model<'a>, paths: &mut KernelPaths) -> Result<(), Error> {
        paths.take(KernelPath::SoftmaxInt16, self.wide);
        Ok(())
    }
}

fn misaligned() -> Error {
    Error::BadLayout {
        what: why!("int16 SOFTMAX output misaligned in the arena"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::Rng;

    fn run_i8(beta: f32, scale: f32, input: &[i8], depth: usize) -> Vec<i8> {
        let p = SoftmaxParams::from_scale(beta, scale).unwrap();
        let mut out = vec![0i8; input.len()];
        softmax_i8(&p, input, &mut out, depth).unwrap();
        out
    }

    #[test]
    fn params_match_tflite_prepare() {
        // beta * scale * 2^26 = 2^26 = 0.5 * 2^27: multiplier 2^30, shift 27;
        // radius floor(31 * 2^26 / 2^27) = floor(15.5) = 15.
        assert_eq!(
            SoftmaxParams::from_scale(1.0, 1.0),
            Some(SoftmaxParams {
                input_multiplier: 1 << 30,
                input_left_shift: 27,
                diff_min: -15
            })
        );
        // 0.1f32 * 2^26 = 6710886.5 = 0.800000011920929 * 2^23 -> 1717986944 (exact), shift 23;
        // radius floor(31 * 2^3) = 248.
        assert_eq!(
            SoftmaxParams::from_scale(1.0, 0.1),
            Some(SoftmaxParams {
                input_multiplier: 1_717_986_944,
                input_left_shift: 23,
                diff_min: -248
            })
        );
        // 100 * 2^26 exceeds the cap 2^31 - 1 = 0.99999999953 * 2^31: shift 31, which
        // QuantizedMultiplier::from_f64 alone could not express; radius floor(0.97) = 0.
        assert_eq!(
            SoftmaxParams::from_scale(1.0, 100.0),
            Some(SoftmaxParams {
                input_multiplier: i32::MAX,
                input_left_shift: 31,
                diff_min: 0
            })
        );
        // beta * scale * 2^26 <= 1 makes TFLite's prepare abort (checked against TFLite-Micro).
        assert_eq!(SoftmaxParams::from_scale(1.0, 1e-8), None);
        assert_eq!(SoftmaxParams::from_scale(0.0, 1.0), None);
        assert_eq!(SoftmaxParams::from_scale(1.0, f32::NAN), None);
        assert_eq!(SoftmaxParams::from_scale(f32::INFINITY, 1.0), None);
    }

    #[test]
    fn equal_inputs_give_a_uniform_distribution() {
        // Every difference is 0 and exp(0) saturates to 2^31 - 1 (Q0.31), which adds
        // RoundingDivideByPOT(2^31 - 1, 12) = 2^19 (1.0 in Q12.19) to the sum per element.
        // depth 4: sum 2^21 has 10 leading zeros, so bits_over_unit = 12 - 10 = 2 and the
        //   normalized sum is exactly 1.0: 1 / (1 + 0) saturates to 2^31 - 1. Then
        //   (2^31 - 1) * (2^31 - 1) (doubling high) = 2^31 - 2; shifted right by
        //   2 + 31 - 8 = 25 with rounding = 64 (0.25 * 256); 64 - 128 = -64.
        assert_eq!(run_i8(1.0, 0.1, &[5; 4], 4), [-64; 4]);
        // depth 2: the same with one bit less: 128 - 128 = 0.
        assert_eq!(run_i8(1.0, 0.1, &[-77; 2], 2), [0; 2]);
        // depth 3: sum 3 * 2^19 normalizes to 1.5; Newton gives 1 / 1.5 = 1431655762
        //   (2/3 * 2^31 = 1431655765.3); times exp(0) -> 1431655761; >> 24 rounded = 85
        //   (85.33); 85 - 128 = -43.
        assert_eq!(run_i8(1.0, 0.1, &[100; 3], 3), [-43; 3]);
        // depth 1: 256 - 128 = 128, which saturates to 127.
        assert_eq!(run_i8(1.0, 0.1, &[-128], 1), [127]);
        // The input scale does not matter when all inputs are equal.
        assert_eq!(run_i8(1.0, 7.5, &[3; 4], 4), [-64; 4]);
    }

    #[test]
    fn one_dominant_logit_takes_everything() {
        // Scale 1: diff_min = -15 (see above). The others sit 255 below the maximum, far
        // past diff_min, so they are skipped (exp = 0, output -128); the sum is exp(0) alone
        // and the maximum gets 256 - 128, saturated to 127.
        assert_eq!(
            run_i8(1.0, 1.0, &[127, -128, -128, -128], 4),
            [127, -128, -128, -128]
        );
        // Rows are independent: the second row's maximum is its last element.
        assert_eq!(
            run_i8(1.0, 1.0, &[127, -128, -128, -128, 0, -50, -30, 20], 4),
            [127, -128, -128, -128, -128, -128, -128, 127]
        );
    }

    #[test]
    fn matches_recorded_tflite_micro_outputs() {
        // Outputs of TFLite-Micro's own int8 SOFTMAX (its Python interpreter, reference
        // kernels), recorded for these inputs.
        assert_eq!(
            run_i8(1.0, 1.0, &[127, 126, 125, -128], 4),
            [42, -65, -105, -128]
        );
        assert_eq!(run_i8(1.0, 1.0, &[-128, -128, -127], 3), [-74, -74, 19]);
        assert_eq!(
            run_i8(1.0, 0.001, &[0, -1, -2, -3, 5, 127, -128], 7),
            [-92, -92, -92, -92, -91, -87, -96]
        );
        assert_eq!(
            run_i8(1.0, 0.05, &[0, -1, -2, -3, 5, 127, -128], 7),
            [-128, -128, -128, -128, -127, 126, -128]
        );
        let input = [-3, 0, 14, 127, 90, 90, -50, 2];
        assert_eq!(
            run_i8(1.0, 0.0374, &input, 8),
            [-127, -127, -126, 38, -86, -86, -128, -126]
        );
        assert_eq!(
            run_i8(0.7, 0.0374, &input, 4),
            [-120, -120, -116, 100, -8, -8, -125, -116]
        );
        // 511 equal values: each 1/511 of 256 = 0.501 -> 1 -> -127.
        assert_eq!(run_i8(1.0, 0.1, &[7; 511], 511), [-127; 511]);
    }

    #[test]
    fn sums_tflite_cannot_represent_are_refused() {
        // 512 equal values sum to 512.0: bits_over_unit 9 needs a shift of 32, past TFLite's
        // check (where TFLite-Micro aborts).
        let p = SoftmaxParams::from_scale(1.0, 0.1).unwrap();
        let mut out = [0i8; 600];
        assert!(matches!(
            softmax_i8(&p, &[7; 512], &mut out[..512], 512),
            Err(Error::InvalidParameter { .. })
        ));
        // With a small scale, 511 values 0.01 below the maximum still sum to under 512.
        let p = SoftmaxParams::from_scale(1.0, 0.01).unwrap();
        let mut input = [7i8; 513];
        input[512] = 8;
        assert_eq!(softmax_i8(&p, &input, &mut out[..513], 513), Ok(()));
        assert!(softmax_i8(&p, &[7; 600], &mut out, 600).is_err());
    }

    #[test]
    fn int8_softmax_is_within_one_lsb_of_f64() {
        // Property: against the f64 softmax of the dequantized input, rounded to the 1/256
        // grid, the fixed-point kernel is never off by more than 1 (measured over this run:
        // max error exactly 1 LSB).
        let mut rng = Rng(0x5eed);
        let mut worst = 0i32;
        for _ in 0..3_000 {
            let scale = rng.uniform(0.002, 0.5) as f32;
            let beta = [1.0f32, 0.5, 2.0][(rng.next() % 3) as usize];
            let depth = 1 + (rng.next() % 40) as usize;
            let spread = 1 + rng.next() % 256;
            let base = (rng.next() % 256) as i32 - 128;
            let input: Vec<i8> = (0..depth)
                .map(|_| (base + (rng.next() % spread) as i32).clamp(-128, 127) as i8)
                .collect();
            let got = run_i8(beta, scale, &input, depth);
            let max = f64::from(*input.iter().max().unwrap());
            let real = f64::from(beta) * f64::from(scale);
            let exps: Vec<f64> = input
                .iter()
                .map(|&x| ((f64::from(x) - max) * real).exp())
                .collect();
            let sum: f64 = exps.iter().sum();
            for (e, &g) in exps.iter().zip(&got) {
                let want = ((e / sum * 256.0).round() - 128.0).clamp(-128.0, 127.0) as i32;
                worst = worst.max((i32::from(g) - want).abs());
            }
        }
        assert!(worst <= 1, "worst error {worst} LSB");
    }

    #[test]
    fn f32_softmax_matches_f64() {
        // libm's expf is within an ulp or two; micromath's (fast-math) is within 2.4e-3
        // relative, which the normalization roughly doubles in the worst case.
        let tolerance = if cfg!(feature = "fast-math") {
            5e-3
        } else {
            1e-5
        };
        let mut rng = Rng(4242);
        for _ in 0..2_000 {
            let depth = 1 + (rng.next() % 30) as usize;
            let beta = rng.uniform(0.1, 3.0) as f32;
            let input: Vec<f32> = (0..2 * depth)
                .map(|_| rng.uniform(-8.0, 8.0) as f32)
                .collect();
            let mut out = vec![0f32; input.len()];
            softmax_f32(beta, &input, &mut out, depth).unwrap();
            for (row_in, row_out) in input.chunks(depth).zip(out.chunks(depth)) {
                let max = row_in.iter().fold(f64::MIN, |m, &x| m.max(f64::from(x)));
                let exps: Vec<f64> = row_in
                    .iter()
                    .map(|&x| ((f64::from(x) - max) * f64::from(beta)).exp())
                    .collect();
                let sum: f64 = exps.iter().sum();
                for (e, &o) in exps.iter().zip(row_out) {
                    let want = e / sum;
                    assert!(
                        (f64::from(o) - want).abs() <= tolerance * want.max(1e-6),
                        "got {o} want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_softmax_is_stable_for_large_inputs() {
        let mut out = [0f32; 6];
        // exp(1000) overflows f32; subtracting the maximum first keeps everything finite.
        softmax_f32(1.0, &[1000.0, 0.0, 1000.0, 5.0, 5.0, 5.0], &mut out, 3).unwrap();
        assert_eq!(out[0], 0.5);
        assert_eq!(out[1], 0.0);
        assert_eq!(out[2], 0.5);
        for &o in &out[3..] {
            assert!((o - 1.0 / 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let p = SoftmaxParams::from_scale(1.0, 0.1).unwrap();
        let mut out = [0i8; 6];
        let bad_depth = Err(Error::InvalidParameter {
            what: why!("softmax depth (must be >= 1)"),
        });
        assert_eq!(softmax_i8(&p, &[1; 6], &mut out, 0), bad_depth);
        assert_eq!(
            softmax_i8(&p, &[1; 5], &mut out, 5),
            Err(Error::LengthMismatch {
                expected: 5,
                actual: 6
            })
        );
        assert_eq!(
            softmax_i8(&p, &[1; 6], &mut out, 4),
            Err(Error::ShapeMismatch {
                what: why!("softmax input length (a multiple of depth)"),
                expected: 4,
                actual: 6
            })
        );
        for bad in [
            SoftmaxParams {
                input_left_shift: 32,
                ..p
            },
            SoftmaxParams {
                input_left_shift: -1,
                ..p
            },
            SoftmaxParams {
                input_multiplier: -1,
                ..p
            },
            SoftmaxParams { diff_min: 1, ..p },
        ] {
            assert!(matches!(
                softmax_i8(&bad, &[1; 6], &mut out, 3),
                Err(Error::InvalidParameter { .. })
            ));
        }
        // Hand-made parameters with a huge shift and no radius cannot panic.
        let wild = SoftmaxParams {
            input_multiplier: i32::MAX,
            input_left_shift: 31,
            diff_min: -1000,
        };
        let _ = softmax_i8(&wild, &[127, -128, 0, 5, 6, 7], &mut out, 6);
        let mut fout = [0f32; 4];
        assert_eq!(softmax_f32(1.0, &[0.0; 4], &mut fout, 0), bad_depth);
        assert_eq!(
            softmax_f32(1.0, &[0.0; 3], &mut fout, 3),
            Err(Error::LengthMismatch {
                expected: 3,
                actual: 4
            })
        );
        assert!(matches!(
            softmax_f32(f32::NAN, &[0.0; 4], &mut fout, 2),
            Err(Error::InvalidParameter { .. })
        ));
    }

    /// Over [-20, 0] micromath's exp stays within 2.4e-3 relative of libm's expf (measured on
    /// a 2,000,001-point sweep: max 2.387e-3, near x = -19.408; the same bound holds down to
    /// -87, below which micromath flushes to 0). Softmax arguments are always <= 0.
    #[cfg(feature = "fast-math")]
    #[test]
    fn fast_math_exp_error_is_bounded() {
        const BOUND: f64 = 2.4e-3;
        let n = 2_000_000u32;
        let mut worst = 0f64;
        for i in 0..=n {
            let x = -20.0 * (i as f32 / n as f32);
            let fast = f64::from(exp_f32(x));
            let exact = f64::from(libm::expf(x));
            worst = worst.max(((fast - exact) / exact).abs());
        }
        assert!(worst < BOUND, "max relative error {worst:e}");
        assert!(worst > 1e-4, "the fast path is not in use");
    }
}

#[cfg(test)]
mod int16_tests {
    use super::*;

    /// The int16 output is the int8 kernel's arithmetic with 16 output bits: equal inputs share
    /// 65536 evenly (offset by -32768), one dominant input takes it all (saturating at 32767),
    /// and every output, scaled down by 256, lies within one int8 step of the int8 kernel's.
    #[test]
    fn int16_output_is_the_int8_arithmetic_with_16_bits() {
        let p = SoftmaxParams::from_scale(1.0, 0.1).unwrap();
        let mut out = [0i16; 4];
        softmax_i8_i16(&p, &[5; 4], &mut out, 4).unwrap();
        assert_eq!(out, [-16384; 4]);
        let p1 = SoftmaxParams::from_scale(1.0, 1.0).unwrap();
        softmax_i8_i16(&p1, &[127, -128, -128, -128], &mut out, 4).unwrap();
        assert_eq!(out, [32767, -32768, -32768, -32768]);
        let input: Vec<i8> = (0..64).map(|k| (k * 37 % 256) as u8 as i8).collect();
        let p = SoftmaxParams::from_scale(1.0, 0.0374).unwrap();
        let (mut wide, mut narrow) = (vec![0i16; 64], vec![0i8; 64]);
        softmax_i8_i16(&p, &input, &mut wide, 8).unwrap();
        softmax_i8(&p, &input, &mut narrow, 8).unwrap();
        for (w, n) in wide.iter().zip(&narrow) {
            let scaled = (i32::from(*w) + 32768) as f64 / 256.0 - 128.0;
            assert!((scaled - f64::from(*n)).abs() <= 1.0, "{w} vs {n}");
        }
    }
}
