//! RELU and RELU6 as operators of their own: the activations a converter could not fuse into
//! the operator before them (after a model input, a RESHAPE or a CONCATENATION).
//!
//! TFLite-Micro's int8 RELU requantizes as it clamps, since the output's scale is calibrated on
//! the activated range: `out = clamp(zp_out + M(x - zp_in), zp_out, 127)` with `M` the
//! multiplier `s_in / s_out` applied like every other requantization. Its RELU6 does not: it
//! clamps the input's codes to `[zp_in, zp_in + round(6 / s_in)]` (within int8) and never reads
//! the output's quantization. Both are one kernel here: RELU6 is the identity multiplier with
//! no offsets and that clamp. A long input goes through a 256-entry table of the outputs.

use super::bytes::lookup;
use super::fast_requant::ChannelStage;
use super::lower::{LowerError, Lowering};
use super::lut::TABLE_LEN;
use super::operator::{Io, Operator, Views};
use super::output_stage::requantize;
use super::record::record_params;
use super::simd::smmulr;
use super::{Activation, Int8Stage};
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::quant::QuantizedMultiplier;
use crate::Error;

record_params! {
    /// RELU's and RELU6's record parameters; the multiplier `s_in / s_out` is the record's one
    /// requantization constant.
    pub struct ReluParams {
        /// Minus the input's zero point, the output's zero point, and the activation's clamp.
        pub stage: Int8Stage,
    }
}

impl ReluParams {
    /// What TFLite-Micro's prepare computes for an input and an output `(scale, zero_point)`
    /// and the activation (`Relu` or `Relu6`); `None` for a scale no int8 model has.
    pub fn prepare(
        input: (f32, i32),
        output: (f32, i32),
        activation: Activation,
    ) -> Option<(Self, QuantizedMultiplier)> {
        let valid = |(s, zp): (f32, i32)| s.is_finite() && s > 0.0 && (-128..=127).contains(&zp);
        if !(valid(input) && valid(output)) {
            return None;
        }
        match activation {
            Activation::Relu => {
                let real = f64::from(input.0) / f64::from(output.0);
                let multiplier = QuantizedMultiplier::from_f64(real)?;
                let (act_min, act_max) = activation.int8_range(output.0, output.1);
                let stage = Int8Stage {
                    input_offset: -input.1,
                    output_offset: output.1,
                    act_min,
                    act_max,
                };
                Some((Self { stage }, multiplier))
            }
            Activation::Relu6 => {
                let (act_min, act_max) = activation.int8_range(input.0, input.1);
                let stage = Int8Stage {
                    input_offset: 0,
                    output_offset: 0,
                    act_min,
                    act_max,
                };
                Some((Self { stage }, QuantizedMultiplier::from_f64(1.0)?))
            }
            Activation::None => None,
        }
    }
}

/// RELU or RELU6, decoded (they differ only in the clamp).
#[derive(Debug, Clone, Copy)]
pub struct Relu {
    /// Offsets and clamp.
    pub stage: Int8Stage,
    /// `s_in / s_out`.
    pub multiplier: QuantizedMultiplier,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Relu {
    type Params = ReluParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let activation = match cx.opcode() {
            OpCode::Relu6 => Activation::Relu6,
            _ => Activation::Relu,
        };
        let (params, multiplier) = ReluParams::prepare(
            cx.per_tensor(input)?,
            cx.per_tensor(cx.output())?,
            activation,
        )
        .ok_or(LowerError::Unsupported {
            what: "RELU scales out of the representable range",
        })?;
        cx.requant(multiplier);
        cx.params(&params)
    }

    fn decode(d: &Decoder<'_, 'a>, params: ReluParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        d.same_elements(&input, &output);
        let [multiplier] = d.requant_array::<1>();
        Relu {
            stage: params.stage,
            multiplier,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        relu_i8(self, v.inputs[0].data, v.output.data)
    }
}

/// The int8 kernel over same-length slices, bit-exact with TFLite-Micro's. A long input goes
/// through a table of the 256 possible outputs, built here with the same arithmetic.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn relu_i8(layer: &Relu, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    super::built(OpCode::Relu)?;
    if input.len() != output.len() {
        return Err(Error::LengthMismatch {
            expected: input.len(),
            actual: output.len(),
        });
    }
    if input.len() < TABLE_FROM {
        for (out, &x) in output.iter_mut().zip(input) {
            *out = layer.apply(x);
        }
        return Ok(());
    }
    lookup(&layer.table(), input, output);
    Ok(())
}

/// The input length from which building the table pays: its 256 entries cost about what as
/// many elements of the direct loop do, and a lookup a tenth of one.
const TABLE_FROM: usize = TABLE_LEN;

impl Relu {
    /// The output for every input code `b as i8` at `table[b]`: through the fast output stage
    /// where its bound holds (inputs minus an int8 zero point lie within 255 of zero), else
    /// TFLite-Micro's arithmetic.
    fn table(&self) -> [i8; TABLE_LEN] {
        let stage = &self.stage;
        let mut table = [0i8; TABLE_LEN];
        let fast = match (-127..=128).contains(&stage.input_offset) {
            true => ChannelStage::new(0, self.multiplier, stage, 255).fast_parts(),
            false => None,
        };
        let Some((left, mult, add, right)) = fast else {
            for (b, t) in (0..=u8::MAX).zip(&mut table) {
                *t = self.apply(b as i8);
            }
            return table;
        };
        let neg = -i32::from(right > 0);
        let (lo, hi) = (i32::from(stage.act_min), i32::from(stage.act_max));
        for (b, t) in (0..=u8::MAX).zip(&mut table) {
            let y = smmulr((i32::from(b as i8) + stage.input_offset) << left, mult);
            *t = ((y + ((y >> 31) & neg) + add) >> right).max(lo).min(hi) as i8;
        }
        table
    }

