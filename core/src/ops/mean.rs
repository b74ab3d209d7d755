//! MEAN over the spatial axes (height and width) of an NHWC tensor: what converters make of a
//! global average pooling layer. int8 follows TFLite-Micro's three paths exactly; which one
//! runs depends on `keep_dims` and on whether input and output share quantization.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::{record_params, Field, SlotReader, SlotWriter};
use super::{Tensor, TensorMut};
use crate::format::DType;
use crate::format::OpCode;
use crate::model::{Decoder, Scratch};
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// TFLite-Micro's three int8 MEAN algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MeanMode {
    /// 4-D input, axes {1, 2}, keep_dims: requantize the centred sum, then divide by the
    /// count rounding half away from zero.
    SpatialKeepDims = 0,
    /// Input and output share scale and zero point: the truncated mean of the raw values.
    SameQuantization = 1,
    /// Everything else: 1/count folded into the multiplier.
    General = 2,
}

impl MeanMode {
    /// Decodes a mode number.
    pub fn from_i32(v: i32) -> Option<Self> {
        match v {
            0 => Some(MeanMode::SpatialKeepDims),
            1 => Some(MeanMode::SameQuantization),
            2 => Some(MeanMode::General),
            _ => None,
        }
    }
}

/// Precomputed MEAN parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MeanParams {
    /// Which algorithm.
    pub mode: MeanMode,
    /// The requantization (unused for `SameQuantization`).
    pub requant: QuantizedMultiplier,
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
}

impl MeanParams {
    /// What TFLite-Micro's MEAN prepare computes for a reduction over `count` elements.
    pub fn from_scales(
        input: (f32, i32),
        output: (f32, i32),
        count: usize,
        keep_dims_4d: bool,
    ) -> Option<Self> {
        let (mode, requant) = if keep_dims_4d {
            let q = QuantizedMultiplier::from_f64(input.0 as f64 / output.0 as f64)?;
            (MeanMode::SpatialKeepDims, q)
        } else if input == output {
            (
                MeanMode::SameQuantization,
                QuantizedMultiplier {
                    multiplier: 0,
                    shift: 0,
                },
            )
        } else {
            let q = QuantizedMultiplier::from_f64(input.0 as f64 / output.0 as f64)?;
            let count = i64::try_from(count).ok().filter(|&c| c > 0)?;
            // Fold 1/count into the mantissa, keeping as many bits as the shift allows.
            let log2 = 63 - count.leading_zeros() as i32;
            let shift = log2.min(32).min(31 + q.shift);
            if shift < 0 {
                return None;
            }
            let multiplier = ((q.multiplier as i64) << shift) / count;
            (
                MeanMode::General,
                QuantizedMultiplier {
                    multiplier: i32::try_from(multiplier).ok()?,
                    shift: q.shift - shift,
                },
            )
        };
        Some(Self {
            mode,
            requant,
            input_zero_point: input.1,
            output_zero_point: output.1,
        })
    }
}

/// int8 MEAN over height and width: `output` holds `n * c` values.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn mean_hw_i8(p: &MeanParams, input: Tensor<i8>, output: TensorMut<i8>) -> Result<(), Error> {
    super::built(OpCode::Mean)?;
    let s = input.shape;
    s.check_len(input.data.len())?;
    let plane = s.h.checked_mul(s.w).ok_or(Error::ShapeOverflow)?;
    let expected = s.n.checked_mul(s.c).ok_or(Error::ShapeOverflow)?;
    if output.data.len() != expected {
        return Err(Error::LengthMismatch {
            expected,
            actual: output.data.len(),
        });
    }
    // Sums of up to 2^23 int8 values fit in i32 with room for the zero-point correction.
    let count = i32::try_from(plane)
        .ok()
        .filter(|&c| c > 0 && c < 1 << 23)
        .ok_or(Error::InvalidParameter {
            what: why!("MEAN over too many elements"),
        })?;
    if !(-31..=30).contains(&p.requant.shift) {
        return Err(Error::InvalidParameter {
            what: why!("MEAN requantization shift out of range"),
        });
    }
    for b in 0..s.n {
        let image = &input.data[b * plane * s.c..(b + 1) * plane * s.c];
        for c in 0..s.c {
            let sum: i32 = image
                .iter()
                .skip(c)
                .step_by(s.c)
                .map(|&x| i32::from(x))
                .sum();
            let value = match p.mode {
                MeanMode::SpatialKeepDims => {
                    let acc = p.requant.apply(sum - count * p.input_zero_point);
                    let half = count / 2;
                    let mean = if acc > 0 {
                        (acc + half) / count
                    } else {
                        (acc - half) / count
                    };
                    mean + p.output_zero_point
                }
                MeanMode::SameQuantization => sum / count,
                MeanMode::General => {
                    p.requant.apply(sum - count * p.input_zero_point) + p.output_zero_point
                }
            };
            output.data[b * s.c + c] = value.clamp(-128, 127) as i8;
        }
    }
    Ok(())
}

record_params! {
    /// MEAN's record parameters; its one multiplier is the record's requantization constant.
    pub struct MeanRecordParams {
        /// Which of TFLite-Micro's algorithms.
        pub mode: MeanMode,
    }
}

/// One mode in one slot.
impl Field for MeanMode {
    fn write(&self, w: &mut SlotWriter) {
        w.put(*self as i32);
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let v = r.take();
        MeanMode::from_i32(v).unwrap_or_else(|| {
            r.reject(why!("unknown MEAN mode"));
            MeanMode::General
        })
    }
}

