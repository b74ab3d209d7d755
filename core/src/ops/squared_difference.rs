//! SQUARED_DIFFERENCE, int8 with TFLite's broadcasting.
//!
//! TFLite-Micro's int8 kernel: both inputs are moved to a common scale with 7 bits of headroom
//! (ADD's rescaling with a smaller shift), subtracted, squared in int32 (at most 2^30), and
//! the square is requantized by `(2 max(s1, s2))^2 / (2^14 s_out)` (`QuantizeMultiplier`: it
//! may exceed 1) onto the output, clamped to int8 (no fused activation).

use super::broadcast::{lower_binary_quantized, Binary, BinaryIo};
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::Int8Stage;
use crate::format::OpCode;
use crate::model::Decoder;
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// TFLite's headroom for int8 SQUARED_DIFFERENCE: 255^2 * 2^14 fits in int32.
const LEFT_SHIFT: i32 = 7;

record_params! {
    /// SQUARED_DIFFERENCE's record parameters; its three multipliers are the record's
    /// requantization constants (input 1, input 2, output).
    pub struct SquaredDifferenceParams {
        /// Minus input 1's zero point, the output's zero point, the clamp (all of int8).
        pub stage: Int8Stage,
        /// Minus input 2's zero point.
        pub input2_offset: i32,
    }
}

/// SQUARED_DIFFERENCE's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SquaredDiff {
    /// The record's parameters.
    pub params: SquaredDifferenceParams,
    /// `s1 / (2 max(s1, s2))`: at most 1/2.
    pub input1: QuantizedMultiplier,
    /// `s2 / (2 max(s1, s2))`: at most 1/2.
    pub input2: QuantizedMultiplier,
    /// `(2 max(s1, s2))^2 / (2^14 s_out)`.
    pub output: QuantizedMultiplier,
}

/// A multiplier in (0, 1) that TFLite's `QuantizeMultiplierSmallerThanOneExp` accepts.
fn smaller_than_one(real: f64) -> Option<QuantizedMultiplier> {
    if !(real > 0.0 && real < 1.0) {
        return None;
    }
    let q = QuantizedMultiplier::from_f64(real)?;
    (q.shift <= 0).then_some(q)
}

/// Whether `q` is at most 1/2 (what keeps the square within int32).
fn at_most_half(q: QuantizedMultiplier) -> bool {
    q.multiplier >= 0 && (q.shift < 0 || (q.shift == 0 && q.multiplier <= 1 << 30))
}

impl SquaredDiff {
    /// What TFLite-Micro's prepare computes for inputs and an output with these
    /// `(scale, zero_point)` pairs; `None` for a scale no int8 model has.
    pub fn prepare(input1: (f32, i32), input2: (f32, i32), output: (f32, i32)) -> Option<Self> {
        let valid = |(s, zp): (f32, i32)| s.is_finite() && s > 0.0 && (-128..=127).contains(&zp);
        if !(valid(input1) && valid(input2) && valid(output)) {
            return None;
        }
        let twice_max_input_scale = 2.0 * f64::from(input1.0.max(input2.0));
        let real_input1 = f64::from(input1.0) / twice_max_input_scale;
        let real_input2 = f64::from(input2.0) / twice_max_input_scale;
        // TFLite multiplies the output scale by 2^14 in float before widening it.
        let denominator = f64::from((1u32 << (2 * LEFT_SHIFT)) as f32 * output.0);
        let real_output = twice_max_input_scale * twice_max_input_scale / denominator;
        let stage = Int8Stage {
            input_offset: -input1.1,
            output_offset: output.1,
            act_min: i8::MIN,
            act_max: i8::MAX,
        };
        Some(Self {
            params: SquaredDifferenceParams {
                stage,
                input2_offset: -input2.1,
            },
            input1: smaller_than_one(real_input1)?,
            input2: smaller_than_one(real_input2)?,
            output: QuantizedMultiplier::from_f64(real_output)?,
        })
    }

