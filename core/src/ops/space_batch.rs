//! SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND over NHWC: blocks of `block_h x block_w` pixels
//! moved between the spatial axes and the batch, whole channel runs at a time. Converters write
//! them around a dilated convolution (which the host's `dilated_conv` pass folds where it can);
//! these run the rest, as TFLite-Micro's reference kernels do: SPACE_TO_BATCH_ND fills its
//! padding with bytes of the record's pad value (the pinned TFLite-Micro writes 0, not the zero
//! point), BATCH_TO_SPACE_ND drops the cropped pixels. Raw elements of any type move.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::Shape4;
use crate::format::{OpCode, Storage};
use crate::model::{Decoder, Scratch};
use crate::Error;

record_params! {
    /// SPACE_TO_BATCH_ND's and BATCH_TO_SPACE_ND's record parameters.
    pub struct SpaceBatchParams {
        /// Block height.
        pub block_h: usize,
        /// Block width.
        pub block_w: usize,
        /// Padding (SPACE_TO_BATCH_ND) or crop (BATCH_TO_SPACE_ND) at the top.
        pub top: i32,
        /// The same at the left.
        pub left: i32,
        /// The byte SPACE_TO_BATCH_ND fills its padding with (0 for BATCH_TO_SPACE_ND).
        pub pad: i32,
    }
}

/// TFLite-Micro pads SPACE_TO_BATCH_ND with this byte (its version the goldens pin).
pub const PAD_BYTE: i32 = 0;

/// SPACE_TO_BATCH_ND or BATCH_TO_SPACE_ND, decoded.
#[derive(Debug, Clone, Copy)]
pub struct SpaceBatch {
    /// Block and offsets.
    pub params: SpaceBatchParams,
    /// Whether the batch grows (SPACE_TO_BATCH_ND).
    pub to_batch: bool,
    /// Input shape.
    pub input_shape: Shape4,
    /// Output shape.
    pub output_shape: Shape4,
    /// Bytes per element.
    pub element: usize,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for SpaceBatch {
    type Params = SpaceBatchParams;
    type In = u8;
    type Out = u8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        let t = cx.tensor(input)?;
        cx.typed(cx.output(), t.dtype, "output")?;
        let unsupported = |what| LowerError::Unsupported { what };
        let block = cx.tensor(cx.input(1)?)?.i32_data;
        let edges = cx.tensor(cx.input(2)?)?.i32_data;
        let (Some(&[bh, bw]), Some(&[top, bottom, left, right])) = (block, edges) else {
            return Err(unsupported(
                "the block shape and paddings/crops must be int32 constants for two axes",
            ));
        };
        if t.dims.len() != 4
            || bh < 1
            || bw < 1
            || [top, bottom, left, right].iter().any(|&v| v < 0)
        {
            return Err(unsupported(
                "space/batch moves need a 4-D input, positive blocks, non-negative edges",
            ));
        }
        let (bh, bw) = (bh as usize, bw as usize);
        let s = t.shape;
        let to_batch = cx.opcode() == OpCode::SpaceToBatchNd;
        // Every figure comes from the file: sums and products are checked, as an overflow
        // is a shape that cannot be.
        let edge = |a: i32, b: i32| usize::try_from(i64::from(a) + i64::from(b)).ok();
        let (Some(vertical), Some(horizontal)) = (edge(top, bottom), edge(left, right)) else {
            return Err(unsupported("the paddings or crops are too large"));
        };
        let blocks = bh.checked_mul(bw);
        let expected = match to_batch {
            true => {
                let h = s.h.checked_add(vertical);
                let w = s.w.checked_add(horizontal);
                let n = blocks.and_then(|b| s.n.checked_mul(b));
                match (h, w, n) {
                    (Some(h), Some(w), Some(n)) if h % bh == 0 && w % bw == 0 => {
                        Shape4::new(n, h / bh, w / bw, s.c)
                    }
                    _ => {
                        return Err(unsupported(
                            "the padded input is not a whole number of blocks",
                        ))
                    }
                }
            }
            false => {
                let h = s.h.checked_mul(bh).and_then(|h| h.checked_sub(vertical));
                let w = s.w.checked_mul(bw).and_then(|w| w.checked_sub(horizontal));
                match (h, w, blocks) {
                    (Some(h), Some(w), Some(b)) if h > 0 && w > 0 && s.n % b == 0 => {
                        Shape4::new(s.n / b, h, w, s.c)
                    }
                    _ => return Err(unsupported("the crops or the batch do not fit the blocks")),
                }
            }
        };
        cx.expect_output(expected)?;
        cx.params(&SpaceBatchParams {
            block_h: bh,
            block_w: bw,
            top,
            left,
            pad: if to_batch { PAD_BYTE } else { 0 },
        })
    }

