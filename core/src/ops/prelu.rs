//! PRELU int8: `x` where the input is at or above its zero point, `alpha * x` below, with a
//! constant `alpha` tensor broadcast over the input (one per channel, or one for all), as
//! TFLite-Micro's `BroadcastPrelu4DSlow`: two requantizations, `s_in / s_out` for the
//! identity side and `s_in * s_alpha / s_out` for the product side. With an alpha per channel
//! (or one for all) over enough pixels, the kernel maps each channel through a 256-entry table
//! of its outputs, built with the same arithmetic.

use super::bytes::lookup;
use super::fast_requant::ChannelStage;
use super::lower::{LowerError, Lowering};
use super::lut::TABLE_LEN;
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::simd::smmulr;
use super::{Int8Stage, Shape4, Tensor};
use crate::format::DType;
use crate::model::{Decoder, Scratch};
use crate::quant::QuantizedMultiplier;
use crate::Error;

record_params! {
    /// PRELU's record parameters; its two multipliers (identity, alpha) are the record's
    /// requantization constants.
    pub struct PreluParams {
        /// Minus the input's zero point and the output's zero point (the clamp is int8's).
        pub stage: Int8Stage,
        /// Minus alpha's zero point.
        pub alpha_offset: i32,
    }
}

/// PRELU, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Prelu<'a> {
    /// Offsets.
    pub params: PreluParams,
    /// `s_in / s_out`, then `s_in * s_alpha / s_out`.
    pub multipliers: [QuantizedMultiplier; 2],
    /// The constant alpha, broadcast over the input.
    pub alpha: Tensor<'a, i8>,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

/// Whether `alpha` broadcasts over `input` (each dimension 1 or the input's).
fn broadcasts(alpha: Shape4, input: Shape4) -> bool {
    let a = [alpha.n, alpha.h, alpha.w, alpha.c];
    let i = [input.n, input.h, input.w, input.c];
    a.iter().zip(&i).all(|(&a, &i)| a == 1 || a == i)
}

impl<'a> Operator<'a> for Prelu<'a> {
    type Params = PreluParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let alpha = cx.input(1)?;
        let a = cx.typed(alpha, DType::I8, "alpha")?;
        let shape = cx.tensor(input)?.shape;
        if !a.constant || !broadcasts(a.shape, shape) {
            return Err(LowerError::Unsupported {
                what: "PRELU's alpha must be a constant that broadcasts over the input",
            });
        }
        cx.expect_output(shape)?;
        let (s_in, zp_in) = cx.per_tensor(input)?;
        let (s_alpha, zp_alpha) = cx.per_tensor(alpha)?;
        let (s_out, zp_out) = cx.per_tensor(cx.output())?;
        let identity = f64::from(s_in) / f64::from(s_out);
        let product = f64::from(s_in) * f64::from(s_alpha) / f64::from(s_out);
        for real in [identity, product] {
            let q = QuantizedMultiplier::from_f64(real).ok_or(LowerError::Unsupported {
                what: "PRELU scales out of the representable range",
            })?;
            cx.requant(q);
        }
        cx.params(&PreluParams {
            stage: Int8Stage {
                input_offset: -zp_in,
                output_offset: zp_out,
                act_min: i8::MIN,
                act_max: i8::MAX,
            },
            alpha_offset: -zp_alpha,
        })
    }

    fn decode(d: &Decoder<'_, 'a>, params: PreluParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let alpha = d.weights(1);
        d.check(
            output.shape == input.shape,
            why!("PRELU output shape differs from the input's"),
        );
        d.check(
            broadcasts(alpha.shape, input.shape)
                && alpha.shape.elements() == Some(alpha.data.len()),
            why!("PRELU alpha does not broadcast over the input"),
        );
        d.check(
            (-127..=128).contains(&params.alpha_offset),
            why!("PRELU alpha zero point out of the int8 range"),
        );
        Prelu {
            params,
            multipliers: d.requant_array::<2>(),
            alpha,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        prelu_i8(self, v.inputs[0], v.output.data)
    }
}

impl Prelu<'_> {
    /// One output value from an input and its alpha.
    #[inline(always)]
    fn apply(&self, x: i8, alpha: i8) -> i8 {
        let stage = &self.params.stage;
        let v = i32::from(x) + stage.input_offset;
        let out = if v >= 0 {
            self.multipliers[0].apply(v)
        } else {
            let a = i32::from(alpha) + self.params.alpha_offset;
            self.multipliers[1].apply(v * a)
        };
        out.saturating_add(stage.output_offset).clamp(-128, 127) as i8
    }
}

/// The int8 kernel, bit-exact with TFLite-Micro's: `output` has the input's shape.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn prelu_i8(layer: &Prelu, input: Tensor<i8>, output: &mut [i8]) -> Result<(), Error> {
    let s = input.shape;
    s.check_len(input.data.len())?;
    s.check_len(output.len())?;
    let a = layer.alpha.shape;
    a.check_len(layer.alpha.data.len())?;
    if !broadcasts(a, s) || s.c == 0 {
        return Err(Error::InvalidParameter {
            what: why!("PRELU alpha does not broadcast over the input"),
        });
    }
    match prelu_by_tables(layer, input.data, output, s) {
        true => Ok(()),
        false => prelu_direct(layer, input, output),
    }
}

