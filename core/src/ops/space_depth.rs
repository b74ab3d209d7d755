//! DEPTH_TO_SPACE and SPACE_TO_DEPTH: blocks of `block x block` pixels traded for channels,
//! as TFLite's reference kernels order them (channel `(dy * block + dx) * depth + k` of the
//! deep side is channel `k` of pixel `(dy, dx)` of the block). Pure copies of int8 codes, whose
//! input and output share their quantization (the lowering checks it).

use super::bytes::copy;
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::resize::same_quantization;
use super::{Shape4, Tensor, TensorMut};
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::{Error, Why};

record_params! {
    /// DEPTH_TO_SPACE's and SPACE_TO_DEPTH's record parameters.
    pub struct SpaceDepthParams {
        /// Side of a block of pixels.
        pub block: usize,
    }
}

/// DEPTH_TO_SPACE or SPACE_TO_DEPTH, decoded.
#[derive(Debug, Clone, Copy)]
pub struct SpaceDepth {
    /// Side of a block of pixels.
    pub block: usize,
    /// DEPTH_TO_SPACE (else SPACE_TO_DEPTH).
    pub to_space: bool,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

/// The shape `block` makes of `input`: DEPTH_TO_SPACE (`to_space`) multiplies height and width
/// by it and divides the channels by its square, SPACE_TO_DEPTH the reverse.
pub fn output_shape(to_space: bool, block: usize, input: Shape4) -> Result<Shape4, Why> {
    let i = input;
    let scaled = || {
        let area = block.checked_mul(block).filter(|&a| a > 0)?;
        match to_space {
            true if i.c % area == 0 => {
                let (h, w) = (i.h.checked_mul(block)?, i.w.checked_mul(block)?);
                Some(Shape4::new(i.n, h, w, i.c / area))
            }
            false if i.h % block == 0 && i.w % block == 0 => {
                let c = i.c.checked_mul(area)?;
                Some(Shape4::new(i.n, i.h / block, i.w / block, c))
            }
            _ => None,
        }
    };
    scaled().ok_or(match to_space {
        true => why!("DEPTH_TO_SPACE needs channels divisible by block_size squared"),
        false => why!("SPACE_TO_DEPTH needs height and width divisible by block_size"),
    })
}

impl<'a> Operator<'a> for SpaceDepth {
    type Params = SpaceDepthParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let t = cx.tensor(input)?;
        let to_space = cx.opcode() == OpCode::DepthToSpace;
        let block = cx.options().block_size;
        if t.dims.len() != 4 || block == 0 {
            return Err(LowerError::Unsupported {
                what: "DEPTH_TO_SPACE and SPACE_TO_DEPTH take a 4-D input and a positive \
                       block_size",
            });
        }
        let shape =
            output_shape(to_space, block, t.shape).map_err(|why| LowerError::Unsupported {
                what: why.text().unwrap_or("block_size does not fit the input"),
            })?;
        cx.expect_output(shape)?;
        same_quantization(cx, input)?;
        cx.params(&SpaceDepthParams { block })
    }

    fn decode(d: &Decoder<'_, 'a>, params: SpaceDepthParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let to_space = d.opcode() == OpCode::DepthToSpace;
        match output_shape(to_space, params.block, input.shape) {
            Ok(shape) => d.check(
                shape == output.shape,
                why!("output shape does not follow from the input and block_size"),
            ),
            Err(why) => d.reject(why),
        }
        SpaceDepth {
            block: params.block,
            to_space,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        space_depth_i8(self.to_space, self.block, v.inputs[0], v.output)
    }
}

/// The int8 kernel: copies runs of channels between the shallow side's pixels and the deep
/// side's channel blocks.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn space_depth_i8(
    to_space: bool,
    block: usize,
    input: Tensor<i8>,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    let op = match to_space {
        true => OpCode::DepthToSpace,
        false => OpCode::SpaceToDepth,
    };
    super::built(op)?;
    input.shape.check_len(input.data.len())?;
    output.shape.check_len(output.data.len())?;
    let shape = output_shape(to_space, block, input.shape)
        .map_err(|what| Error::InvalidParameter { what })?;
    if shape != output.shape {
        return Err(Error::InvalidParameter {
            what: why!("output shape does not follow from the input and block_size"),
        });
    }
    // The deep side: pixels of `block * block * run` channels; the shallow side: `block` times
    // as many rows and columns of `run` channels.
    let (deep, run) = match to_space {
        true => (input.shape, output.shape.c),
        false => (output.shape, input.shape.c),
    };
    if run == 0 || block == 0 || deep.w == 0 {
        return Ok(());
    }
    let len = block * run;
    match to_space {
        true => to_shallow(input.data, output.data, deep.w, block, len),
        false => to_deep(input.data, output.data, deep.w, block, len),
    }
    Ok(())
}