    fn decode(d: &Decoder<'_, 'a>, params: SpaceBatchParams) -> Self {
        let input = d.any_tensor(0);
        let output = d.any_tensor(usize::MAX);
        d.check(
            input.record.storage == Storage::Arena && output.record.storage == Storage::Arena,
            why!("a space/batch move works on activations"),
        );
        d.check(
            input.dtype() == output.dtype(),
            why!("a space/batch move's input and output types differ"),
        );
        d.check(
            (0..=255).contains(&params.pad),
            why!("the pad byte is out of range"),
        );
        let to_batch = d.opcode() == OpCode::SpaceToBatchNd;
        let (space, batch) = match to_batch {
            true => (input.shape, output.shape),
            false => (output.shape, input.shape),
        };
        d.check(
            fits(&params, space, batch),
            why!("the shapes do not follow from the blocks and the padding or crops"),
        );
        SpaceBatch {
            params,
            to_batch,
            input_shape: input.shape,
            output_shape: output.shape,
            element: input.dtype().size(),
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, u8, u8>) -> Result<(), Error> {
        space_batch(self, v.inputs[0].data, v.output.data)
    }
}

/// Whether the batched shape holds every block of the spatial one: the same channels, a batch
/// `block_h * block_w` times larger, and blocks that cover the spatial image once padded (to
/// batch) or once cropped (to space) with the edges inside.
fn fits(p: &SpaceBatchParams, space: Shape4, batch: Shape4) -> bool {
    let (top, left) = (p.top as usize, p.left as usize);
    let block = p.block_h.checked_mul(p.block_w);
    let rows = batch.h.checked_mul(p.block_h);
    let cols = batch.w.checked_mul(p.block_w);
    let (Some(block), Some(rows), Some(cols)) = (block, rows, cols) else {
        return false;
    };
    // The image (to batch: padded before; to space: cropped before) lies inside the blocks.
    let edges_fit = space.h.checked_add(top).is_some_and(|h| h <= rows)
        && space.w.checked_add(left).is_some_and(|w| w <= cols);
    space.c == batch.c && space.n.checked_mul(block) == Some(batch.n) && edges_fit
}

/// The move, one channel run per output pixel.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn space_batch(layer: &SpaceBatch, input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    super::built(OpCode::SpaceToBatchNd)?;
    let (i, o) = (layer.input_shape, layer.output_shape);
    let run = o.c.checked_mul(layer.element).ok_or(Error::ShapeOverflow)?;
    let in_len = i.elements().and_then(|n| n.checked_mul(layer.element));
    let out_len = o.elements().and_then(|n| n.checked_mul(layer.element));
    if in_len != Some(input.len()) || out_len != Some(output.len()) || run == 0 {
        return Err(Error::LengthMismatch {
            expected: out_len.unwrap_or(0),
            actual: output.len(),
        });
    }
    let p = &layer.params;
    let (bh, bw) = (p.block_h, p.block_w);
    let (top, left) = (p.top as usize, p.left as usize);
    let outside = || Error::InvalidParameter {
        what: why!("a space/batch move reads outside its input"),
    };
    let mut pixels = output.chunks_exact_mut(run);
    for ob in 0..o.n {
        for oh in 0..o.h {
            for ow in 0..o.w {
                let out = pixels.next().ok_or_else(outside)?;
                // The input pixel this output pixel comes from; `None`: padding.
                let from = match layer.to_batch {
                    true => {
                        let (b, shift) = (ob % i.n, ob / i.n);
                        let y = (oh * bh + shift / bw).checked_sub(top);
                        let x = (ow * bw + shift % bw).checked_sub(left);
                        match (y, x) {
                            (Some(y), Some(x)) if y < i.h && x < i.w => Some((b, y, x)),
                            _ => None,
                        }
                    }
                    false => {
                        let (y, x) = (oh + top, ow + left);
                        let shift = (y % bh) * bw + x % bw;
                        Some((shift * o.n + ob, y / bh, x / bw))
                    }
                };
                match from {
                    Some((b, y, x)) => {
                        let at = ((b * i.h + y) * i.w + x) * run;
                        super::bytes::copy(out, input.get(at..at + run).ok_or_else(outside)?);
                    }
                    None => super::bytes::fill(out, p.pad as u8),
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
        to_batch: bool,
        i: Shape4,
        o: Shape4,
        block: (usize, usize),
        tl: (i32, i32),
    ) -> SpaceBatch {
        SpaceBatch {
            params: SpaceBatchParams {
                block_h: block.0,
                block_w: block.1,
                top: tl.0,
                left: tl.1,
                pad: 0,
            },
            to_batch,
            input_shape: i,
            output_shape: o,
            element: 1,
            input: 0,
            output: 1,
        }
    }

    /// A 3x3 image padded to 4x4 (one row and column before), split into 2x2 blocks, and back.
    #[test]
    fn space_to_batch_and_back_round_trip() {
        let space = Shape4::new(1, 3, 3, 1);
        let batch = Shape4::new(4, 2, 2, 1);
        let image: Vec<u8> = (1..=9).collect();
        let mut batched = vec![0xAAu8; 16];
        let to = layer(true, space, batch, (2, 2), (1, 1));
        assert!(fits(&to.params, space, batch));
        space_batch(&to, &image, &mut batched).unwrap();
        // Block offset (0, 0) holds the padded pixels at even rows and columns.
        assert_eq!(&batched[..4], &[0, 0, 0, 5]);
        assert_eq!(&batched[12..], &[1, 3, 7, 9]);
        let back = layer(false, batch, space, (2, 2), (1, 1));
        assert!(fits(&back.params, space, batch));
        let mut image2 = vec![0u8; 9];
        space_batch(&back, &batched, &mut image2).unwrap();
        assert_eq!(image2, image);
        assert!(space_batch(&back, &batched[..15], &mut image2).is_err());
        assert!(!fits(&to.params, space, Shape4::new(2, 2, 2, 1)));
    }
}
