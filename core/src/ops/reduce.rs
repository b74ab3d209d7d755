//! MEAN, SUM and REDUCE_MAX over any set of axes, int8, as TFLite-Micro's reduce kernels.
//!
//! The axes (a constant int32 input, negative ones counting from the end) become a mask of
//! NHWC positions at lowering; `keep_dims` does not change the output's element order, so
//! the kernel ignores it. Each output element folds its box of input elements: the innermost
//! loop runs over channels, contiguous when they are reduced. TFLite-Micro's int8 MEAN takes
//! one path for every axis set and quantization (`QuantizedMeanOrSum`, no special case for a
//! 4-D spatial mean, no truncating same-quantization mean), and so does mote.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::{record_params, Field, SlotReader, SlotWriter};
use super::Shape4;
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// What a reduction computes from its box of inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReduceMode {
    /// REDUCE_MAX (input and output share quantization).
    Max = 0,
    /// SUM: the centred sum requantized by `s_in / s_out`.
    Sum = 1,
    /// MEAN: the centred sum requantized by `s_in / s_out` with `1 / count` folded into the
    /// multiplier (TFLite-Micro's `QuantizedMeanOrSum`, whatever the axes and quantization).
    Mean = 2,
}

impl ReduceMode {
    /// Decodes a mode number.
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => ReduceMode::Max,
            1 => ReduceMode::Sum,
            2 => ReduceMode::Mean,
            _ => return None,
        })
    }

    /// The mode and requantization constant TFLite-Micro's prepare and eval choose for
    /// `opcode` reducing `count` elements into each output. `None`: scales it cannot
    /// represent (or a REDUCE_MAX that would requantize, which TFLite-Micro refuses).
    pub fn prepare(
        opcode: OpCode,
        input: (f32, i32),
        output: (f32, i32),
        count: usize,
    ) -> Option<(Self, QuantizedMultiplier)> {
        let ratio = || QuantizedMultiplier::from_f64(f64::from(input.0) / f64::from(output.0));
        Some(match opcode {
            OpCode::ReduceMax if input == output => {
                (ReduceMode::Max, QuantizedMultiplier::from_f64(1.0)?)
            }
            OpCode::ReduceMax => return None,
            OpCode::Sum => (ReduceMode::Sum, ratio()?),
            _ => (ReduceMode::Mean, fold_count(ratio()?, count)?),
        })
    }
}

/// TFLite's folding of `1 / count` into a multiplier: as many more mantissa bits as the
/// count has (at most 32, and the shift must stay >= -31), then an integer division.
fn fold_count(q: QuantizedMultiplier, count: usize) -> Option<QuantizedMultiplier> {
    let count = i64::try_from(count).ok().filter(|&c| c > 0)?;
    let log2 = 63 - count.leading_zeros() as i32;
    let shift = log2.min(32).min(31 + q.shift);
    if shift < 0 {
        return None;
    }
    let multiplier = (i64::from(q.multiplier) << shift) / count;
    Some(QuantizedMultiplier {
        multiplier: i32::try_from(multiplier).ok()?,
        shift: q.shift - shift,
    })
}

/// One mode in one slot.
impl Field for ReduceMode {
    fn write(&self, w: &mut SlotWriter) {
        w.put(*self as i32);
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let v = r.take();
        ReduceMode::from_i32(v).unwrap_or_else(|| {
            r.reject(why!("unknown reduction mode"));
            ReduceMode::Max
        })
    }
}

record_params! {
    /// A reduction's record parameters; its multiplier is the record's one requantization
    /// constant.
    pub struct ReduceParams {
        /// What it computes.
        pub mode: ReduceMode,
        /// The reduced NHWC positions: bit 0 batch, 1 height, 2 width, 3 channels.
        pub axes: i32,
    }
}

/// Largest number of elements one output may fold: their centred sum stays in i32.
const MAX_COUNT: usize = 1 << 23;

/// A reduction, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Reduce {
    /// What it computes.
    pub mode: ReduceMode,
    /// Reduced NHWC positions (bit k: position k).
    pub axes: u8,
    /// The requantization (identity for REDUCE_MAX).
    pub requant: QuantizedMultiplier,
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

