//! MUL, int8 with TFLite's broadcasting.
//!
//! TFLite-Micro's `reference_integer_ops::MulElementwise`: the product of the two offset inputs
//! (at most 2^16 in magnitude) is requantized by one multiplier `s1 * s2 / s_out` (computed in
//! double, `QuantizeMultiplier`: it may exceed 1) and clamped to the fused activation's range.

use super::broadcast::{lower_binary, Binary, BinaryIo};
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::{Activation, Int8Stage};
use crate::format::OpCode;
use crate::model::Decoder;
use crate::quant::QuantizedMultiplier;
use crate::Error;

record_params! {
    /// MUL's record parameters; `s1 * s2 / s_out` is the record's one requantization constant.
    pub struct MulParams {
        /// Minus input 1's zero point, the output's zero point, the clamp.
        pub stage: Int8Stage,
        /// Minus input 2's zero point.
        pub input2_offset: i32,
    }
}

impl MulParams {
    /// What TFLite-Micro's `CalculateOpDataMul` computes for inputs and an output with these
    /// `(scale, zero_point)` pairs; `None` for a scale no int8 model has.
    pub fn prepare(
        input1: (f32, i32),
        input2: (f32, i32),
        output: (f32, i32),
        activation: Activation,
    ) -> Option<(Self, QuantizedMultiplier)> {
        let valid = |(s, zp): (f32, i32)| s.is_finite() && s > 0.0 && (-128..=127).contains(&zp);
        if !(valid(input1) && valid(input2) && valid(output)) {
            return None;
        }
        let real = f64::from(input1.0) * f64::from(input2.0) / f64::from(output.0);
        let multiplier = QuantizedMultiplier::from_f64(real)?;
        let (act_min, act_max) = activation.int8_range(output.0, output.1);
        let stage = Int8Stage {
            input_offset: -input1.1,
            output_offset: output.1,
            act_min,
            act_max,
        };
        let params = Self {
            stage,
            input2_offset: -input2.1,
        };
        Some((params, multiplier))
    }
}

/// MUL's arithmetic: offsets, multiplier, clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// The record's parameters.
    pub params: MulParams,
    /// `s1 * s2 / s_out`.
    pub multiplier: QuantizedMultiplier,
}

impl Binary for Product {
    #[inline(always)]
    fn one(&self, x: i8, y: i8) -> i8 {
        let s = &self.params.stage;
        let product = (i32::from(x) + s.input_offset) * (i32::from(y) + self.params.input2_offset);
        let raw = self
            .multiplier
            .apply(product)
            .saturating_add(s.output_offset);
        raw.clamp(i32::from(s.act_min), i32::from(s.act_max)) as i8
    }
}

/// MUL, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Mul<'a> {
    /// Offsets, multiplier, clamp.
    pub arith: Product,
    /// Inputs, output and the broadcast walk.
    pub tensors: BinaryIo<'a>,
}

impl<'a> Operator<'a> for Mul<'a> {
    type Params = MulParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let (a, b) = lower_binary(cx)?;
        let (s_a, s_b, s_out) = (
            cx.per_tensor(a)?,
            cx.per_tensor(b)?,
            cx.per_tensor(cx.output())?,
        );
        let (params, multiplier) = MulParams::prepare(s_a, s_b, s_out, cx.options().activation)
            .ok_or(LowerError::Unsupported {
                what: "MUL scales out of the representable range",
            })?;
        cx.requant(multiplier);
        cx.params(&params)
    }

    fn decode(d: &Decoder<'_, 'a>, params: MulParams) -> Self {
        let tensors = BinaryIo::decode(d);
        // The stage's offsets are int8 zero points: the product stays within 2^16.
        d.check(
            (-127..=128).contains(&params.input2_offset),
            why!("MUL input offset (must be minus an int8 zero point)"),
        );
        let [multiplier] = d.requant_array::<1>();
        Mul {
            arith: Product { params, multiplier },
            tensors,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(self.tensors.io())
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        super::built(OpCode::Mul)?;
        self.tensors.run(&self.arith, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::broadcast::tests::check_against_naive;
    use crate::test_support::Rng;

    fn product(s1: f32, z1: i32, s2: f32, z2: i32, so: f32, zo: i32, a: Activation) -> Product {
        let (params, multiplier) = MulParams::prepare((s1, z1), (s2, z2), (so, zo), a).unwrap();
        Product { params, multiplier }
    }

    #[test]
    fn loops_equal_the_per_element_arithmetic() {
        let mut rng = Rng(0x3017_0001);
        for case in 0..60 {
            let scale = |rng: &mut Rng| 10f32.powf(rng.uniform_f32(-4.0, 0.5));
            let zp = |rng: &mut Rng| (rng.next() % 256) as i32 - 128;
            let acts = [Activation::None, Activation::Relu, Activation::Relu6];
            let (s1, s2, so) = (scale(&mut rng), scale(&mut rng), scale(&mut rng));
            let (z1, z2, zo) = (zp(&mut rng), zp(&mut rng), zp(&mut rng));
            let p = product(s1, z1, s2, z2, so, zo, acts[case % 3]);
            check_against_naive(&p, &mut rng, 12);
        }
    }

    #[test]
    fn multiplies_within_one_lsb_of_real_arithmetic() {
        let p = product(0.5, 0, 0.25, 10, 0.125, -3, Activation::None);
        // (4 * 0.5) * ((14 - 10) * 0.25) = 2 -> 16 - 3 = 13.
        assert_eq!(p.one(4, 14), 13);
        // Saturation both ways, and the multiplier above 1 (s1 * s2 / s_out = 1).
        assert_eq!(p.one(127, 127), 127);
        assert_eq!(p.one(-128, 127), -128);
        let relu6 = product(0.05, 0, 0.05, 0, 0.05, 0, Activation::Relu6);
        assert_eq!(relu6.one(100, 100), 120);
        assert_eq!(relu6.one(-100, 100), 0);
    }
}
