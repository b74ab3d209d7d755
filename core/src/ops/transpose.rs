//! TRANSPOSE of an int8 tensor of rank up to 4 by a constant permutation: output axis `k` is
//! input axis `perm[k]`. TFLite-Micro copies raw codes; so does this, as a strided copy whose
//! innermost loop walks the input at the stride of the output's last axis (contiguous runs
//! when the last axis stays last).

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::{Shape4, Tensor, TensorMut};
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::Error;

record_params! {
    /// TRANSPOSE's record parameters: the permutation over NHWC positions.
    pub struct TransposeParams {
        /// Input position of output position 0.
        pub perm_n: i32,
        /// Input position of output position 1.
        pub perm_h: i32,
        /// Input position of output position 2.
        pub perm_w: i32,
        /// Input position of output position 3.
        pub perm_c: i32,
    }
}

/// A permutation of the four NHWC positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm(pub [usize; 4]);

impl Perm {
    /// `perm` if it is a permutation of 0..4.
    pub fn new(perm: [i32; 4]) -> Option<Self> {
        let mut seen = [false; 4];
        let mut out = [0; 4];
        for (o, &p) in out.iter_mut().zip(&perm) {
            let p = usize::try_from(p).ok().filter(|&p| p < 4)?;
            if core::mem::replace(&mut seen[p], true) {
                return None;
            }
            *o = p;
        }
        Some(Perm(out))
    }

    /// The output shape for `input`.
    pub fn apply(&self, input: Shape4) -> Shape4 {
        let d = [input.n, input.h, input.w, input.c];
        let [a, b, c, e] = self.0.map(|p| d[p]);
        Shape4::new(a, b, c, e)
    }
}

/// TRANSPOSE, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Transpose {
    /// The permutation.
    pub perm: Perm,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Transpose {
    type Params = TransposeParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let i = cx.tensor(input)?;
        let perm = cx.tensor(cx.input(1)?)?;
        let rank = i.dims.len();
        let given = match perm.i32_data {
            Some(p) if perm.constant && p.len() == rank && rank <= 4 => p,
            _ => {
                return Err(LowerError::Unsupported {
                    what: "TRANSPOSE needs a constant int32 permutation of the input's axes",
                })
            }
        };
        // Axis k of a rank-r tensor is NHWC position k + 4 - r; the leading ones stay put.
        let skip = 4 - rank;
        let mut nhwc = [0, 1, 2, 3];
        for (k, &p) in given.iter().enumerate() {
            // Out of range stays out of range (Perm::new refuses it).
            nhwc[skip + k] = match usize::try_from(p) {
                Ok(p) if p < rank => (p + skip) as i32,
                _ => -1,
            };
        }
        let perm = Perm::new(nhwc).ok_or(LowerError::Unsupported {
            what: "TRANSPOSE's perm is not a permutation of the input's axes",
        })?;
        cx.expect_output(perm.apply(i.shape))?;
        cx.params(&TransposeParams {
            perm_n: nhwc[0],
            perm_h: nhwc[1],
            perm_w: nhwc[2],
            perm_c: nhwc[3],
        })
    }

    fn decode(d: &Decoder<'_, 'a>, p: TransposeParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let perm = Perm::new([p.perm_n, p.perm_h, p.perm_w, p.perm_c]);
        d.check(
            perm.is_some(),
            why!("TRANSPOSE's perm is not a permutation"),
        );
        let perm = perm.unwrap_or(Perm([0, 1, 2, 3]));
        d.check(
            perm.apply(input.shape) == output.shape,
            why!("TRANSPOSE's output shape is not the permuted input's"),
        );
        Transpose {
            perm,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        transpose_i8(self.perm, v.inputs[0], v.output)
    }
}

/// The int8 kernel: output rows gathered from the input at precomputed strides.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn transpose_i8(perm: Perm, input: Tensor<i8>, output: TensorMut<i8>) -> Result<(), Error> {
    super::built(OpCode::Transpose)?;
    let i = input.shape;
    i.check_len(input.data.len())?;
    let o = perm.apply(i);
    if o != output.shape {
        return Err(Error::InvalidParameter {
            what: why!("TRANSPOSE's output shape is not the permuted input's"),
        });
    }
    o.check_len(output.data.len())?;
    if output.data.is_empty() {
        return Ok(());
    }
    // Input strides of each output position (the shapes fit usize: checked above).
    let strides = [i.h * i.w * i.c, i.w * i.c, i.c, 1];
    let [s0, s1, s2, s3] = perm.0.map(|p| strides[p]);
    let line = o.w * o.c;
    for (ab, out) in output.data.chunks_exact_mut(line).enumerate() {
        let base = (ab / o.h) * s0 + (ab % o.h) * s1;
        if s3 == 1 {
            // Channels contiguous in the input too: each pixel's channels in one copy.
            for (x, row) in out.chunks_exact_mut(o.c).enumerate() {
                let src = input
                    .data
                    .get(base + x * s2..)
                    .ok_or(Error::ShapeOverflow)?;
                super::bytes::copy(row, src.get(..o.c).ok_or(Error::ShapeOverflow)?);
            }
            continue;
        }
        // Otherwise channel by channel along the width (an NCHW input made NHWC: each
        // channel's row of the input), rather than a few strided elements per pixel.
        for k in 0..o.c {
            let first = base + k * s3;
            let last = first + (o.w - 1) * s2;
            let src = input.data.get(first..=last).ok_or(Error::ShapeOverflow)?;
            let to = out.get_mut(k..).ok_or(Error::ShapeOverflow)?;
            match s2 {
                1 => strided_store(to, o.c, src.iter()),
                _ => strided_store(to, o.c, src.iter().step_by(s2)),
            }
        }
    }
    Ok(())
}

/// Writes `values` to every `step`-th byte of `out` from its first, as far as both go.
fn strided_store<'x>(out: &mut [i8], step: usize, values: impl Iterator<Item = &'x i8>) {
    let mut at = 0;
    for &x in values {
        match out.get_mut(at) {
            Some(y) => *y = x,
            None => return,
        }
        at += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permutation_moves_each_element_to_its_permuted_place() {
        let i = Shape4::new(2, 3, 4, 5);
        let data: Vec<i8> = (0..120).map(|k| k as i8).collect();
        let mut perms = 0;
        for p in 0..256 {
            let raw = [p & 3, (p >> 2) & 3, (p >> 4) & 3, (p >> 6) & 3];
            let Some(perm) = Perm::new(raw) else { continue };
            perms += 1;
            let o = perm.apply(i);
            let mut out = vec![0i8; 120];
            let input = Tensor {
                data: &data,
                shape: i,
            };
            transpose_i8(
                perm,
                input,
                TensorMut {
                    data: &mut out,
                    shape: o,
                },
            )
            .unwrap();
            let id = [i.n, i.h, i.w, i.c];
            for (k, &y) in out.iter().enumerate() {
                let oi = [
                    k / (o.h * o.w * o.c),
                    k / (o.w * o.c) % o.h,
                    k / o.c % o.w,
                    k % o.c,
                ];
                let mut ii = [0; 4];
                for q in 0..4 {
                    ii[perm.0[q]] = oi[q];
                }
                let src = ((ii[0] * id[1] + ii[1]) * id[2] + ii[2]) * id[3] + ii[3];
                assert_eq!(y, data[src], "perm {:?}", perm.0);
            }
        }
        assert_eq!(perms, 24);
        assert!(Perm::new([0, 1, 1, 3]).is_none());
        assert!(Perm::new([0, 1, 2, 4]).is_none());
        assert!(Perm::new([0, 1, 2, -1]).is_none());
    }
}