/// The input's dimensions split into those each output keeps and the box it folds.
fn split(shape: Shape4, axes: u8) -> ([usize; 4], [usize; 4]) {
    let dims = [shape.n, shape.h, shape.w, shape.c];
    let mut kept = [1; 4];
    let mut reduced = [1; 4];
    for (k, &d) in dims.iter().enumerate() {
        match axes & (1 << k) != 0 {
            true => reduced[k] = d,
            false => kept[k] = d,
        }
    }
    (kept, reduced)
}

/// TFLite's axes for a rank-`rank` input as a mask of NHWC positions (negative axes count
/// from the end; repeats count once).
fn axis_mask(axes: &[i32], rank: usize) -> Result<u8, LowerError> {
    let mut mask = 0u8;
    for &a in axes {
        let resolved = if a < 0 {
            i64::from(a) + rank as i64
        } else {
            a.into()
        };
        if !(0..rank as i64).contains(&resolved) {
            return Err(LowerError::Unsupported {
                what: "a reduction axis is out of the input's rank",
            });
        }
        mask |= 1 << (resolved as usize + 4 - rank);
    }
    Ok(mask)
}

impl<'a> Operator<'a> for Reduce {
    type Params = ReduceParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let axes_id = cx.input(1)?;
        let axes_t = cx.typed(axes_id, DType::I32, "axes")?;
        let axes = match (axes_t.constant, axes_t.i32_data) {
            (true, Some(axes)) => axes,
            _ => {
                return Err(LowerError::Unsupported {
                    what: "reduction axes must be a constant int32 tensor",
                })
            }
        };
        let t = cx.tensor(input)?;
        let mask = axis_mask(axes, t.dims.len())?;
        let (kept, reduced) = split(t.shape, mask);
        let count: usize = reduced.iter().product();
        if count > MAX_COUNT {
            return Err(LowerError::Unsupported {
                what: "a reduction over more than 2^23 elements",
            });
        }
        let out_elements = cx.tensor(cx.output())?.shape.elements();
        if out_elements != Some(kept.iter().product()) {
            let [n, h, w, c] = kept;
            return Err(LowerError::WrongOutputShape {
                tensor: cx.output(),
                expected: Shape4::new(n, h, w, c),
            });
        }
        let (mode, requant) = ReduceMode::prepare(
            cx.opcode(),
            cx.per_tensor(input)?,
            cx.per_tensor(cx.output())?,
            count,
        )
        .ok_or(LowerError::Unsupported {
            what: "the reduction's scales are out of the representable range (REDUCE_MAX: \
                   input and output must share scale and zero point)",
        })?;
        cx.requant(requant);
        cx.params(&ReduceParams {
            mode,
            axes: i32::from(mask),
        })
    }

    fn decode(d: &Decoder<'_, 'a>, params: ReduceParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        d.check(
            (0..16).contains(&params.axes),
            why!("reduction axes mask out of range"),
        );
        let axes = (params.axes & 0xF) as u8;
        let (kept, reduced) = split(input.shape, axes);
        let product = |d: [usize; 4]| d.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        d.check(
            output.shape.elements() == product(kept),
            why!("reduction output size differs from the kept dimensions"),
        );
        d.check(
            product(reduced).is_some_and(|c| c <= MAX_COUNT),
            why!("reduction over too many elements"),
        );
        let [requant] = d.requant_array::<1>();
        Reduce {
            mode: params.mode,
            axes,
            requant,
            input_zero_point: input.zero_point(),
            output_zero_point: output.zero_point(),
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        reduce_i8(self, v.inputs[0].data, v.inputs[0].shape, v.output.data)
    }
}

impl Reduce {
    /// The output value from the fold `acc` (max or sum) of `count` inputs.
    #[inline(always)]
    fn finish(&self, acc: i32, count: i32) -> i32 {
        match self.mode {
            ReduceMode::Max => acc,
            ReduceMode::Sum | ReduceMode::Mean => {
                let centred = acc.wrapping_sub(count.wrapping_mul(self.input_zero_point));
                self.requant.apply(centred) + self.output_zero_point
            }
        }
    }
}

