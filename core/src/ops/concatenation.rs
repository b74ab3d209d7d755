//! CONCATENATION of up to four int8 tensors along one axis (PACK lowers to it through a graph
//! pass, and wider ones are split into a chain). TFLite-Micro's int8 kernel copies raw codes
//! and refuses inputs quantized unlike the output, so this is a copy: for each position before
//! the axis, each input's contiguous run after it, in input order.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::{Activation, Shape4, Tensor, TensorMut};
use crate::format::{DType, OpCode, MAX_OP_INPUTS};
use crate::model::{Decoder, Scratch};
use crate::Error;

record_params! {
    /// CONCATENATION's record parameters.
    pub struct ConcatenationParams {
        /// The axis, as an NHWC position (0 = batch .. 3 = channels).
        pub axis: i32,
    }
}

/// How the output interleaves its inputs: `outer` times, each input's run in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcatGeometry {
    /// Positions before the axis (the product of the output's dimensions there).
    pub outer: usize,
    /// Each input's run per position (0 past the last input).
    pub runs: [usize; MAX_OP_INPUTS],
}

impl ConcatGeometry {
    /// The geometry of `inputs` concatenated into `output` along NHWC position `axis`, or
    /// `None` unless each input matches the output outside the axis and the axis adds up.
    pub fn new(inputs: &[Shape4], output: Shape4, axis: usize) -> Option<Self> {
        let dims = |s: Shape4| [s.n, s.h, s.w, s.c];
        let out = dims(output);
        let outer = out
            .get(..axis)?
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let inner = out
            .get(axis + 1..)?
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let mut runs = [0; MAX_OP_INPUTS];
        let mut along = 0usize;
        for (run, &s) in runs.iter_mut().zip(inputs) {
            let d = dims(s);
            let same = (0..4).all(|k| k == axis || d[k] == out[k]);
            if !same || d[axis] == 0 {
                return None;
            }
            along = along.checked_add(d[axis])?;
            *run = d[axis].checked_mul(inner)?;
        }
        let valid = !inputs.is_empty() && inputs.len() <= MAX_OP_INPUTS && along == out[axis];
        valid.then_some(Self { outer, runs })
    }
}

/// CONCATENATION, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Concatenation {
    /// Runs per input.
    pub geometry: ConcatGeometry,
    /// Input tensors.
    pub inputs: [Option<u16>; MAX_OP_INPUTS],
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Concatenation {
    type Params = ConcatenationParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = MAX_OP_INPUTS;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let unsupported = |what| Err(LowerError::Unsupported { what });
        if cx.optional(MAX_OP_INPUTS)?.is_some() {
            return unsupported("CONCATENATION of more than 4 inputs (the graph pass splits it)");
        }
        if cx.options().activation != Activation::None {
            return unsupported("CONCATENATION with a fused activation (TFLite-Micro has none)");
        }
        let out = cx.tensor(cx.output())?;
        cx.typed(cx.output(), DType::I8, "output")?;
        let quant = cx.per_tensor(cx.output())?;
        let mut shapes = [Shape4::default(); MAX_OP_INPUTS];
        let mut count = 0;
        for (slot, shape) in shapes.iter_mut().enumerate() {
            let Some(id) = cx.optional(slot)? else { break };
            let t = cx.typed(id, DType::I8, "input")?;
            if t.constant {
                return unsupported("CONCATENATION of a constant input is not supported");
            }
            if t.dims.len() != out.dims.len() {
                return unsupported("CONCATENATION inputs must have the output's rank");
            }
            if cx.per_tensor(id)? != quant {
                return Err(LowerError::Quantization {
                    tensor: id,
                    what: "CONCATENATION inputs must be quantized like the output (TFLite-Micro)",
                });
            }
            *shape = t.shape;
            count += 1;
        }
        if cx.optional(count)?.is_some() || count == 0 {
            return Err(LowerError::MissingInput { slot: count });
        }
        let rank = out.dims.len() as i64;
        let axis = i64::from(cx.options().axis);
        if !(-rank..rank).contains(&axis) {
            return unsupported("CONCATENATION axis out of range");
        }
        let axis = (axis.rem_euclid(rank) + 4 - rank) as usize;
        if ConcatGeometry::new(&shapes[..count], out.shape, axis).is_none() {
            return unsupported("CONCATENATION inputs do not add up to the output along the axis");
        }
        cx.params(&ConcatenationParams { axis: axis as i32 })
    }

    fn decode(d: &Decoder<'_, 'a>, p: ConcatenationParams) -> Self {
        let output = d.output(DType::I8);
        let mut inputs = [None; MAX_OP_INPUTS];
        let mut shapes = [Shape4::default(); MAX_OP_INPUTS];
        let mut count = 0;
        for (slot, (input, shape)) in inputs.iter_mut().zip(&mut shapes).enumerate() {
            if !d.has_input(slot) {
                break;
            }
            let t = d.activation(slot, DType::I8);
            *input = Some(t.index);
            *shape = t.shape;
            count += 1;
        }
        d.check(
            (count..MAX_OP_INPUTS).all(|slot| !d.has_input(slot)),
            why!("CONCATENATION inputs must fill the first slots"),
        );
        let axis = usize::try_from(p.axis).unwrap_or(usize::MAX);
        let geometry = ConcatGeometry::new(&shapes[..count], output.shape, axis);
        d.check(
            geometry.is_some(),
            why!("CONCATENATION inputs do not add up to the output along the axis"),
        );
        Concatenation {
            geometry: geometry.unwrap_or(ConcatGeometry {
                outer: 0,
                runs: [0; MAX_OP_INPUTS],
            }),
            inputs,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io {
            inputs: self.inputs,
            output: self.output,
            scratch: Scratch::default(),
            state: [None; 2],
        })
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        concatenation_i8(&self.geometry, &v.inputs, v.output)
    }
}

