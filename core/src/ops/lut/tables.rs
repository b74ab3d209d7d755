//! The int8 functions a [`Lut`](super::Lut) tabulates, each as TFLite-Micro's Prepare and
//! integer kernel compute it. They run on the host, once per layer, for the 256 inputs.

use super::super::softmax::{
    exp_on_negative_values_q, one_minus_x_over_one_plus_x_for_x_in_0_1,
    one_over_one_plus_x_for_x_in_0_1,
};
use crate::quant::{frexp, libm_round, rounding_divide_by_pot, QuantizedMultiplier};

/// A `(scale, zero_point)` pair.
pub type Quant = (f32, i32);

/// TFLite's int8 LOGISTIC and TANH input stage: the input's offset, `x` rescaled to Q4.27 by
/// `input_multiplier` / `input_left_shift`, and saturation beyond `input_range_radius`.
#[derive(Debug, Clone, Copy)]
struct Q4Input {
    zero_point: i32,
    radius: i32,
    rescale: QuantizedMultiplier,
}

impl Q4Input {
    /// What `CalculateArithmeticOpDataLogistic` / TANH's prepare compute; `None` for a scale
    /// so small the radius overflows (TFLite's would be undefined).
    fn prepare((scale, zero_point): Quant) -> Option<Self> {
        const INTEGER_BITS: i32 = 4;
        let real = f64::from(scale) * f64::from(1u32 << (31 - INTEGER_BITS));
        if !(real.is_finite() && real > 0.0) {
            return None;
        }
        let (q, shift) = frexp(real);
        // TFLite casts without the usual 2^31 correction: a mantissa rounding up to 2^31
        // wraps, as the C++ cast does.
        let multiplier = libm_round(q * (1u64 << 31) as f64) as i64 as i32;
        // CalculateInputRadius(4, shift, 31).
        let radius = libm::floor(
            f64::from((1 << INTEGER_BITS) - 1) * f64::from(1u32 << (31 - INTEGER_BITS))
                / libm::pow(2.0, f64::from(shift)),
        );
        if !(0.0..=f64::from(i32::MAX)).contains(&radius) {
            return None;
        }
        Some(Self {
            zero_point,
            radius: radius as i32,
            rescale: QuantizedMultiplier { multiplier, shift },
        })
    }

    /// `Err(saturated output)` beyond the radius, else the Q4.27 input.
    fn rescale(&self, x: i8) -> Result<i32, bool> {
        let input = i32::from(x) - self.zero_point;
        if input <= -self.radius {
            Err(false)
        } else if input >= self.radius {
            Err(true)
        } else {
            // Inside the radius the shift is below 31 and the product cannot overflow.
            Ok(self.rescale.apply(input))
        }
    }
}

/// int8 LOGISTIC into an output of scale 1/256, zero point -128 (`None`: the input scale is
/// unusable).
pub fn logistic(input: Quant) -> Option<[i8; 256]> {
    let stage = Q4Input::prepare(input)?;
    Some(tabulate(|x| match stage.rescale(x) {
        Err(high) => saturated(high),
        Ok(a) => {
            // gemmlowp::logistic on Q4.27.
            let q0 = match a {
                0 => 1 << 30,
                _ => {
                    let positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values_q::<4>(
                        a.wrapping_abs().wrapping_neg(),
                    ));
                    match a > 0 {
                        true => positive,
                        false => i32::MAX.wrapping_sub(positive),
                    }
                }
            };
            clamp_i8(rounding_divide_by_pot(q0, 31 - 8) - 128)
        }
    }))
}

/// int8 TANH into an output of scale 1/128, zero point 0.
pub fn tanh(input: Quant) -> Option<[i8; 256]> {
    let stage = Q4Input::prepare(input)?;
    Some(tabulate(|x| match stage.rescale(x) {
        Err(high) => saturated(high),
        Ok(a) => {
            // gemmlowp::tanh on Q4.27: -tanh(n) for n = -|a| <= 0, whose doubling is the same
            // raw value read with five integer bits.
            let q0 = match a {
                0 => 0,
                _ => {
                    let n = a.wrapping_abs().wrapping_neg();
                    let t =
                        one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values_q::<5>(n));
                    match a < 0 {
                        true => t.wrapping_neg(),
                        false => t,
                    }
                }
            };
            clamp_i8(rounding_divide_by_pot(q0, 31 - 7))
        }
    }))
}

/// TFLite's int8 HARD_SWISH parameters (`HardSwishPrepare`).
#[derive(Debug, Clone, Copy)]
struct HardSwish {
    input_zero_point: i32,
    output_zero_point: i32,
    output_multiplier: i16,
    output_exponent: i32,
    reluish_multiplier: i16,
    reluish_exponent: i32,
}