    /// One output, TFLite-Micro's arithmetic.
    #[inline(always)]
    fn apply(&self, x: i8) -> i8 {
        requantize(
            i32::from(x) + self.stage.input_offset,
            self.multiplier,
            &self.stage,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(input: (f32, i32), output: (f32, i32), act: Activation) -> Relu {
        let (params, multiplier) = ReluParams::prepare(input, output, act).unwrap();
        Relu {
            stage: params.stage,
            multiplier,
            input: 0,
            output: 1,
        }
    }

    fn run(layer: &Relu) -> Vec<i8> {
        let xs: Vec<i8> = (-128..=127).collect();
        let mut out = vec![0i8; xs.len()];
        relu_i8(layer, &xs, &mut out).unwrap();
        out
    }

    /// RELU: TFLite-Micro's requantizing clamp, written out in i64, and max(x, 0) in real
    /// terms to within one output step.
    #[test]
    fn relu_requantizes_every_input() {
        let cases = [
            ((0.05, -10), (0.03, -128)),
            ((0.0078, -1), (0.0039, -128)),
            ((2.0, 127), (0.5, -128)),
            ((0.1, 5), (0.1, 5)),
        ];
        for (input, output) in cases {
            let l = layer(input, output, Activation::Relu);
            for (x, y) in (-128..=127).zip(run(&l)) {
                let scaled = l.multiplier.apply(x - input.1);
                let want = (i64::from(scaled) + i64::from(output.1)).clamp(output.1.into(), 127);
                assert_eq!(i64::from(y), want, "x = {x}");
                let real = (input.0 * (x - input.1) as f32).max(0.0);
                let top = output.0 * (127 - output.1) as f32;
                let got = output.0 * (i32::from(y) - output.1) as f32;
                assert!((got - real.min(top)).abs() <= output.0 * 0.51, "x = {x}");
            }
        }
    }

    /// RELU6: the input's codes clamped to [zp_in, zp_in + round(6 / s_in)]; the output's
    /// quantization plays no part.
    #[test]
    fn relu6_clamps_the_input_codes() {
        for (input, output) in [((0.0627, -1), (0.0235, -128)), ((0.0117, -43), (0.5, 3))] {
            let l = layer(input, output, Activation::Relu6);
            let six = (input.1 + (6.0 / input.0).round() as i32).min(127);
            for (x, y) in (-128..=127).zip(run(&l)) {
                assert_eq!(i32::from(y), x.clamp(input.1, six), "x = {x}");
            }
        }
    }

    /// The table path (long inputs) against the direct one (short inputs, checked against the
    /// formula above), over random scales, zero points and both activations.
    #[test]
    fn table_path_matches_the_direct_one() {
        let mut rng = crate::test_support::Rng(0x7E1);
        let xs: Vec<i8> = (0..3 * TABLE_FROM + 7)
            .map(|k| (k * 37 + 11) as i8)
            .collect();
        for case in 0..300 {
            let mut scale = || {
                2f32.powi((rng.next() % 40) as i32 - 25)
                    * (1.0 + rng.next() as f32 / u64::MAX as f32)
            };
            let (s_in, s_out) = (scale(), scale());
            let zp = |r: u64| (r % 256) as i32 - 128;
            let (z_in, z_out) = (zp(rng.next()), zp(rng.next()));
            let act = [Activation::Relu, Activation::Relu6][case % 2];
            let Some((params, multiplier)) = ReluParams::prepare((s_in, z_in), (s_out, z_out), act)
            else {
                continue;
            };
            let l = Relu {
                stage: params.stage,
                multiplier,
                input: 0,
                output: 1,
            };
            let mut long = vec![0i8; xs.len()];
            relu_i8(&l, &xs, &mut long).unwrap();
            for (chunk, want) in xs.chunks(TABLE_FROM - 1).zip(long.chunks(TABLE_FROM - 1)) {
                let mut short = vec![0i8; chunk.len()];
                relu_i8(&l, chunk, &mut short).unwrap();
                assert_eq!(short, want, "case {case}: {s_in} {z_in} {s_out} {z_out}");
            }
        }
    }

    #[test]
    fn lengths_must_agree_and_bad_scales_are_refused() {
        let l = layer((0.1, 0), (0.1, 0), Activation::Relu);
        assert!(relu_i8(&l, &[1, 2], &mut [0]).is_err());
        assert!(ReluParams::prepare((0.0, 0), (0.1, 0), Activation::Relu).is_none());
        assert!(ReluParams::prepare((0.1, 0), (f32::NAN, 0), Activation::Relu).is_none());
        assert!(ReluParams::prepare((0.1, 300), (0.1, 0), Activation::Relu6).is_none());
        assert!(ReluParams::prepare((0.1, 0), (0.1, 0), Activation::None).is_none());
    }
}
