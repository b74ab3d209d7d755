//! Fixed-point requantization, bit-exact with TensorFlow Lite Micro.
//!
//! An int32 accumulator is scaled by a real multiplier `m` (e.g. `s_in * s_w / s_out`) that is
//! stored as a Q31 mantissa and a power-of-two exponent. The rounding here is TFLite-Micro's
//! "double rounding": a saturating rounding doubling high multiply, then a rounding shift.

use crate::Error;

/// A real multiplier in TFLite's fixed-point form: `m = multiplier * 2^(shift - 31)`.
///
/// `repr(C)` because arrays of them are read in place from the model blob.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QuantizedMultiplier {
    /// Q31 mantissa in `[2^30, 2^31)`, or 0 for a zero multiplier.
    pub multiplier: i32,
    /// Power-of-two exponent: positive shifts left, negative shifts right.
    pub shift: i32,
}

impl QuantizedMultiplier {
    /// Encodes a real multiplier the way TFLite's `QuantizeMultiplier` does.
    ///
    /// Multipliers too small to represent become zero, as in TFLite. Returns `None` for
    /// negative, non-finite or too-large (>= 2^31) multipliers, which no valid model has.
    pub fn from_f64(real: f64) -> Option<Self> {
        if !real.is_finite() || real < 0.0 {
            return None;
        }
        if real == 0.0 {
            return Some(Self {
                multiplier: 0,
                shift: 0,
            });
        }
        let (mantissa, mut shift) = frexp(real);
        // Round half away from zero, as C's `round` does.
        let mut q = libm_round(mantissa * (1u64 << 31) as f64) as i64;
        if q == 1i64 << 31 {
            q /= 2;
            shift += 1;
        }
        if shift < -31 {
            return Some(Self {
                multiplier: 0,
                shift: 0,
            });
        }
        if shift > 30 {
            return None;
        }
        Some(Self {
            multiplier: q as i32,
            shift,
        })
    }

    /// Applies the multiplier to an accumulator, as TFLite-Micro's `MultiplyByQuantizedMultiplier`.
    #[inline(always)]
    pub fn apply(self, x: i32) -> i32 {
        let left = if self.shift > 0 { self.shift } else { 0 };
        let right = if self.shift > 0 { 0 } else { -self.shift };
        rounding_divide_by_pot(
            saturating_rounding_doubling_high_mul(x.wrapping_shl(left as u32), self.multiplier),
            right,
        )
    }
}

/// `(a * b * 2) >> 32`, rounded to nearest, saturating the single overflowing case.
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division truncates toward zero, like the C++ it must match; a shift would floor.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent`, rounded to nearest with ties away from zero.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31) as u32;
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// Splits `x > 0` into a mantissa in `[0.5, 1)` and an exponent, like C's `frexp`.
pub(crate) fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    if exp_bits == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (m, e - 54);
    }
    let mantissa = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (mantissa, exp_bits - 1022)
}

/// Rounds half away from zero without std.
pub(crate) fn libm_round(x: f64) -> f64 {
    let t = x as i64 as f64; // truncation; |x| < 2^32 here
    let diff = x - t;
    if diff >= 0.5 {
        t + 1.0
    } else if diff <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Dot product of two int8 vectors with zero-point offsets, accumulated in int32:
/// `sum((a[i] + a_offset) * (b[i] + b_offset))`.
///
/// The inner loop of FULLY_CONNECTED; also the firmware's first measured workload.
pub fn dot_i8(a: &[i8], a_offset: i32, b: &[i8], b_offset: i32) -> Result<i32, Error> {
    if a.len() != b.len() {
        return Err(Error::LengthMismatch {
            expected: a.len(),
            actual: b.len(),
        });
    }
    Ok(a.iter().zip(b).fold(0i32, |acc, (&x, &y)| {
        acc.wrapping_add((x as i32 + a_offset) * (y as i32 + b_offset))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_encoding_matches_tflite() {
        // Values worked out by hand from TFLite's QuantizeMultiplier.
        assert_eq!(
            QuantizedMultiplier::from_f64(0.5),
            Some(QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 0
            })
        );
        assert_eq!(
            QuantizedMultiplier::from_f64(1.0),
            Some(QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 1
            })
        );
        assert_eq!(
            QuantizedMultiplier::from_f64(0.25),
            Some(QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: -1
            })
        );
        // 0.75 = 0.75 * 2^0 -> mantissa 0.75 * 2^31.
        assert_eq!(
            QuantizedMultiplier::from_f64(0.75),
            Some(QuantizedMultiplier {
                multiplier: 1_610_612_736,
                shift: 0
            })
        );
        // A mantissa that rounds up to 2^31 moves into the exponent.
        let just_below_one = 1.0 - f64::EPSILON / 4.0;
        assert_eq!(
            QuantizedMultiplier::from_f64(just_below_one),
            Some(QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 1
            })
        );
        assert_eq!(
            QuantizedMultiplier::from_f64(1e-12),
            Some(QuantizedMultiplier {
                multiplier: 0,
                shift: 0
            })
        );
        assert_eq!(QuantizedMultiplier::from_f64(-1.0), None);
        assert_eq!(QuantizedMultiplier::from_f64(f64::NAN), None);
    }

    #[test]
    fn doubling_high_mul_rounds_and_saturates() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // 2^30 * 2^30 * 2 / 2^32 = 2^29.
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        // gemmlowp's nudge rounds positive ties up but negative ties toward zero:
        // 1.5 -> 2, 0.5 -> 1, -0.5 -> 0, -1.5 -> -1, -2.5 -> -2.
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        assert_eq!(saturating_rounding_doubling_high_mul(-5, 1 << 30), -2);
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1);
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0);
    }

    #[test]
    fn rounding_divide_ties_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(7, 2), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(6, 2), 2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(123, 0), 123);
    }

    #[test]
    fn apply_matches_real_multiplication_within_one() {
        // Property: the fixed-point result is the real product rounded, off by at most one.
        let mut state = 0x1234_5678u32;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let x = (state as i32) >> 8;
            let real = (state % 1_000_000) as f64 / 1_000_000.0 * 4.0 + 1e-6;
            let q = QuantizedMultiplier::from_f64(real).unwrap();
            let expected = (x as f64 * real).round();
            let got = q.apply(x) as f64;
            assert!(
                (got - expected).abs() <= 1.0,
                "x={x} m={real} got={got} want={expected}"
            );
        }
    }

    #[test]
    fn dot_product_with_offsets() {
        let a = [1i8, -2, 3, -128, 127];
        let b = [4i8, 5, -6, 1, -1];
        // (1+1)(4-2) + (-1)(3) + (4)(-8) + (-127)(-1) + (128)(-3)
        assert_eq!(dot_i8(&a, 1, &b, -2), Ok(4 - 3 - 32 + 127 - 384));
        assert_eq!(
            dot_i8(&a, 0, &b[..4], 0),
            Err(Error::LengthMismatch {
                expected: 5,
                actual: 4
            })
        );
    }
}