/// The kernel element by element, for any broadcast of alpha (checked by the caller).
fn prelu_direct(layer: &Prelu, input: Tensor<i8>, output: &mut [i8]) -> Result<(), Error> {
    let (s, a) = (input.shape, layer.alpha.shape);
    // Alpha's strides, 0 along the dimensions it broadcasts.
    let step = |dim: usize, stride: usize| if dim == 1 { 0 } else { stride };
    let (sa_n, sa_h) = (step(a.n, a.h * a.w * a.c), step(a.h, a.w * a.c));
    let (sa_w, sa_c) = (step(a.w, a.c), step(a.c, 1));
    let rows = input
        .data
        .chunks_exact(s.c)
        .zip(output.chunks_exact_mut(s.c));
    let mut pixel = (0, 0, 0);
    for (x_row, out_row) in rows {
        let (n, h, w) = pixel;
        let base = n * sa_n + h * sa_h + w * sa_w;
        for (c, (out, &x)) in out_row.iter_mut().zip(x_row).enumerate() {
            let alpha = *layer
                .alpha
                .data
                .get(base + c * sa_c)
                .ok_or(Error::ShapeOverflow)?;
            *out = layer.apply(x, alpha);
        }
        pixel = match (w + 1 < s.w, h + 1 < s.h) {
            (true, _) => (n, h, w + 1),
            (false, true) => (n, h + 1, 0),
            (false, false) => (n + 1, 0, 0),
        };
    }
    Ok(())
}

/// Pixels per alpha value from which the table path pays: a table costs about as much as a few
/// dozen elements of the direct path.
const TABLE_FROM: usize = 64;

impl Prelu<'_> {
    /// Fills `table[b]` with the output for input code `b as i8` on one side of the zero point:
    /// at or above it (the identity side) for `alpha` `None`, else below it, the side of that
    /// alpha code. `fast` is the side's fast output stage, if its bound holds.
    fn fill_side(&self, table: &mut [i8; TABLE_LEN], fast: Fast, alpha: Option<i8>) {
        // The side's codes x: x + input_offset >= 0, or < 0 (the offset lies in -127..=128,
        // checked by the caller), and the factor of x + input_offset.
        let zero = -self.params.stage.input_offset;
        let (codes, factor) = match alpha {
            None => (zero..128, 1),
            Some(a) => (-128..zero, i32::from(a) + self.params.alpha_offset),
        };
        let Some((left, mult, add, right)) = fast else {
            for x in codes {
                table[(x & 0xFF) as usize] = self.apply(x as i8, alpha.unwrap_or(0));
            }
            return;
        };
        let neg = -i32::from(right > 0);
        // `acc` runs through `((x - zero) * factor) << left`, which the bound keeps exact.
        let step = factor << left;
        let mut acc = (codes.start - zero) * step;
        for x in codes {
            let y = smmulr(acc, mult);
            let out = (y + ((y >> 31) & neg) + add) >> right;
            table[(x & 0xFF) as usize] = out.clamp(-128, 127) as i8;
            acc = acc.wrapping_add(step);
        }
    }
}

/// A fast output stage's constants `(left, mult, add, right)` ([`ChannelStage::fast_parts`]).
type Fast = Option<(u32, i32, i32, u32)>;

/// `output[k] = table[input[k]]` for the elements `k` of channel `c < channels`.
fn map_channel(
    table: &[i8; TABLE_LEN],
    input: &[i8],
    output: &mut [i8],
    c: usize,
    channels: usize,
) {
    let t = |x: i8| table[usize::from(x as u8)];
    // Four pixels per iteration, then one at a time.
    let mut to = output.chunks_exact_mut(4 * channels);
    let mut from = input.chunks_exact(4 * channels);
    for (o, x) in (&mut to).zip(&mut from) {
        for k in [c, c + channels, c + 2 * channels, c + 3 * channels] {
            o[k] = t(x[k]);
        }
    }
    let to = to.into_remainder().chunks_exact_mut(channels);
    for (o, x) in to.zip(from.remainder().chunks_exact(channels)) {
        o[c] = t(x[c]);
    }
}

