//! QUANTIZE (f32 -> int8, between int8 and uint8, and between integer types with an int16 or
//! int32 side) and DEQUANTIZE (int8 or uint8 -> f32): the edges of an int8 model.
//!
//! Both follow TFLite-Micro's reference kernels (`AffineQuantize`, `Requantize`, `Dequantize`)
//! bit for bit. A requantization between 8-bit types is a 256-entry table computed at lowering
//! ([`lut`](super::lut)); one with a wider side (an int16 model input, an int32 output)
//! requantizes element by element.

use super::lower::{LowerError, Lowering};
use super::lut::{lookup, tables, TABLE_LEN};
use super::operator::{Io, Operator, Views};
use super::record::NoParams;
use super::round_half_away_f32;
use crate::format::DType;
use crate::format::OpCode;
use crate::model::{Decoder, Scratch};
use crate::quant::QuantizedMultiplier;
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

/// What a QUANTIZE computes.
#[derive(Debug, Clone, Copy)]
pub enum QuantizeKind<'a> {
    /// f32 -> int8 with the output's scale and zero point.
    FromF32 {
        /// Output scale.
        scale: f32,
        /// Output zero point.
        zero_point: i32,
    },
    /// Between 8-bit types (int8 -> int8, int8 -> uint8, uint8 -> int8): TFLite's `Requantize`,
    /// tabulated at lowering.
    Table(&'a [u8; TABLE_LEN]),
    /// From or to a wider integer type (int16 -> int8, int16 -> int32, ...): TFLite's
    /// `Requantize`, element by element.
    Requantize(Requantize),
}

/// TFLite-Micro's `Requantize` between integer types of which one is wider than 8 bits:
/// `clamp(M(x - zp_in) + zp_out)` to the output type, `M` from `s_in / s_out` in double.
#[derive(Debug, Clone, Copy)]
pub struct Requantize {
    /// `s_in / s_out`.
    pub multiplier: QuantizedMultiplier,
    /// The input's zero point.
    pub input_zero_point: i32,
    /// The output's zero point.
    pub output_zero_point: i32,
    /// Input element type.
    pub from: DType,
    /// Output element type.
    pub to: DType,
}

/// The integer pairs [`Requantize`] takes: TFLite-Micro's QUANTIZE pairs with an int16 or
/// int32 side (int32 input only to 8 or 16 bits, as TFLite-Micro).
fn requantizes_wide(input: DType, output: DType) -> bool {
    use DType::{I16, I32, I8};
    matches!(
        (input, output),
        (I16, I8) | (I16, I16) | (I16, I32) | (I8, I16) | (I8, I32) | (I32, I8) | (I32, I16)
    )
}

/// The range of an integer output type.
fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        _ => (i32::MIN.into(), i32::MAX.into()),
    }
}

/// Requantizes `input` (elements of `r.from`, little-endian) into `output` (of `r.to`), as
/// TFLite-Micro's `Requantize`: `x - zp_in` in int32, the multiplier, `+ zp_out`, clamped to
/// the output type.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn requantize_wide(r: &Requantize, input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    super::built(OpCode::Quantize)?;
    let (n_in, n_out) = (r.from.size(), r.to.size());
    check_same_len(input.len() / n_in, output.len() / n_out)?;
    if input.len() % n_in != 0 || output.len() % n_out != 0 {
        return Err(misaligned());
    }
    let (lo, hi) = int_range(r.to);
    for (x, y) in input.chunks_exact(n_in).zip(output.chunks_exact_mut(n_out)) {
        let x = match *x {
            [a] => i32::from(a as i8),
            [a, b] => i32::from(i16::from_le_bytes([a, b])),
            [a, b, c, d] => i32::from_le_bytes([a, b, c, d]),
            _ => return Err(misaligned()),
        };
        let scaled = r.multiplier.apply(x.wrapping_sub(r.input_zero_point));
        let v = (i64::from(scaled) + i64::from(r.output_zero_point)).clamp(lo, hi) as i32;
        y.copy_from_slice(&v.to_le_bytes()[..n_out]);
    }
    Ok(())
}

/// QUANTIZE, decoded: f32 -> int8, or a requantization between 8-bit types.
#[derive(Debug, Clone, Copy)]
pub struct Quantize<'a> {
    /// Its arithmetic.
    pub kind: QuantizeKind<'a>,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

