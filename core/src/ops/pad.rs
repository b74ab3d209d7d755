//! PAD and PADV2 with a constant: the input copied into a larger output whose border holds one
//! value. TFLite-Micro's int8 kernel moves raw codes (it never requantizes): PAD's border is the
//! output's zero point, PADV2's the raw code of its constant third input. The amounts before
//! each axis are the record's; those after follow from the shapes.

use super::bytes::{copy, fill};
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::{Shape4, Tensor, TensorMut};
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::Error;

record_params! {
    /// PAD's record parameters: the padding before each NHWC axis and the border's code.
    pub struct PadParams {
        /// Batches before the input.
        pub before_n: i32,
        /// Rows before the input.
        pub before_h: i32,
        /// Columns before the input.
        pub before_w: i32,
        /// Channels before the input.
        pub before_c: i32,
        /// The border's raw int8 code.
        pub value: i32,
    }
}

/// Where the input sits in the output: the padding before it along each NHWC axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadGeometry {
    /// Padding before the input, NHWC.
    pub before: Shape4,
    /// The border's code.
    pub value: i8,
}

impl PadGeometry {
    /// Whether an `input` placed at `before` lies inside `output`.
    fn fits(&self, input: Shape4, output: Shape4) -> bool {
        let inside =
            |before: usize, i: usize, o: usize| before.checked_add(i).is_some_and(|e| e <= o);
        inside(self.before.n, input.n, output.n)
            && inside(self.before.h, input.h, output.h)
            && inside(self.before.w, input.w, output.w)
            && inside(self.before.c, input.c, output.c)
    }
}

/// PAD or PADV2, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Pad {
    /// Placement and border.
    pub geometry: PadGeometry,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for Pad {
    type Params = PadParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 1;
    const TFLITE_ALIASES: &'static [&'static str] = &["PADV2"];

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let i = cx.tensor(input)?;
        let paddings = cx.tensor(cx.input(1)?)?;
        let unsupported = |what| Err(LowerError::Unsupported { what });
        let pads = match paddings.i32_data {
            Some(p) if paddings.constant && p.len() == 2 * i.dims.len() => p,
            _ => return unsupported("PAD needs constant int32 paddings, a pair per input axis"),
        };
        if pads.iter().any(|&p| p < 0) {
            return unsupported("PAD with negative paddings is not supported");
        }
        // Axis k of a rank-r tensor is NHWC position k + 4 - r.
        let mut before = [0i32; 4];
        let mut after = [0usize; 4];
        let skip = 4 - i.dims.len().min(4);
        for (k, pair) in pads.chunks_exact(2).enumerate() {
            before[skip + k] = pair[0];
            after[skip + k] = pair[1] as usize;
        }
        let s = i.shape;
        let dims = [s.n, s.h, s.w, s.c];
        let mut expected = [0usize; 4];
        for k in 0..4 {
            expected[k] = dims[k]
                .checked_add(before[k] as usize)
                .and_then(|d| d.checked_add(after[k]))
                .ok_or(LowerError::Unsupported {
                    what: "PAD output too large",
                })?;
        }
        let [n, h, w, c] = expected;
        cx.expect_output(Shape4::new(n, h, w, c))?;
        let value = match cx.optional(2)? {
            None => {
                let (_, zp) = cx.per_tensor(cx.output())?;
                zp
            }
            Some(id) => {
                let v = cx.typed(id, DType::I8, "constant value")?;
                match v.i8_data {
                    Some(&[value]) if v.constant => {
                        if cx.per_tensor(id)? != cx.per_tensor(cx.output())? {
                            return Err(LowerError::Quantization {
                                tensor: id,
                                what: "PADV2's value must be quantized like the output",
                            });
                        }
                        i32::from(value)
                    }
                    _ => return unsupported("PADV2 needs a constant one-element value"),
                }
            }
        };
        cx.params(&PadParams {
            before_n: before[0],
            before_h: before[1],
            before_w: before[2],
            before_c: before[3],
            value,
        })
    }

    fn decode(d: &Decoder<'_, 'a>, p: PadParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let size = |v: i32| usize::try_from(v).unwrap_or(usize::MAX);
        let geometry = PadGeometry {
            before: Shape4::new(
                size(p.before_n),
                size(p.before_h),
                size(p.before_w),
                size(p.before_c),
            ),
            value: p.value.clamp(-128, 127) as i8,
        };
        d.check(
            (-128..=127).contains(&p.value),
            why!("PAD value out of the int8 range"),
        );
        d.check(
            geometry.fits(input.shape, output.shape),
            why!("PAD's input does not fit its output at the padding"),
        );
        Pad {
            geometry,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        pad_i8(&self.geometry, v.inputs[0], v.output)
    }
}