/// The int8 kernel: run after run copied from each input in turn.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn concatenation_i8(
    g: &ConcatGeometry,
    inputs: &[Tensor<i8>],
    output: TensorMut<i8>,
) -> Result<(), Error> {
    super::built(OpCode::Concatenation)?;
    let total = g.runs.iter().try_fold(0usize, |a, &r| a.checked_add(r));
    let total = total.ok_or(Error::ShapeOverflow)?;
    let expect = |len: usize, run: usize| {
        let expected = g.outer.checked_mul(run).ok_or(Error::ShapeOverflow)?;
        match expected == len {
            true => Ok(()),
            false => Err(Error::LengthMismatch {
                expected,
                actual: len,
            }),
        }
    };
    expect(output.data.len(), total)?;
    for (k, &run) in g.runs.iter().enumerate() {
        expect(inputs.get(k).map_or(0, |t| t.data.len()), run)?;
    }
    if total == 0 {
        return Ok(());
    }
    // Input by input: its runs land `total` apart, from its offset in the first position.
    let mut offset = 0;
    for (x, &run) in inputs.iter().zip(&g.runs) {
        let Some(dst) = output.data.get_mut(offset..).filter(|_| run > 0) else {
            continue;
        };
        // Each chunk of `dst` but the last holds `total >= run` bytes, the last `total -
        // offset >= run`; `copy` writes the run's length.
        for (to, from) in dst.chunks_mut(total).zip(x.data.chunks_exact(run)) {
            super::bytes::copy(to, from);
        }
        offset += run;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(shapes: &[Shape4], axis: usize) -> (Vec<Vec<i8>>, Vec<i8>, Shape4) {
        let mut out_shape = shapes[0];
        let along: usize = shapes.iter().map(|s| [s.n, s.h, s.w, s.c][axis]).sum();
        match axis {
            0 => out_shape.n = along,
            1 => out_shape.h = along,
            2 => out_shape.w = along,
            _ => out_shape.c = along,
        }
        let data: Vec<Vec<i8>> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let len = s.elements().unwrap();
                (0..len)
                    .map(|e| (e as i8).wrapping_add(40 * k as i8))
                    .collect()
            })
            .collect();
        let g = ConcatGeometry::new(shapes, out_shape, axis).unwrap();
        let tensors: Vec<Tensor<i8>> = data
            .iter()
            .zip(shapes)
            .map(|(d, &shape)| Tensor { data: d, shape })
            .collect();
        let mut out = vec![0i8; out_shape.elements().unwrap()];
        let output = TensorMut {
            data: &mut out,
            shape: out_shape,
        };
        concatenation_i8(&g, &tensors, output).unwrap();
        (data, out, out_shape)
    }

    /// Every output element, found by its coordinates, is the element of the input it falls in.
    #[test]
    fn concatenates_along_every_axis() {
        let mut rng = crate::test_support::Rng(0xC0CA7);
        for case in 0..200 {
            let axis = case % 4;
            let base = [
                1 + rng.below(2),
                1 + rng.below(3),
                1 + rng.below(3),
                1 + rng.below(4),
            ];
            let count = 1 + rng.below(4);
            let shapes: Vec<Shape4> = (0..count)
                .map(|_| {
                    let mut d = base;
                    d[axis] = 1 + rng.below(3);
                    Shape4::new(d[0], d[1], d[2], d[3])
                })
                .collect();
            let (data, out, o) = run(&shapes, axis);
            let od = [o.n, o.h, o.w, o.c];
            for (e, &y) in out.iter().enumerate() {
                let mut idx = [
                    e / (o.h * o.w * o.c),
                    e / (o.w * o.c) % o.h,
                    e / o.c % o.w,
                    e % o.c,
                ];
                let mut k = 0;
                while idx[axis] >= [shapes[k].n, shapes[k].h, shapes[k].w, shapes[k].c][axis] {
                    idx[axis] -= [shapes[k].n, shapes[k].h, shapes[k].w, shapes[k].c][axis];
                    k += 1;
                }
                let s = shapes[k];
                let src = ((idx[0] * s.h + idx[1]) * s.w + idx[2]) * s.c + idx[3];
                assert_eq!(y, data[k][src], "case {case}, axis {axis}, {od:?}");
            }
        }
    }

    #[test]
    fn refuses_shapes_that_do_not_add_up() {
        let a = Shape4::new(1, 2, 2, 3);
        let b = Shape4::new(1, 2, 2, 2);
        assert!(ConcatGeometry::new(&[a, b], Shape4::new(1, 2, 2, 5), 3).is_some());
        assert!(ConcatGeometry::new(&[a, b], Shape4::new(1, 2, 2, 6), 3).is_none());
        assert!(ConcatGeometry::new(&[a, b], Shape4::new(1, 4, 2, 3), 1).is_none());
        assert!(ConcatGeometry::new(&[a, b], Shape4::new(1, 2, 2, 5), 4).is_none());
        assert!(ConcatGeometry::new(&[], Shape4::new(1, 2, 2, 5), 3).is_none());
        let g = ConcatGeometry::new(&[a, b], Shape4::new(1, 2, 2, 5), 3).unwrap();
        let short = [0i8; 11];
        let full = [0i8; 8];
        let inputs = [
            Tensor {
                data: &short[..],
                shape: a,
            },
            Tensor {
                data: &full[..],
                shape: b,
            },
        ];
        let mut out = [0i8; 20];
        let output = TensorMut {
            data: &mut out,
            shape: Shape4::new(1, 2, 2, 5),
        };
        assert!(concatenation_i8(&g, &inputs, output).is_err());
    }
}