/// Whether TFLite-Micro's QUANTIZE requantizes `input` to `output` (both 8-bit).
fn requantizes(input: DType, output: DType) -> bool {
    matches!(
        (input, output),
        (DType::I8, DType::I8) | (DType::I8, DType::U8) | (DType::U8, DType::I8)
    )
}

impl<'a> Operator<'a> for Quantize<'a> {
    type Params = NoParams;
    type In = u8;
    type Out = u8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        let (from, to) = (cx.tensor(input)?.dtype, cx.tensor(cx.output())?.dtype);
        if from == DType::F32 {
            cx.typed(cx.output(), DType::I8, "output")?;
            return Ok(());
        }
        if requantizes_wide(from, to) {
            let (s_in, _) = cx.per_tensor(input)?;
            let (s_out, _) = cx.per_tensor(cx.output())?;
            let real = f64::from(s_in) / f64::from(s_out);
            let q = QuantizedMultiplier::from_f64(real).ok_or(LowerError::Unsupported {
                what: "QUANTIZE scales out of the representable range",
            })?;
            cx.requant(q);
            return Ok(());
        }
        if !requantizes(from, to) {
            return Err(LowerError::Unsupported {
                what: "QUANTIZE is supported from f32 to int8, between int8 and uint8, and \
                       between integer types with an int16 or int32 side",
            });
        }
        let table = tables::requantize(
            (cx.per_tensor(input)?, from == DType::I8),
            (cx.per_tensor(cx.output())?, to == DType::I8),
        )
        .ok_or(LowerError::Unsupported {
            what: "QUANTIZE scales out of the representable range",
        })?;
        cx.computed_input(1, &table)
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let from = d.any_tensor(0).record.dtype;
        let to = d.any_tensor(usize::MAX).record.dtype;
        let (input, output) = (d.activation(0, from), d.output(to));
        d.same_elements(&input, &output);
        let kind = match from {
            DType::F32 => {
                d.check(to == DType::I8, why!("QUANTIZE from f32 writes int8"));
                d.check(
                    check_scale(output.scale()).is_ok(),
                    why!("QUANTIZE needs a positive output scale"),
                );
                QuantizeKind::FromF32 {
                    scale: output.scale(),
                    zero_point: output.zero_point(),
                }
            }
            _ if requantizes_wide(from, to) => {
                let [multiplier] = d.requant_array::<1>();
                QuantizeKind::Requantize(Requantize {
                    multiplier,
                    input_zero_point: input.zero_point(),
                    output_zero_point: output.zero_point(),
                    from,
                    to,
                })
            }
            _ => {
                d.check(
                    requantizes(from, to),
                    why!("QUANTIZE between these types is not supported"),
                );
                QuantizeKind::Table(d.table(1))
            }
        };
        Quantize {
            kind,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, u8, u8>) -> Result<(), Error> {
        let (input, output) = (v.inputs[0].data, v.output.data);
        match self.kind {
            QuantizeKind::FromF32 { scale, zero_point } => {
                let input = crate::cast::slice::<f32>(input).ok_or_else(misaligned)?;
                let output = crate::cast::slice_mut::<i8>(output).ok_or_else(misaligned)?;
                quantize_f32_i8(scale, zero_point, input, output)
            }
            QuantizeKind::Table(table) => lookup(table, input, output),
            QuantizeKind::Requantize(r) => requantize_wide(&r, input, output),
        }
    }
}

/// An f32 tensor not on a 4-byte boundary (the planner aligns every tensor).
fn misaligned() -> Error {
    Error::BadLayout {
        what: why!("f32 tensor misaligned in the arena"),
    }
}

/// DEQUANTIZE int8 or uint8 -> f32, decoded (its parameters are the input tensor's).
#[derive(Debug, Clone, Copy)]
pub struct Dequantize {
    /// Input scale.
    pub scale: f32,
    /// Input zero point.
    pub zero_point: i32,
    /// Whether the input is uint8 (else int8).
    pub unsigned: bool,
    /// Input tensor.
    pub input: u16,
    /// Output tensor (f32).
    pub output: u16,
}