/// The int8 kernel: whole rows copied, the border filled.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn pad_i8(g: &PadGeometry, input: Tensor<i8>, output: TensorMut<i8>) -> Result<(), Error> {
    super::built(OpCode::Pad)?;
    let (i, o) = (input.shape, output.shape);
    i.check_len(input.data.len())?;
    o.check_len(output.data.len())?;
    if !g.fits(i, o) {
        return Err(Error::InvalidParameter {
            what: why!("PAD's input does not fit its output at the padding"),
        });
    }
    let v = g.value;
    // Output image rows (one h of one batch) and input image rows.
    let (out_row, in_row) = (o.w * o.c, i.w * i.c);
    if out_row == 0 {
        return Ok(());
    }
    if in_row == 0 || i.h == 0 || i.n == 0 {
        fill(output.data, v);
        return Ok(());
    }
    let (b, pixel_c) = (g.before, o.c);
    let mut src = input.data.chunks_exact(in_row);
    for (k, row) in output.data.chunks_exact_mut(out_row).enumerate() {
        let (n, h) = (k / o.h, k % o.h);
        let inside = (b.n..b.n + i.n).contains(&n) && (b.h..b.h + i.h).contains(&h);
        let Some(from) = inside.then(|| src.next()).flatten() else {
            fill(row, v);
            continue;
        };
        let (left, rest) = row.split_at_mut(b.w * pixel_c);
        let (mid, right) = rest.split_at_mut(i.w * pixel_c);
        fill(left, v);
        fill(right, v);
        if pixel_c == i.c {
            copy(mid, from);
            continue;
        }
        for (px, x) in mid.chunks_exact_mut(pixel_c).zip(from.chunks_exact(i.c)) {
            let (l, rest) = px.split_at_mut(b.c);
            let (m, r) = rest.split_at_mut(i.c);
            l.fill(v);
            m.copy_from_slice(x);
            r.fill(v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element by element: the input where it lands, the value elsewhere.
    fn naive(g: &PadGeometry, i: Shape4, data: &[i8], o: Shape4) -> Vec<i8> {
        let mut out = vec![g.value; o.elements().unwrap()];
        for n in 0..i.n {
            for h in 0..i.h {
                for w in 0..i.w {
                    for c in 0..i.c {
                        let src = ((n * i.h + h) * i.w + w) * i.c + c;
                        let (on, oh, ow, oc) = (
                            n + g.before.n,
                            h + g.before.h,
                            w + g.before.w,
                            c + g.before.c,
                        );
                        out[((on * o.h + oh) * o.w + ow) * o.c + oc] = data[src];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn pads_every_axis_like_the_elementwise_definition() {
        let mut rng = crate::test_support::Rng(0x9AD);
        for case in 0..300 {
            let mut dim = |hi: u64| (rng.next() % hi) as usize + 1;
            let i = Shape4::new(dim(2), dim(4), dim(4), dim(5));
            let before = Shape4::new(dim(2) - 1, dim(3) - 1, dim(3) - 1, dim(3) - 1);
            let after = Shape4::new(dim(2) - 1, dim(3) - 1, dim(3) - 1, dim(3) - 1);
            let o = Shape4::new(
                i.n + before.n + after.n,
                i.h + before.h + after.h,
                i.w + before.w + after.w,
                i.c + before.c + after.c,
            );
            let g = PadGeometry {
                before,
                value: (case as i8).wrapping_mul(7),
            };
            let data: Vec<i8> = (0..i.elements().unwrap()).map(|k| k as i8).collect();
            let mut out = vec![0i8; o.elements().unwrap()];
            let input = Tensor {
                data: &data,
                shape: i,
            };
            pad_i8(
                &g,
                input,
                TensorMut {
                    data: &mut out,
                    shape: o,
                },
            )
            .unwrap();
            assert_eq!(
                out,
                naive(&g, i, &data, o),
                "case {case}: {i:?} {g:?} {o:?}"
            );
        }
    }

    #[test]
    fn refuses_an_input_that_does_not_fit() {
        let g = PadGeometry {
            before: Shape4::new(0, 2, 0, 0),
            value: 0,
        };
        let i = Shape4::new(1, 2, 1, 1);
        let o = Shape4::new(1, 3, 1, 1);
        let mut out = [0i8; 3];
        let input = Tensor {
            data: &[1, 2],
            shape: i,
        };
        assert!(pad_i8(
            &g,
            input,
            TensorMut {
                data: &mut out,
                shape: o
            }
        )
        .is_err());
        let short = Tensor {
            data: &[1],
            shape: i,
        };
        assert!(pad_i8(
            &g,
            short,
            TensorMut {
                data: &mut out,
                shape: o
            }
        )
        .is_err());
    }
}