/// The kernel through a 256-entry table per alpha value, for an alpha per channel or one for
/// all over enough pixels; `false` (nothing written) for any other case. The identity side is
/// shared; each channel's table gets its own alpha side, then maps that channel's elements.
fn prelu_by_tables(layer: &Prelu, input: &[i8], output: &mut [i8], s: Shape4) -> bool {
    let (a, alpha) = (layer.alpha.shape, layer.alpha.data);
    let per_channel = a.n == 1 && a.h == 1 && a.w == 1 && (a.c == 1 || a.c == s.c);
    let pixels = input.len() / alpha.len().max(1);
    let offset_ok = (-127..=128).contains(&layer.params.stage.input_offset);
    if !per_channel || pixels < TABLE_FROM || !offset_ok || alpha.is_empty() {
        return false;
    }
    // |x + input_offset| <= 255 and |alpha + alpha_offset| <= 255: products below 2^16.
    let stage = &layer.params.stage;
    let fast = layer
        .multipliers
        .map(|q| ChannelStage::new(0, q, stage, 1 << 16).fast_parts());
    let mut table = [0i8; TABLE_LEN];
    layer.fill_side(&mut table, fast[0], None);
    let channels = alpha.len();
    for (c, &alpha_c) in alpha.iter().enumerate() {
        layer.fill_side(&mut table, fast[1], Some(alpha_c));
        match channels {
            1 => lookup(&table, input, output),
            _ => map_channel(&table, input, output, c, channels),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(alpha: &[i8], alpha_shape: Shape4) -> Prelu<'_> {
        Prelu {
            params: PreluParams {
                stage: Int8Stage {
                    input_offset: 3,
                    output_offset: -2,
                    act_min: -128,
                    act_max: 127,
                },
                alpha_offset: -10,
            },
            multipliers: [
                QuantizedMultiplier::from_f64(0.5).unwrap(),
                QuantizedMultiplier::from_f64(0.01).unwrap(),
            ],
            alpha: Tensor {
                data: alpha,
                shape: alpha_shape,
            },
            input: 0,
            output: 1,
        }
    }

    /// The table path against the direct one (checked against the formula above): random
    /// offsets, multipliers (including ones the fast output stage refuses), alphas per
    /// channel and shared, every input code.
    #[test]
    fn table_path_matches_the_direct_one() {
        let mut rng = crate::test_support::Rng(0x93E1);
        let code = |rng: &mut crate::test_support::Rng| (rng.next() % 256) as u8 as i8;
        for case in 0..400 {
            let c = [1, 3, 8, 16][case % 4];
            let shape = Shape4::new(1, 9, 8, c);
            let alpha: Vec<i8> = (0..[1, c][case / 4 % 2]).map(|_| code(&mut rng)).collect();
            let alpha_shape = Shape4::new(1, 1, 1, alpha.len());
            let mut l = layer(&alpha, alpha_shape);
            let offset = |r: u64| (r % 256) as i32 - 127;
            l.params.stage.input_offset = offset(rng.next());
            l.params.stage.output_offset = offset(rng.next()) - 1;
            l.params.alpha_offset = offset(rng.next());
            let mut real = || 2f64.powi((rng.next() % 30) as i32 - 22) * 1.7;
            l.multipliers = [real(), real()].map(|r| QuantizedMultiplier::from_f64(r).unwrap());
            let x: Vec<i8> = (0..shape.elements().unwrap())
                .map(|_| code(&mut rng))
                .collect();
            let (mut fast, mut direct) = (vec![0i8; x.len()], vec![0i8; x.len()]);
            assert!(prelu_by_tables(&l, &x, &mut fast, shape), "case {case}");
            prelu_direct(&l, Tensor { data: &x, shape }, &mut direct).unwrap();
            assert_eq!(
                fast, direct,
                "case {case}: {:?} {:?}",
                l.params, l.multipliers
            );
        }
    }

    /// Per channel alpha over a 1x2x2x3 input, against TFLite's formula written out.
    #[test]
    fn alpha_broadcasts_per_channel_and_shared() {
        let shape = Shape4::new(1, 2, 2, 3);
        let x: Vec<i8> = (0..12).map(|i| (i * 23 - 128) as i8).collect();
        for (alpha, ashape) in [
            (vec![20i8, 110, -50], Shape4::new(1, 1, 1, 3)),
            (vec![60i8], Shape4::new(1, 1, 1, 1)),
            (vec![20i8, 110, -50, 0, 1, 2], Shape4::new(1, 1, 2, 3)),
        ] {
            let l = layer(&alpha, ashape);
            let mut out = vec![0i8; 12];
            prelu_i8(&l, Tensor { data: &x, shape }, &mut out).unwrap();
            for (i, (&xi, &o)) in x.iter().zip(&out).enumerate() {
                let (w, c) = ((i / 3) % 2, i % 3);
                let a = match alpha.len() {
                    1 => alpha[0],
                    3 => alpha[c],
                    _ => alpha[w * 3 + c],
                };
                let v = i32::from(xi) + 3;
                let want = if v >= 0 {
                    l.multipliers[0].apply(v)
                } else {
                    l.multipliers[1].apply(v * (i32::from(a) - 10))
                };
                assert_eq!(i32::from(o), (want - 2).clamp(-128, 127), "element {i}");
            }
        }
        let l = layer(&[1, 2], Shape4::new(1, 1, 1, 2));
        assert!(prelu_i8(&l, Tensor { data: &x, shape }, &mut [0; 12]).is_err());
    }
}
