//! MUL, int8 with TFLite's broadcasting.
//!
//! TFLite-Micro's `reference_integer_ops::MulElementwise`: the product of the two offset inputs
//! (at most 2^16 in magnitude) is requantized by one multiplier `s1 * s2 / s_out` (computed in
//! double, `QuantizeMultiplier`: it may exceed 1) and clamped to the fused activation's range.

use super::binary_fast::{self, MulStage, Stage};
use super::broadcast::{lower_binary_quantized, Binary, BinaryIo, FAST_RUN};
use super::fast_requant::ChannelStage;
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::simd::smmulr;
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

/// MUL's arithmetic: offsets, multiplier, clamp, and the fast output stage they allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// The record's parameters.
    pub params: MulParams,
    /// `s1 * s2 / s_out`.
    pub multiplier: QuantizedMultiplier,
    /// The output stage for products of int8 values with these offsets (`fast_requant`).
    fast: ChannelStage,
}

impl Product {
    /// The arithmetic for these parameters. The decoder checks the offsets are int8 zero
    /// points, but builds this before its checks are read: nothing here may overflow.
    pub fn new(params: MulParams, multiplier: QuantizedMultiplier) -> Self {
        let widest = |offset: i32| {
            u64::from(
                offset
                    .saturating_sub(128)
                    .unsigned_abs()
                    .max(offset.saturating_add(127).unsigned_abs()),
            )
        };
        let max_product = widest(params.stage.input_offset) * widest(params.input2_offset);
        Self {
            params,
            multiplier,
            fast: ChannelStage::new(0, multiplier, &params.stage, max_product),
        }
    }

    /// The product of the offset inputs.
    #[inline(always)]
    fn product(&self, x: i8, y: i8) -> i32 {
        let s = &self.params;
        (i32::from(x) + s.stage.input_offset) * (i32::from(y) + s.input2_offset)
    }
}

impl Binary for Product {
    #[inline(always)]
    fn one(&self, x: i8, y: i8) -> i8 {
        let s = &self.params.stage;
        let raw = self.multiplier.apply(self.product(x, y));
        let raw = raw.saturating_add(s.output_offset);
        raw.clamp(i32::from(s.act_min), i32::from(s.act_max)) as i8
    }

    fn fast_runs(&self, len: usize) -> bool {
        let fast = self.fast.fast_parts();
        len >= FAST_RUN && fast.is_some_and(|(left, _, _, right)| left == 1 && right >= 1)
    }

    fn rows(&self, a: &[i8], b: &[i8], out: &mut [i8], row: usize) -> bool {
        let s = &self.params.stage;
        let Some((1, mult, add, right)) = self.fast.fast_parts().filter(|f| f.3 >= 1) else {
            return false;
        };
        let m = MulStage {
            oa: s.input_offset,
            ob: self.params.input2_offset,
            stage: Stage { mult, add, right },
        };
        // Each input: its row `r` if it is as long as the output, else itself (repeated).
        fn at(x: &[i8], r: usize, row: usize) -> &[i8] {
            x.get(r * row..(r + 1) * row).unwrap_or(x)
        }
        for (r, o) in out.chunks_mut(row).enumerate() {
            binary_fast::mul(m, at(a, r, row), at(b, r, row), o);
        }
        binary_fast::clamp(out, s.act_min, s.act_max);
        true
    }

    fn vv(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        let s = &self.params.stage;
        let Some((left, mult, add, right)) = self.fast.fast_parts() else {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = self.one(x, y);
            }
            return;
        };
        if left == 1 && right >= 1 {
            let m = MulStage {
                oa: s.input_offset,
                ob: self.params.input2_offset,
                stage: Stage { mult, add, right },
            };
            binary_fast::mul(m, a, b, out);
            binary_fast::clamp(out, s.act_min, s.act_max);
            return;
        }
        let neg = -i32::from(right > 0);
        let (lo, hi) = (i32::from(s.act_min), i32::from(s.act_max));
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            let y = smmulr(self.product(x, y) << left, mult);
            *o = ((y + ((y >> 31) & neg) + add) >> right).max(lo).min(hi) as i8;
        }
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
        let [s_a, s_b, s_out] = lower_binary_quantized(cx)?;
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
            arith: Product::new(params, multiplier),
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
    use std::vec::Vec;

    fn product(s1: f32, z1: i32, s2: f32, z2: i32, so: f32, zo: i32, a: Activation) -> Product {
        let (params, multiplier) = MulParams::prepare((s1, z1), (s2, z2), (so, zo), a).unwrap();
        Product::new(params, multiplier)
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

    /// The fast output stage of [`Binary::vv`] gives the reference on every pair of int8
    /// values, over random parameters with extreme scales and zero points.
    #[test]
    fn fast_stage_equals_the_reference_on_every_pair() {
        let mut rng = Rng(0x3017_0002);
        let xs: Vec<i8> = (0..65_536).map(|i| (i & 0xFF) as u8 as i8).collect();
        let ys: Vec<i8> = (0..65_536).map(|i| (i >> 8) as u8 as i8).collect();
        let mut out = vec![0i8; 65_536];
        let mut fast = 0;
        for case in 0..400 {
            let scale = |rng: &mut Rng| 10f32.powf(rng.uniform_f32(-6.0, 3.0));
            let zp = |rng: &mut Rng| match rng.next() % 3 {
                0 => [-128, 127, 0][(rng.next() % 3) as usize],
                _ => (rng.next() % 256) as i32 - 128,
            };
            let acts = [Activation::None, Activation::Relu, Activation::Relu6];
            let Some((params, m)) = MulParams::prepare(
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                acts[case % 3],
            ) else {
                continue;
            };
            let p = Product::new(params, m);
            fast += usize::from(p.fast.fast_parts().is_some());
            p.vv(&xs, &ys, &mut out);
            for ((&o, &x), &y) in out.iter().zip(&xs).zip(&ys) {
                assert_eq!(o, p.one(x, y), "{p:?} x {x} y {y}");
            }
        }
        assert!(fast > 200, "only {fast} cases took the fast stage");
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
