//! SUB, int8 with TFLite's broadcasting: ADD's arithmetic (`super::add`) with the second
//! input's rescaled value subtracted.
//!
//! TFLite-Micro's SUB prepares its multipliers in float (`CalculateOpDataSub`: the doubled
//! larger scale, each ratio and the output multiplier are float32 expressions, widened to
//! double only for `QuantizeMultiplierSmallerThanOneExp`), where ADD uses double throughout:
//! the two can differ in a multiplier's last bit, so SUB has its own prepare.

use super::add::{AddParams, AddRecordParams, SumKernel, SumRule};
use super::broadcast::{lower_binary_quantized, BinaryIo};
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::Activation;
use crate::format::OpCode;
use crate::model::{Decoder, Model};
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// TFLite's headroom for int8 SUB.
const INT8_LEFT_SHIFT: i32 = 20;

/// A multiplier in (0, 1) that TFLite's `QuantizeMultiplierSmallerThanOneExp` accepts.
fn smaller_than_one(real: f64) -> Option<QuantizedMultiplier> {
    if !(real > 0.0 && real < 1.0) {
        return None;
    }
    let q = QuantizedMultiplier::from_f64(real)?;
    (q.shift <= 0).then_some(q)
}

/// SUB's parameters (ADD's, see [`AddParams`]) for inputs and an output with these
/// `(scale, zero_point)` pairs, computed as TFLite-Micro's `CalculateOpDataSub` does; `None`
/// where TFLite would refuse the layer.
pub fn sub_params(
    input1: (f32, i32),
    input2: (f32, i32),
    output: (f32, i32),
    activation: Activation,
) -> Option<AddParams> {
    let valid = |(s, zp): (f32, i32)| s.is_finite() && s > 0.0 && (-128..=127).contains(&zp);
    if !(valid(input1) && valid(input2) && valid(output)) {
        return None;
    }
    let twice_max_input_scale: f32 = 2.0 * input1.0.max(input2.0);
    let real_input1 = f64::from(input1.0 / twice_max_input_scale);
    let real_input2 = f64::from(input2.0 / twice_max_input_scale);
    let real_output =
        f64::from(twice_max_input_scale / ((1u32 << INT8_LEFT_SHIFT) as f32 * output.0));
    let (act_min, act_max) = activation.int8_range(output.0, output.1);
    Some(AddParams {
        input1_offset: -input1.1,
        input2_offset: -input2.1,
        output_offset: output.1,
        left_shift: INT8_LEFT_SHIFT,
        input1: smaller_than_one(real_input1)?,
        input2: smaller_than_one(real_input2)?,
        output: smaller_than_one(real_output)?,
        act_min,
        act_max,
    })
}

/// SUB, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Sub<'a> {
    /// How each output is computed.
    pub rule: SumRule,
    /// Inputs, output and the broadcast walk.
    pub tensors: BinaryIo<'a>,
}

impl<'a> Operator<'a> for Sub<'a> {
    type Params = AddRecordParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let [s_a, s_b, s_out] = lower_binary_quantized(cx)?;
        sub_params(s_a, s_b, s_out, cx.options().activation)
            .ok_or(LowerError::Unsupported {
                what: "SUB scales out of the representable range",
            })?
            .lower_to(cx, true)
    }

    fn decode(d: &Decoder<'_, 'a>, record: AddRecordParams) -> Self {
        let tensors = BinaryIo::decode(d);
        let params = AddParams::from_record(&record, d.requant_array::<3>());
        d.check(
            params.validate().is_ok(),
            why!("SUB offsets, shift or multipliers out of range"),
        );
        Sub {
            rule: SumRule::from_record(&record, params),
            tensors,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(self.tensors.io())
    }

    fn scratch_need(&self, model: &Model<'a>) -> Result<Option<usize>, Error> {
        Ok(Some(self.rule.scratch_need(&self.tensors, model)?))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        super::built(OpCode::Sub)?;
        let kernel = SumKernel {
            rule: self.rule,
            negate: true,
        };
        self.tensors.run(&kernel, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::broadcast::tests::check_against_naive;
    use crate::ops::broadcast::Binary;
    use crate::test_support::Rng;

    #[test]
    fn loops_equal_the_per_element_arithmetic() {
        let mut rng = Rng(0x5B5B_0001);
        let mut tested = 0;
        for case in 0..60 {
            let scale = |rng: &mut Rng| 10f32.powf(rng.uniform_f32(-4.0, 0.5));
            let zp = |rng: &mut Rng| (rng.next() % 256) as i32 - 128;
            let acts = [Activation::None, Activation::Relu, Activation::Relu6];
            let Some(p) = sub_params(
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                acts[case % 3],
            ) else {
                continue;
            };
            check_against_naive(&SumKernel::tflite(p, true), &mut rng, 12);
            tested += 1;
        }
        assert!(tested > 40);
    }

    #[test]
    fn subtracts_and_clamps() {
        // All scales 1, zero points 0: multipliers 0.5, 0.5 and 2 / 2^20.
        let p = SumKernel::tflite(
            sub_params((1.0, 0), (1.0, 0), (1.0, 0), Activation::None).unwrap(),
            true,
        );
        let cases = [
            (5, 3, 2),
            (3, 5, -2),
            (100, -100, 127),
            (-100, 100, -128),
            (0, 0, 0),
        ];
        for (x, y, want) in cases {
            assert_eq!(p.one(x, y), want, "{x} - {y}");
        }
        let relu = SumKernel::tflite(
            sub_params((1.0, 0), (1.0, 0), (1.0, 0), Activation::Relu).unwrap(),
            true,
        );
        assert_eq!(relu.one(3, 5), 0);
        assert_eq!(
            sub_params((1.0, 0), (1.0, 0), (1e-7, 0), Activation::None),
            None
        );
    }
}