/// TFLite's `DownScaleInt32ToInt16Multiplier`.
fn downscale_to_i16(m: i32) -> i16 {
    const ROUNDING: i32 = 1 << 15;
    if m >= i32::MAX - ROUNDING {
        i16::MAX
    } else {
        ((m + ROUNDING) >> 16) as i16
    }
}

/// gemmlowp's 16-bit `SaturatingRoundingDoublingHighMul`.
fn srdhm16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    let ab = i32::from(a) * i32::from(b);
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// TFLite's `SaturatingDoublingHighMul` (16-bit, truncating).
fn sdhm16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    ((i32::from(a) * i32::from(b)) / (1 << 15)) as i16
}

/// gemmlowp's 16-bit `RoundingDivideByPOT`, its mask truncated to 16 bits as in C++.
fn rounding_divide_by_pot16(x: i16, exponent: i32) -> i16 {
    let exponent = exponent.clamp(0, 31);
    let mask = ((1i64 << exponent) - 1) as i16;
    let remainder = x & mask;
    let threshold = (mask >> 1).wrapping_add(i16::from(x < 0));
    let shifted = (i32::from(x) >> exponent) as i16;
    shifted.wrapping_add(i16::from(remainder > threshold))
}

/// TFLite's `SaturatingLeftShift` for int16.
fn saturating_left_shift16(x: i16, amount: i32) -> i16 {
    let v = i64::from(x) << amount.clamp(0, 40);
    v.clamp(i16::MIN.into(), i16::MAX.into()) as i16
}

impl HardSwish {
    fn prepare(input: Quant, output: Quant) -> Option<Self> {
        let hires_input_scale = (1.0f32 / 128.0) * input.0;
        let reluish_scale = 3.0f32 / 32768.0;
        let out = QuantizedMultiplier::from_f64(f64::from(hires_input_scale / output.0))?;
        let reluish = QuantizedMultiplier::from_f64(f64::from(hires_input_scale / reluish_scale))?;
        if out.shift > 0 {
            return None;
        }
        Some(Self {
            input_zero_point: input.1,
            output_zero_point: output.1,
            output_multiplier: downscale_to_i16(out.multiplier),
            output_exponent: out.shift,
            reluish_multiplier: downscale_to_i16(reluish.multiplier),
            reluish_exponent: reluish.shift,
        })
    }

    /// `reference_ops::HardSwish` for one int8 value.
    fn apply(&self, x: i8) -> i8 {
        let input = (i32::from(x) - self.input_zero_point) as i16;
        let hires = input.wrapping_mul(1 << 7);
        let preshift_output = srdhm16(hires, self.output_multiplier);
        let mut reluish = hires;
        if self.reluish_exponent > 0 {
            reluish = saturating_left_shift16(reluish, self.reluish_exponent - 1);
        }
        reluish = srdhm16(reluish, self.reluish_multiplier);
        if self.reluish_exponent > 0 {
            reluish = saturating_left_shift16(reluish, 1);
        }
        if self.reluish_exponent < 0 {
            reluish = rounding_divide_by_pot16(reluish, -self.reluish_exponent);
        }
        let reluish = ((i32::from(reluish) + (1 << 15)) >> 1) as i16;
        let preshift = sdhm16(reluish, preshift_output);
        let out = rounding_divide_by_pot16(preshift, -self.output_exponent)
            .wrapping_add(self.output_zero_point as i16);
        out.clamp(i8::MIN.into(), i8::MAX.into()) as i8
    }
}

/// int8 HARD_SWISH (`None`: TFLite's prepare refuses the scales).
pub fn hard_swish(input: Quant, output: Quant) -> Option<[i8; 256]> {
    let p = HardSwish::prepare(input, output)?;
    Some(tabulate(|x| p.apply(x)))
}

/// TFLite's `QuantizeMultiplier` for any finite real, negative ones included (a negative
/// LEAKY_RELU alpha): a negative mantissa that rounds to -2^31 keeps it, as C++ does.
fn quantize_signed(real: f64) -> Option<QuantizedMultiplier> {
    if real >= 0.0 {
        return QuantizedMultiplier::from_f64(real);
    }
    if !real.is_finite() {
        return None;
    }
    let (q, shift) = frexp(-real);
    let fixed = libm_round(q * (1u64 << 31) as f64) as i64;
    match shift {
        s if s < -31 => Some(QuantizedMultiplier {
            multiplier: 0,
            shift: 0,
        }),
        s if s > 30 => None,
        _ => Some(QuantizedMultiplier {
            multiplier: (-fixed) as i32,
            shift,
        }),
    }
}