/// The int8 kernel: `input` of `shape` into `output` (the kept dimensions' elements, in
/// order), bit-exact with TFLite-Micro's.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn reduce_i8(
    layer: &Reduce,
    input: &[i8],
    shape: Shape4,
    output: &mut [i8],
) -> Result<(), Error> {
    shape.check_len(input.len())?;
    let (kept, reduced) = split(shape, layer.axes);
    Shape4::new(kept[0], kept[1], kept[2], kept[3]).check_len(output.len())?;
    let count = reduced.iter().product::<usize>();
    let count = i32::try_from(count)
        .ok()
        .filter(|&c| c > 0 && c as usize <= MAX_COUNT)
        .ok_or(Error::InvalidParameter {
            what: why!("reduction over too many (or no) elements"),
        })?;
    match layer.mode {
        ReduceMode::Max => fold::<true>(layer, input, shape, output, count),
        _ => fold::<false>(layer, input, shape, output, count),
    }
}

/// Channels accumulated side by side when they are kept (a stack buffer, no scratch).
const LANES: usize = 64;

/// [`reduce_i8`]'s loops, for a max (`MAX`) or a sum. Each group of outputs (one when the
/// channels are reduced, up to [`LANES`] channels when they are kept) folds the rows of its
/// box; a row is contiguous input.
fn fold<const MAX: bool>(
    layer: &Reduce,
    input: &[i8],
    shape: Shape4,
    output: &mut [i8],
    count: i32,
) -> Result<(), Error> {
    let (kept, reduced) = split(shape, layer.axes);
    let strides = [shape.h * shape.w * shape.c, shape.w * shape.c, shape.c];
    let channels_reduced = reduced[3] > 1 || kept[3] == 1;
    let step = |a: i32, x: &i8| match MAX {
        true => a.max(i32::from(*x)),
        false => a + i32::from(*x),
    };
    let init = if MAX { i32::from(i8::MIN) } else { 0 };
    let mut out = output.iter_mut();
    for o0 in 0..kept[0] {
        for o1 in 0..kept[1] {
            for o2 in 0..kept[2] {
                let base = o0 * strides[0] + o1 * strides[1] + o2 * strides[2];
                let mut c0 = 0;
                while c0 < kept[3] {
                    let lanes = match channels_reduced {
                        true => 1,
                        false => (kept[3] - c0).min(LANES),
                    };
                    let mut acc = [init; LANES];
                    let acc = &mut acc[..lanes];
                    for j0 in 0..reduced[0] {
                        for j1 in 0..reduced[1] {
                            for j2 in 0..reduced[2] {
                                let start =
                                    base + j0 * strides[0] + j1 * strides[1] + j2 * strides[2] + c0;
                                let len = if channels_reduced { reduced[3] } else { lanes };
                                let row =
                                    input.get(start..start + len).ok_or(Error::ShapeOverflow)?;
                                match channels_reduced {
                                    true => acc[0] = row.iter().fold(acc[0], step),
                                    false => {
                                        for (a, x) in acc.iter_mut().zip(row) {
                                            *a = step(*a, x);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    for &a in acc.iter() {
                        let slot = out.next().ok_or(Error::ShapeOverflow)?;
                        *slot = layer.finish(a, count).clamp(-128, 127) as i8;
                    }
                    c0 += lanes;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(
        opcode: OpCode,
        input: (f32, i32),
        output: (f32, i32),
        shape: Shape4,
        axes: u8,
    ) -> Reduce {
        let (_, reduced) = split(shape, axes);
        let count = reduced.iter().product();
        let (mode, requant) = ReduceMode::prepare(opcode, input, output, count).unwrap();
        Reduce {
            mode,
            axes,
            requant,
            input_zero_point: input.1,
            output_zero_point: output.1,
            input: 0,
            output: 1,
        }
    }

    #[test]
    fn mean_folds_the_count_into_the_multiplier() {
        // s_in / s_out = 0.5 -> (2^30, 0); count 4: shift 2, multiplier 2^30, shift -2.
        let shape = Shape4::new(1, 2, 2, 1);
        let l = layer(OpCode::Mean, (0.5, 3), (1.0, -1), shape, 0b0110);
        assert_eq!(l.mode, ReduceMode::Mean);
        assert_eq!(
            l.requant,
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: -2
            }
        );
        // Centred sum 105 - 12 = 93; 93 * 0.125 = 11.625 -> 12; + (-1) = 11.
        let mut out = [0i8; 1];
        reduce_i8(&l, &[10, 20, 30, 45], shape, &mut out).unwrap();
        assert_eq!(out, [11]);
        // Same quantization still requantizes: centred sums -3 and -13 times 0.5, rounded by
        // the multiplier (-1.5 -> -1, -6.5 -> -6), plus the zero point.
        let shape = Shape4::new(1, 1, 2, 2);
        let l = layer(OpCode::Mean, (0.1, 5), (0.1, 5), shape, 0b0100);
        let mut out = [0i8; 2];
        reduce_i8(&l, &[3, 4, 4, -7], shape, &mut out).unwrap();
        assert_eq!(out, [4, -1]);
    }

    #[test]
    fn max_and_sum_fold_any_axes() {
        let shape = Shape4::new(2, 1, 3, 2);
        let input = [1i8, -5, 7, 2, -3, 9, 0, 0, -128, 4, 6, -1];
        let l = layer(OpCode::ReduceMax, (0.1, 5), (0.1, 5), shape, 0b1001);
        let mut out = [0i8; 3];
        reduce_i8(&l, &input, shape, &mut out).unwrap();
        assert_eq!(out, [1, 7, 9]);
        // SUM with the identity ratio: the centred sum (4 elements) plus the zero point.
        let l = layer(OpCode::Sum, (0.1, 5), (0.1, 5), shape, 0b1001);
        reduce_i8(&l, &input, shape, &mut out).unwrap();
        assert_eq!(out, [-4 - 20 + 5, -128, 11 - 20 + 5]);
        assert!(ReduceMode::prepare(OpCode::ReduceMax, (0.1, 5), (0.2, 5), 4).is_none());
    }

    /// More kept channels than one stack block holds, against a plain per-output fold.
    #[test]
    fn kept_channels_beyond_one_block_match_a_plain_fold() {
        let shape = Shape4::new(2, 3, 2, 70);
        let input: Vec<i8> = (0..840).map(|i| ((i * 37) % 256) as u8 as i8).collect();
        for (op, axes) in [(OpCode::ReduceMax, 0b0110u8), (OpCode::Sum, 0b0011)] {
            let l = layer(op, (0.1, 2), (0.1, 2), shape, axes);
            let (kept, reduced) = split(shape, axes);
            let mut out = vec![0i8; kept.iter().product()];
            reduce_i8(&l, &input, shape, &mut out).unwrap();
            let at = |n: usize, h: usize, w: usize, c: usize| input[((n * 3 + h) * 2 + w) * 70 + c];
            let mut k = 0;
            for n in 0..kept[0] {
                for h in 0..kept[1] {
                    for w in 0..kept[2] {
                        for c in 0..kept[3] {
                            let mut values = Vec::new();
                            for j0 in 0..reduced[0] {
                                for j1 in 0..reduced[1] {
                                    for j2 in 0..reduced[2] {
                                        values.push(i32::from(at(n + j0, h + j1, w + j2, c)));
                                    }
                                }
                            }
                            let acc = match op {
                                OpCode::ReduceMax => values.iter().copied().max().unwrap(),
                                _ => values.iter().sum(),
                            };
                            let want = l.finish(acc, values.len() as i32).clamp(-128, 127);
                            assert_eq!(i32::from(out[k]), want, "{op:?} output {k}");
                            k += 1;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn axes_resolve_and_lengths_are_checked() {
        assert_eq!(axis_mask(&[-1, 0], 2), Ok(0b1100));
        assert_eq!(axis_mask(&[-1, 1], 2), Ok(0b1000));
        assert_eq!(axis_mask(&[1, 1, -2], 4), Ok(0b0110));
        assert!(axis_mask(&[4], 4).is_err());
        let shape = Shape4::new(1, 2, 2, 1);
        let l = layer(OpCode::Sum, (0.1, 0), (0.2, 0), shape, 0b0110);
        assert!(reduce_i8(&l, &[0; 4], shape, &mut [0; 2]).is_err());
        assert!(reduce_i8(&l, &[0; 3], shape, &mut [0; 1]).is_err());
    }
}
