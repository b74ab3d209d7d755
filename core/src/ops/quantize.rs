//! QUANTIZE (f32 -> int8) and DEQUANTIZE (int8 -> f32): the edges of an int8 model.
//!
//! Both follow TFLite-Micro's reference kernels (`AffineQuantize`, `Dequantize`) bit for bit.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::NoParams;
use super::round_half_away_f32;
use crate::format::DType;
use crate::format::OpCode;
use crate::model::{Decoder, Scratch};
use crate::Error;

/// Quantizes one value: `clamp(round(x / scale) + zero_point, -128, 127)`.
///
/// The division is done in f32 and rounds half away from zero, as TFLite's `AffineQuantize`
/// does. Out-of-range values saturate; NaN maps to the zero point.
#[inline]
pub fn quantize_one(scale: f32, zero_point: i32, x: f32) -> i8 {
    let q = round_half_away_f32(x / scale).saturating_add(zero_point);
    q.clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
}

/// Dequantizes one value: `scale * (q - zero_point)`.
///
/// The product is formed in f64 and rounded once to f32. TFLite-Micro multiplies in f32, which
/// gives the same bits: both are the exact product rounded once, since `q - zero_point` fits in
/// 24 bits for any int8 zero point.
#[inline]
pub fn dequantize_one(scale: f32, zero_point: i32, q: i8) -> f32 {
    // i64 so that no zero point, however wrong, can overflow the subtraction.
    let centered = i64::from(q) - i64::from(zero_point);
    (f64::from(scale) * centered as f64) as f32
}

/// A quantization scale must be a positive finite number; anything else is a corrupt model.
fn check_scale(scale: f32) -> Result<(), Error> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            what: why!("quantization scale (must be finite and > 0)"),
        })
    }
}

fn check_same_len(expected: usize, actual: usize) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::LengthMismatch { expected, actual })
    }
}

/// Quantizes `input` into `output` (same length) with one scale and zero point, as TFLite's
/// QUANTIZE does for an f32 input and an int8 output.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn quantize_f32_i8(
    scale: f32,
    zero_point: i32,
    input: &[f32],
    output: &mut [i8],
) -> Result<(), Error> {
    super::built(OpCode::Quantize)?;
    check_scale(scale)?;
    check_same_len(input.len(), output.len())?;
    for (o, &x) in output.iter_mut().zip(input) {
        *o = quantize_one(scale, zero_point, x);
    }
    Ok(())
}

/// Dequantizes `input` into `output` (same length), as TFLite's DEQUANTIZE does for an int8
/// input and an f32 output.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn dequantize_i8_f32(
    scale: f32,
    zero_point: i32,
    input: &[i8],
    output: &mut [f32],
) -> Result<(), Error> {
    super::built(OpCode::Dequantize)?;
    check_scale(scale)?;
    check_same_len(input.len(), output.len())?;
    for (o, &q) in output.iter_mut().zip(input) {
        *o = dequantize_one(scale, zero_point, q);
    }
    Ok(())
}

/// QUANTIZE f32 -> int8, decoded (its parameters are the output tensor's).
#[derive(Debug, Clone, Copy)]
pub struct Quantize {
    /// Output scale.
    pub scale: f32,
    /// Output zero point.
    pub zero_point: i32,
    /// Input tensor (f32).
    pub input: u16,
    /// Output tensor (int8).
    pub output: u16,
}

impl<'a> Operator<'a> for Quantize {
    type Params = NoParams;
    type In = f32;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        cx.typed(input, DType::F32, "input")?;
        cx.typed(cx.output(), DType::I8, "output")?;
        Ok(())
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let input = d.activation(0, DType::F32);
        let output = d.output(DType::I8);
        d.same_elements(&input, &output);
        d.check(
            check_scale(output.scale()).is_ok(),
            why!("QUANTIZE needs a positive output scale"),
        );
        Quantize {
            scale: output.scale(),
            zero_point: output.zero_point(),
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, f32, i8>) -> Result<(), Error> {
        quantize_f32_i8(self.scale, self.zero_point, v.inputs[0].data, v.output.data)
    }
}

/// DEQUANTIZE int8 -> f32, decoded (its parameters are the input tensor's).
#[derive(Debug, Clone, Copy)]
pub struct Dequantize {
    /// Input scale.
    pub scale: f32,
    /// Input zero point.
    pub zero_point: i32,
    /// Input tensor (int8).
    pub input: u16,
    /// Output tensor (f32).
    pub output: u16,
}