/// DEPTH_TO_SPACE's moves: each deep row of `w` pixels (`block` pieces of `len` bytes each)
/// spreads over `block` shallow rows, shallow row `dy` taking piece `dy` of every pixel in turn.
fn to_shallow(deep: &[i8], shallow: &mut [i8], w: usize, block: usize, len: usize) {
    let rows = deep.chunks_exact(w * block * len);
    for (d, s) in rows.zip(shallow.chunks_exact_mut(w * block * len)) {
        for (dy, s_row) in s.chunks_exact_mut(w * len).enumerate() {
            for (piece, pixel) in s_row.chunks_exact_mut(len).zip(d.chunks_exact(block * len)) {
                copy(piece, pixel.get(dy * len..).unwrap_or_default());
            }
        }
    }
}

/// SPACE_TO_DEPTH's moves, the reverse of [`to_shallow`]'s.
fn to_deep(shallow: &[i8], deep: &mut [i8], w: usize, block: usize, len: usize) {
    let rows = deep.chunks_exact_mut(w * block * len);
    for (d, s) in rows.zip(shallow.chunks_exact(w * block * len)) {
        for (dy, s_row) in s.chunks_exact(w * len).enumerate() {
            for (piece, pixel) in s_row.chunks_exact(len).zip(d.chunks_exact_mut(block * len)) {
                copy(pixel.get_mut(dy * len..).unwrap_or_default(), piece);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use std::vec::Vec;

    /// TFLite's `DepthToSpace`, element by element.
    fn depth_to_space_reference(x: &[i8], is: Shape4, block: usize) -> Vec<i8> {
        let oc = is.c / (block * block);
        let mut out = Vec::new();
        for b in 0..is.n {
            for oy in 0..is.h * block {
                for ox in 0..is.w * block {
                    for c in 0..oc {
                        let ic = c + ((oy % block) * block + ox % block) * oc;
                        out.push(x[((b * is.h + oy / block) * is.w + ox / block) * is.c + ic]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn round_trips_and_matches_tflite_order() {
        let mut rng = Rng(0xd25d_0001);
        for _ in 0..100 {
            let block = rng.size(1, 3);
            let deep = s(
                rng.size(1, 2),
                rng.size(1, 4),
                rng.size(1, 4),
                block * block * rng.size(1, 3),
            );
            let x = rng.i8s(len(deep));
            let shallow = output_shape(true, block, deep).unwrap();
            let mut wide = vec![0i8; len(shallow)];
            space_depth_i8(true, block, t(&x, deep), tm(&mut wide, shallow)).unwrap();
            assert_eq!(wide, depth_to_space_reference(&x, deep, block));
            assert_eq!(output_shape(false, block, shallow), Ok(deep));
            let mut back = vec![0i8; len(deep)];
            space_depth_i8(false, block, t(&wide, shallow), tm(&mut back, deep)).unwrap();
            assert_eq!(back, x);
        }
    }

    #[test]
    fn refuses_shapes_the_block_does_not_divide() {
        assert!(output_shape(true, 2, s(1, 2, 2, 6)).is_err());
        assert!(output_shape(false, 2, s(1, 3, 2, 6)).is_err());
        assert!(output_shape(true, 0, s(1, 2, 2, 4)).is_err());
        assert!(output_shape(true, usize::MAX, s(1, 2, 2, 4)).is_err());
        let empty = s(1, 2, 2, 0);
        let r = space_depth_i8(true, 2, t(&[], empty), tm(&mut [], s(1, 4, 4, 0)));
        assert_eq!(r, Ok(()));
        let mut out = [0i8; 8];
        let r = space_depth_i8(
            true,
            2,
            t(&[0; 8], s(1, 1, 2, 4)),
            tm(&mut out, s(1, 4, 2, 1)),
        );
        assert!(r.is_err());
    }
}
