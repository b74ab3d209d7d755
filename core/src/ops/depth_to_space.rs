//! DEPTH_TO_SPACE of an int8 NHWC tensor: each pixel's channels, `block * block` groups of
//! `c_out`, become a `block x block` patch of output pixels, group `by * block + bx` at row
//! offset `by` and column offset `bx` (TensorFlow's DCR order). TFLite-Micro copies raw codes;
//! here each input pixel's row of `block` groups is one contiguous copy.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::{Shape4, Tensor, TensorMut};
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::Error;

record_params! {
    /// DEPTH_TO_SPACE's record parameters.
    pub struct DepthToSpaceParams {
        /// Side of the square patch each pixel becomes.
        pub block: usize,
    }
}

/// The output shape of an input with `block`, or `None` if its channels do not split into
/// `block * block` groups or a size overflows.
pub fn output_shape(input: Shape4, block: usize) -> Option<Shape4> {
    let groups = block.checked_mul(block).filter(|&g| g > 0)?;
    (input.c % groups == 0).then_some(())?;
    Some(Shape4::new(
        input.n,
        input.h.checked_mul(block)?,
        input.w.checked_mul(block)?,
        input.c / groups,
    ))
}

/// DEPTH_TO_SPACE, decoded.
#[derive(Debug, Clone, Copy)]
pub struct DepthToSpace {
    /// Side of each pixel's patch.
    pub block: usize,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for DepthToSpace {
    type Params = DepthToSpaceParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let i = cx.tensor(input)?;
        let block = cx.options().block_size;
        if i.dims.len() != 4 {
            return Err(LowerError::Unsupported {
                what: "DEPTH_TO_SPACE needs a 4-D input",
            });
        }
        let shape = output_shape(i.shape, block).ok_or(LowerError::Unsupported {
            what: "DEPTH_TO_SPACE's channels must split into block_size^2 groups",
        })?;
        cx.expect_output(shape)?;
        cx.params(&DepthToSpaceParams { block })
    }

    fn decode(d: &Decoder<'_, 'a>, p: DepthToSpaceParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        d.check(
            output_shape(input.shape, p.block) == Some(output.shape),
            why!("DEPTH_TO_SPACE's output shape does not follow from the input and block"),
        );
        DepthToSpace {
            block: p.block,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        depth_to_space_i8(self.block, v.inputs[0], v.output)
    }
}

/// The int8 kernel: one contiguous copy of `block * c_out` codes per input pixel and patch row.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn depth_to_space_i8(
    block: usize,
    input: Tensor<i8>,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    super::built(OpCode::DepthToSpace)?;
    let i = input.shape;
    i.check_len(input.data.len())?;
    if output_shape(i, block) != Some(output.shape) {
        return Err(Error::InvalidParameter {
            what: why!("DEPTH_TO_SPACE's output shape does not follow from the input and block"),
        });
    }
    output.shape.check_len(output.data.len())?;
    // A patch row of one input pixel: `block` output pixels, contiguous in input and output.
    let run = block * output.shape.c;
    if run == 0 || i.w == 0 {
        return Ok(());
    }
    let out_row = i.w * run;
    let mut out_rows = output.data.chunks_exact_mut(out_row);
    for image_row in input.data.chunks_exact(i.w * i.c) {
        for by in 0..block {
            let Some(dst) = out_rows.next() else {
                return Err(Error::ShapeOverflow);
            };
            for (to, pixel) in dst.chunks_exact_mut(run).zip(image_row.chunks_exact(i.c)) {
                // `(by + 1) * run <= i.c`: the channels are `block` patch rows.
                to.copy_from_slice(&pixel[by * run..(by + 1) * run]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_tensorflows_index_formula() {
        for (i, block) in [
            (Shape4::new(1, 2, 3, 8), 2),
            (Shape4::new(2, 3, 2, 9), 3),
            (Shape4::new(1, 1, 1, 4), 2),
            (Shape4::new(1, 2, 2, 5), 1),
        ] {
            let o = output_shape(i, block).unwrap();
            let data: Vec<i8> = (0..i.elements().unwrap()).map(|k| k as i8).collect();
            let mut out = vec![0i8; o.elements().unwrap()];
            let input = Tensor {
                data: &data,
                shape: i,
            };
            depth_to_space_i8(
                block,
                input,
                TensorMut {
                    data: &mut out,
                    shape: o,
                },
            )
            .unwrap();
            for b in 0..o.n {
                for y in 0..o.h {
                    for x in 0..o.w {
                        for c in 0..o.c {
                            let (iy, ix) = (y / block, x / block);
                            let ic = ((y % block) * block + x % block) * o.c + c;
                            let src = ((b * i.h + iy) * i.w + ix) * i.c + ic;
                            let dst = ((b * o.h + y) * o.w + x) * o.c + c;
                            assert_eq!(out[dst], data[src], "{i:?} block {block}");
                        }
                    }
                }
            }
        }
        assert_eq!(output_shape(Shape4::new(1, 2, 2, 6), 2), None);
        assert_eq!(output_shape(Shape4::new(1, 2, 2, 6), 0), None);
    }
}