impl<'a> Operator<'a> for Dequantize {
    type Params = NoParams;
    type In = i8;
    type Out = f32;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        cx.typed(input, DType::I8, "input")?;
        cx.typed(cx.output(), DType::F32, "output")?;
        Ok(())
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::F32);
        d.same_elements(&input, &output);
        d.check(
            check_scale(input.scale()).is_ok(),
            why!("DEQUANTIZE needs a positive input scale"),
        );
        Dequantize {
            scale: input.scale(),
            zero_point: input.zero_point(),
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, f32>) -> Result<(), Error> {
        dequantize_i8_f32(self.scale, self.zero_point, v.inputs[0].data, v.output.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::Rng;

    #[test]
    fn ties_round_half_away_from_zero() {
        // scale 0.5: x / scale = 2x exactly, so these land on exact .5 ties.
        let input = [0.25f32, -0.25, 0.75, -0.75, 1.25, -1.25, 0.0, -0.0];
        let mut out = [0i8; 8];
        quantize_f32_i8(0.5, 0, &input, &mut out).unwrap();
        // 0.5 -> 1, -0.5 -> -1, 1.5 -> 2, -1.5 -> -2, 2.5 -> 3, -2.5 -> -3 (never banker's).
        assert_eq!(out, [1, -1, 2, -2, 3, -3, 0, 0]);
        // The zero point is added after rounding: round(2.5) + 10 = 13, round(-2.5) + 10 = 7.
        quantize_f32_i8(0.5, 10, &[1.25, -1.25], &mut out[..2]).unwrap();
        assert_eq!(&out[..2], &[13, 7]);
        // Just below a tie stays down: 0.49999997 / 1 rounds to 0 (a naive floor(x + 0.5)
        // would give 1 here because 0.49999997 + 0.5 rounds to 1.0 in f32).
        assert_eq!(quantize_one(1.0, 0, 0.499_999_97), 0);
    }

    #[test]
    fn quantize_saturates_at_the_int8_range() {
        let input = [
            1e9f32,
            -1e9,
            200.0,
            -200.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let mut out = [0i8; 7];
        quantize_f32_i8(1.0, -5, &input, &mut out).unwrap();
        // NaN has no rounding; it maps to the zero point (-5) instead of misbehaving.
        assert_eq!(out, [127, -128, 127, -128, 127, -128, -5]);
        // A large zero point pushes ordinary values into saturation: 3 + 126 = 129 -> 127.
        assert_eq!(quantize_one(1.0, 126, 3.0), 127);
        assert_eq!(quantize_one(1.0, i32::MIN, 3.0), -128);
    }

    #[test]
    fn dequantize_is_the_once_rounded_product() {
        let input = [-128i8, -1, 0, 3, 127];
        let mut out = [0f32; 5];
        dequantize_i8_f32(0.1, 3, &input, &mut out).unwrap();
        let expect = |q: i32| (0.1f32 as f64 * f64::from(q - 3)) as f32;
        assert_eq!(out, [expect(-128), expect(-1), expect(0), 0.0, expect(127)]);
        // A power-of-two scale is exact: (127 - (-128)) / 256 = 255 / 256.
        assert_eq!(dequantize_one(1.0 / 256.0, -128, 127), 255.0 / 256.0);
        assert_eq!(dequantize_one(1.0 / 256.0, -128, -128), 0.0);
    }

    #[test]
    fn every_int8_value_survives_a_round_trip() {
        for &(scale, zp) in &[(0.1f32, 3), (1.0 / 256.0, -128), (0.037, -17), (2.5, 127)] {
            for q in i8::MIN..=i8::MAX {
                let x = dequantize_one(scale, zp, q);
                assert_eq!(quantize_one(scale, zp, x), q, "scale {scale} zp {zp} q {q}");
            }
        }
    }

    #[test]
    fn quantize_matches_f64_rounding_off_ties() {
        // Property: away from exact ties, the f32 division rounds to the same integer as f64.
        let mut rng = Rng(0x9e37_79b9);
        for _ in 0..20_000 {
            let scale = rng.uniform_f32(0.001, 2.0);
            let zp = (rng.next() % 256) as i32 - 128;
            let x = rng.uniform_f32(-300.0, 300.0);
            let exact = f64::from(x) / f64::from(scale);
            if (exact - exact.floor() - 0.5).abs() < 1e-4 {
                continue; // f32 may fall on either side of a near-tie
            }
            let want = (exact.round() as i64 + i64::from(zp)).clamp(-128, 127) as i8;
            assert_eq!(
                quantize_one(scale, zp, x),
                want,
                "x {x} scale {scale} zp {zp}"
            );
        }
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step() {
        // Property: in range, dequantize(quantize(x)) is within scale / 2 of x.
        let mut rng = Rng(12345);
        for _ in 0..20_000 {
            let scale = rng.uniform_f32(0.001, 1.0);
            let zp = (rng.next() % 256) as i32 - 128;
            let lo = (-128 - zp) as f32 * scale;
            let hi = (127 - zp) as f32 * scale;
            let x = rng.uniform_f32(lo, hi);
            let back = dequantize_one(scale, zp, quantize_one(scale, zp, x));
            assert!(
                f64::from((back - x).abs()) <= f64::from(scale) * 0.5 * (1.0 + 1e-5),
                "x {x} back {back} scale {scale}"
            );
        }
    }

    #[test]
    fn bad_lengths_and_scales_are_refused() {
        let mut out = [0i8; 2];
        assert_eq!(
            quantize_f32_i8(1.0, 0, &[1.0, 2.0, 3.0], &mut out),
            Err(Error::LengthMismatch {
                expected: 3,
                actual: 2
            })
        );
        let mut out_f = [0f32; 3];
        assert_eq!(
            dequantize_i8_f32(1.0, 0, &[1, 2], &mut out_f),
            Err(Error::LengthMismatch {
                expected: 2,
                actual: 3
            })
        );
        for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                quantize_f32_i8(bad, 0, &[1.0, 2.0], &mut out),
                Err(Error::InvalidParameter { .. })
            ));
            assert!(matches!(
                dequantize_i8_f32(bad, 0, &[1, 2], &mut out_f[..2]),
                Err(Error::InvalidParameter { .. })
            ));
        }
        // Empty buffers are fine.
        assert_eq!(quantize_f32_i8(1.0, 0, &[], &mut []), Ok(()));
    }
}