    /// Whether the int32 arithmetic cannot overflow: offsets of int8 zero points, input
    /// multipliers of at most 1/2 (everything `prepare` returns passes).
    fn valid(&self) -> bool {
        (-127..=128).contains(&self.params.input2_offset)
            && at_most_half(self.input1)
            && at_most_half(self.input2)
    }
}

impl Binary for SquaredDiff {
    #[inline(always)]
    fn one(&self, x: i8, y: i8) -> i8 {
        let s = &self.params.stage;
        let scaled = |v: i8, offset: i32, m: QuantizedMultiplier| {
            m.apply((i32::from(v) + offset) << LEFT_SHIFT)
        };
        let diff = scaled(x, s.input_offset, self.input1)
            - scaled(y, self.params.input2_offset, self.input2);
        let raw = self
            .output
            .apply(diff.wrapping_mul(diff))
            .saturating_add(s.output_offset);
        raw.clamp(i32::from(s.act_min), i32::from(s.act_max)) as i8
    }
}

/// SQUARED_DIFFERENCE, decoded.
#[derive(Debug, Clone, Copy)]
pub struct SquaredDifference<'a> {
    /// Offsets and multipliers.
    pub arith: SquaredDiff,
    /// Inputs, output and the broadcast walk.
    pub tensors: BinaryIo<'a>,
}

impl<'a> Operator<'a> for SquaredDifference<'a> {
    type Params = SquaredDifferenceParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let [s_a, s_b, s_out] = lower_binary_quantized(cx)?;
        let arith = SquaredDiff::prepare(s_a, s_b, s_out).ok_or(LowerError::Unsupported {
            what: "SQUARED_DIFFERENCE scales out of the representable range",
        })?;
        for q in [arith.input1, arith.input2, arith.output] {
            cx.requant(q);
        }
        cx.params(&arith.params)
    }

    fn decode(d: &Decoder<'_, 'a>, params: SquaredDifferenceParams) -> Self {
        let tensors = BinaryIo::decode(d);
        let [input1, input2, output] = d.requant_array::<3>();
        let arith = SquaredDiff {
            params,
            input1,
            input2,
            output,
        };
        d.check(
            arith.valid(),
            why!("SQUARED_DIFFERENCE offsets or multipliers out of range"),
        );
        SquaredDifference { arith, tensors }
    }

    fn io(&self) -> Option<Io> {
        Some(self.tensors.io())
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        super::built(OpCode::SquaredDifference)?;
        self.tensors.run(&self.arith, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::broadcast::tests::check_against_naive;
    use crate::test_support::Rng;

    #[test]
    fn loops_equal_the_per_element_arithmetic() {
        let mut rng = Rng(0x5D1F_0001);
        let mut tested = 0;
        for _ in 0..60 {
            let scale = |rng: &mut Rng| 10f32.powf(rng.uniform_f32(-4.0, 0.5));
            let zp = |rng: &mut Rng| (rng.next() % 256) as i32 - 128;
            let Some(p) = SquaredDiff::prepare(
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
            ) else {
                continue;
            };
            assert!(p.valid());
            check_against_naive(&p, &mut rng, 12);
            tested += 1;
        }
        assert!(tested > 40);
    }

    #[test]
    fn squares_the_difference() {
        // Scales 1, 1 and 1: the input multipliers are 1/2, the output one 4 / 2^14; the
        // difference d becomes d * 2^6, its square d^2 * 2^12, requantized d^2.
        let p = SquaredDiff::prepare((1.0, 0), (1.0, 0), (1.0, -10)).unwrap();
        assert_eq!(p.one(5, 2), 9 - 10);
        assert_eq!(p.one(2, 5), 9 - 10);
        assert_eq!(p.one(100, -100), 127);
        // The extreme difference stays within int32.
        let wide = SquaredDiff::prepare((1.0, -128), (1.0, 127), (4000.0, -128)).unwrap();
        // 510^2 / 4000 = 65.025.
        assert_eq!(wide.one(127, -128), -128 + 65);
    }
}