/// MEAN over height and width, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Mean {
    /// Algorithm and requantization.
    pub params: MeanParams,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Mean {
    type Params = MeanRecordParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let axes = cx.tensor(cx.input(1)?)?;
        let t = cx.tensor(input)?;
        let spatial = match axes.i32_data {
            Some(&[a, b]) if t.dims.len() == 4 => {
                let mut axes = [a, b].map(|a| i64::from(a).rem_euclid(4));
                axes.sort_unstable();
                axes == [1, 2]
            }
            _ => false,
        };
        if !spatial {
            return Err(LowerError::Unsupported {
                what: "MEAN is supported over the height and width of a 4-D input only",
            });
        }
        let keep_dims_4d = cx.options().keep_dims;
        let params = MeanParams::from_scales(
            cx.per_tensor(input)?,
            cx.per_tensor(cx.output())?,
            t.shape.h * t.shape.w,
            keep_dims_4d,
        )
        .ok_or(LowerError::Unsupported {
            what: "MEAN scales out of the representable range",
        })?;
        cx.requant(params.requant);
        cx.params(&MeanRecordParams { mode: params.mode })
    }

    fn decode(d: &Decoder<'_, 'a>, record: MeanRecordParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let s = input.shape;
        d.check(
            output.shape.elements() == s.n.checked_mul(s.c) && output.shape.c == s.c,
            why!("MEAN over height and width keeps only batch and channels"),
        );
        d.check(
            s.h.checked_mul(s.w).is_some_and(|plane| plane < 1 << 23),
            why!("MEAN over too many elements"),
        );
        let [requant] = d.requant_array::<1>();
        Mean {
            params: MeanParams {
                mode: record.mode,
                requant,
                input_zero_point: input.zero_point(),
                output_zero_point: output.zero_point(),
            },
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        mean_hw_i8(&self.params, v.inputs[0], v.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Shape4;

    #[test]
    fn general_path_folds_the_count_into_the_multiplier() {
        // s_in / s_out = 0.5 -> (2^30, 0); count 4: shift = min(2, 32, 31) = 2,
        // multiplier = 2^32 / 4 = 2^30, shift -2: overall 0.5 / 4 = 0.125.
        let p = MeanParams::from_scales((0.5, 3), (1.0, -1), 4, false).unwrap();
        assert_eq!(p.mode, MeanMode::General);
        assert_eq!(
            p.requant,
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: -2
            }
        );
        // One channel, values 10, 20, 30, 45: centred sum 105 - 12 = 93; 93 * 0.125 = 11.625
        // -> 12; + (-1) = 11.
        let input = [10i8, 20, 30, 45];
        let mut out = [0i8; 1];
        let shape = Shape4::new(1, 2, 2, 1);
        mean_hw_i8(
            &p,
            Tensor {
                data: &input,
                shape,
            },
            TensorMut {
                data: &mut out,
                shape,
            },
        )
        .unwrap();
        assert_eq!(out, [11]);
    }

    #[test]
    fn keep_dims_path_divides_after_requantizing() {
        // Ratio 1: multiplier (2^30, 1). Two channels over a 1x3 plane.
        let p = MeanParams::from_scales((0.1, 0), (0.1, 0), 3, true).unwrap();
        assert_eq!(p.mode, MeanMode::SpatialKeepDims);
        let input = [1i8, -1, 2, -2, 2, -2]; // channel 0: 1, 2, 2 (sum 5); channel 1: -5
        let mut out = [0i8; 2];
        let shape = Shape4::new(1, 1, 3, 2);
        mean_hw_i8(
            &p,
            Tensor {
                data: &input,
                shape,
            },
            TensorMut {
                data: &mut out,
                shape,
            },
        )
        .unwrap();
        // 5/3 = 1.67 -> (5 + 1) / 3 = 2; -5 -> (-5 - 1) / 3 = -2.
        assert_eq!(out, [2, -2]);
    }

    #[test]
    fn same_quantization_truncates_the_raw_mean() {
        let p = MeanParams::from_scales((0.1, 5), (0.1, 5), 2, false).unwrap();
        assert_eq!(p.mode, MeanMode::SameQuantization);
        let input = [3i8, 4, -3, -4];
        let mut out = [0i8; 2];
        let shape = Shape4::new(1, 1, 2, 2);
        mean_hw_i8(
            &p,
            Tensor {
                data: &input,
                shape,
            },
            TensorMut {
                data: &mut out,
                shape,
            },
        )
        .unwrap();
        // (3 - 3) / 2 = 0 and (4 - 4) / 2 = 0; then 7/2 -> 3 checks truncation below.
        assert_eq!(out, [0, 0]);
        let input = [3i8, 4];
        let mut out = [0i8; 1];
        let shape = Shape4::new(1, 1, 2, 1);
        mean_hw_i8(
            &p,
            Tensor {
                data: &input,
                shape,
            },
            TensorMut {
                data: &mut out,
                shape,
            },
        )
        .unwrap();
        assert_eq!(out, [3]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let p = MeanParams::from_scales((0.1, 0), (0.2, 0), 4, false).unwrap();
        let shape = Shape4::new(1, 2, 2, 1);
        let mut out = [0i8; 2];
        assert!(mean_hw_i8(
            &p,
            Tensor {
                data: &[0; 4],
                shape
            },
            TensorMut {
                data: &mut out,
                shape
            }
        )
        .is_err());
        let mut out = [0i8; 1];
        assert!(mean_hw_i8(
            &p,
            Tensor {
                data: &[0; 3],
                shape
            },
            TensorMut {
                data: &mut out,
                shape
            }
        )
        .is_err());
    }
}