impl<'a> Operator<'a> for Dequantize {
    type Params = NoParams;
    type In = u8;
    type Out = u8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        if cx.tensor(input)?.dtype != DType::U8 {
            cx.typed(input, DType::I8, "input")?;
        }
        cx.typed(cx.output(), DType::F32, "output")?;
        Ok(())
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let unsigned = d.any_tensor(0).record.dtype == DType::U8;
        let input = d.activation(0, if unsigned { DType::U8 } else { DType::I8 });
        let output = d.output(DType::F32);
        d.same_elements(&input, &output);
        d.check(
            check_scale(input.scale()).is_ok(),
            why!("DEQUANTIZE needs a positive input scale"),
        );
        Dequantize {
            scale: input.scale(),
            zero_point: input.zero_point(),
            unsigned,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, u8, u8>) -> Result<(), Error> {
        let output = crate::cast::slice_mut::<f32>(v.output.data).ok_or_else(misaligned)?;
        let input = v.inputs[0].data;
        match self.unsigned {
            true => dequantize_u8_f32(self.scale, self.zero_point, input, output),
            false => {
                let input = crate::cast::slice::<i8>(input).ok_or_else(misaligned)?;
                dequantize_i8_f32(self.scale, self.zero_point, input, output)
            }
        }
    }
}

/// Dequantizes a uint8 `input` into `output` (same length), as TFLite's DEQUANTIZE does.
#[inline(never)]
pub fn dequantize_u8_f32(
    scale: f32,
    zero_point: i32,
    input: &[u8],
    output: &mut [f32],
) -> Result<(), Error> {
    super::built(OpCode::Dequantize)?;
    check_scale(scale)?;
    check_same_len(input.len(), output.len())?;
    for (o, &q) in output.iter_mut().zip(input) {
        // Exact in f64, rounded once to f32 as TFLite's f32 product is.
        let centered = i64::from(q) - i64::from(zero_point);
        *o = (f64::from(scale) * centered as f64) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::Rng;

    #[test]
    fn uint8_dequantizes_like_int8_shifted_by_128() {
        let codes: Vec<u8> = (0..=255).collect();
        let signed: Vec<i8> = codes.iter().map(|&c| (c ^ 0x80) as i8).collect();
        let (mut a, mut b) = (vec![0f32; 256], vec![0f32; 256]);
        dequantize_u8_f32(0.037, 131, &codes, &mut a).unwrap();
        dequantize_i8_f32(0.037, 3, &signed, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(dequantize_u8_f32(0.0, 0, &codes, &mut a).is_err());
    }

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

#[cfg(test)]
mod wide_tests {
    use super::*;

    fn run(r: &Requantize, input: &[u8], out_len: usize) -> Vec<u8> {
        let mut out = vec![0u8; out_len];
        requantize_wide(r, input, &mut out).unwrap();
        out
    }

    /// int16 -> int32 as the keyword models end: softmax probabilities (zero point -32768)
    /// halved onto a zero point of 0, `(x + 32768) * 0.5` rounded half away from zero.
    #[test]
    fn int16_to_int32_halves_the_probabilities() {
        let r = Requantize {
            multiplier: QuantizedMultiplier::from_f64(0.5).unwrap(),
            input_zero_point: -32768,
            output_zero_point: 0,
            from: DType::I16,
            to: DType::I32,
        };
        let xs = [-32768i16, -32767, -1, 0, 1, 32767];
        let input: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        let out = run(&r, &input, 24);
        let got: Vec<i32> = out
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(got, [0, 1, 16384, 16384, 16385, 32768]);
    }

    /// int16 -> int8 saturates at the int8 range; a wrong byte count is an error.
    #[test]
    fn int16_to_int8_saturates() {
        let r = Requantize {
            multiplier: QuantizedMultiplier::from_f64(0.000625 / 0.0592).unwrap(),
            input_zero_point: 0,
            output_zero_point: -128,
            from: DType::I16,
            to: DType::I8,
        };
        let xs = [-32768i16, 0, 94, 95, 24_000, 32767];
        let input: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        let got: Vec<i8> = run(&r, &input, 6).iter().map(|&b| b as i8).collect();
        // 94 * 0.0105574 = 0.99 -> 1; 95 -> 1.003 -> 1; 24000 -> 253.4 -> 253 - 128 = 125;
        // 32767 -> 345.9, past 127.
        assert_eq!(got, [-128, -128, -127, -127, 125, 127]);
        let mut out = [0u8; 5];
        assert!(requantize_wide(&r, &input, &mut out).is_err());
        assert!(requantize_wide(&r, &input[..11], &mut [0u8; 5]).is_err());
    }
}