/// int8 LEAKY_RELU with `alpha`: the identity multiplier `s_in / s_out` for `x >= zp_in`,
/// `s_in * alpha / s_out` (products in f32, as TFLite's prepare) below.
pub fn leaky_relu(input: Quant, output: Quant, alpha: f32) -> Option<[i8; 256]> {
    let identity = QuantizedMultiplier::from_f64(f64::from(input.0 / output.0))?;
    let negative = quantize_signed(f64::from(input.0 * alpha / output.0))?;
    Some(tabulate(|x| {
        let v = i32::from(x) - input.1;
        let q = if v >= 0 { identity } else { negative };
        clamp_i8(q.apply(v).saturating_add(output.1))
    }))
}

/// 8-bit requantization (QUANTIZE between int8 and uint8, or int8 to int8): TFLite's
/// `Requantize` with the multiplier `s_in / s_out`, both sides given as raw bytes read with
/// their signedness.
pub fn requantize(
    (input, input_signed): (Quant, bool),
    (output, output_signed): (Quant, bool),
) -> Option<[u8; 256]> {
    let q = QuantizedMultiplier::from_f64(f64::from(input.0) / f64::from(output.0))?;
    let (lo, hi) = match output_signed {
        true => (-128, 127),
        false => (0, 255),
    };
    let mut table = [0u8; 256];
    for (byte, out) in table.iter_mut().enumerate() {
        let x = match input_signed {
            true => i32::from(byte as u8 as i8),
            false => byte as i32,
        };
        let y = q.apply(x - input.1).saturating_add(output.1).clamp(lo, hi);
        *out = y as u8;
    }
    Some(table)
}

fn saturated(high: bool) -> i8 {
    match high {
        true => i8::MAX,
        false => i8::MIN,
    }
}

fn clamp_i8(v: i32) -> i8 {
    v.clamp(i8::MIN.into(), i8::MAX.into()) as i8
}

/// `f` over every int8 input, indexed by the input's byte.
fn tabulate(f: impl Fn(i8) -> i8) -> [i8; 256] {
    let mut table = [0i8; 256];
    for (byte, out) in table.iter_mut().enumerate() {
        *out = f(byte as u8 as i8);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LOGISTIC and TANH are monotone, saturate at the ends and sit near the real function.
    #[test]
    fn logistic_and_tanh_follow_the_real_functions() {
        for (scale, zp) in [(0.1f32, 0), (0.05, -20), (0.02, 10), (0.5, 3)] {
            let l = logistic((scale, zp)).unwrap();
            let t = tanh((scale, zp)).unwrap();
            for x in -128i32..=127 {
                let real = scale * (x - zp) as f32;
                let i = x as i8 as u8 as usize;
                let lr = 1.0 / (1.0 + (-real).exp());
                assert!(((f32::from(l[i]) + 128.0) / 256.0 - lr).abs() <= 1.5 / 256.0);
                assert!((f32::from(t[i]) / 128.0 - real.tanh()).abs() <= 1.5 / 128.0);
            }
        }
        assert!(logistic((0.0, 0)).is_none());
    }

    #[test]
    fn hard_swish_and_leaky_relu_follow_the_real_functions() {
        let (input, output) = ((0.05f32, -10), (0.03f32, -50));
        let h = hard_swish(input, output).unwrap();
        let l = leaky_relu(input, output, 0.1).unwrap();
        let n = leaky_relu(input, output, -0.5).unwrap();
        for x in -128i32..=127 {
            let r = input.0 * (x - input.1) as f32;
            let i = x as i8 as u8 as usize;
            let deq = |q: i8| output.0 * (i32::from(q) - output.1) as f32;
            let top = output.0 * (127 - output.1) as f32;
            let hs = r * (r + 3.0).clamp(0.0, 6.0) / 6.0;
            assert!((deq(h[i]) - hs.min(top)).abs() <= 2.0 * output.0, "x = {x}");
            let lr = if r >= 0.0 { r } else { 0.1 * r };
            assert!(
                (deq(l[i]) - lr.min(top)).abs() <= 0.51 * output.0,
                "x = {x}"
            );
            let nr = if r >= 0.0 { r } else { -0.5 * r };
            assert!(
                (deq(n[i]) - nr.min(top)).abs() <= 0.51 * output.0,
                "x = {x}"
            );
        }
    }

    #[test]
    fn requantize_shifts_int8_to_uint8_by_128() {
        let t = requantize(((0.1, -3), true), ((0.1, 125), false)).unwrap();
        for (b, &out) in t.iter().enumerate() {
            assert_eq!(out, (b as u8) ^ 0x80);
        }
    }
}
