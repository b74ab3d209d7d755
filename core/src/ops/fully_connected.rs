//! FULLY_CONNECTED: `output[b] = weights * input[b] + bias` for each row `b` of the input.
//!
//! The int8 kernel reproduces TFLite-Micro's reference `FullyConnected` (per-tensor) and
//! `FullyConnectedPerChannel` bit for bit.

use super::conv2d::same;
use super::fc_fast;
use super::lower::{LowerError, Lowering};
use super::operator::{Io, KernelPaths, Operator, Views, Weighted};
use super::output_stage::{check_clamp, check_int8, clamp_f32, requantize};
use super::record::record_params;
use super::KernelPath;
use super::{Int8Stage, Requant, Shape4, Tensor, TensorMut};
use crate::format::DType;
use crate::format::OpCode;
use crate::model::{Decoder, Model};
use crate::quant::dot_i8;
use crate::Error;

/// Int8 fully connected layer, bit-exact with TFLite-Micro's reference kernels.
///
/// `weights` is `[out_features, 1, 1, in_features]` with zero point 0. The input is read as
/// rows of `in_features` (any shape whose element count is a multiple of it); the output has
/// `c = out_features` and one pixel per input row. `requant` holds one multiplier (per-tensor,
/// TFLite's default) or one per output feature. `scratch` (word-aligned, [`scratch_bytes`]
/// long) holds the fast kernel's widened input; with less, the reference kernel runs.
pub fn fully_connected_i8(
    stage: &Int8Stage,
    input: Tensor<i8>,
    weights: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    check_fc(&input, &weights, &output, bias.map(<[i32]>::len))?;
    let what = why!("fully_connected requant length");
    check_int8(stage, requant, weights.shape.n, what)?;
    fully_connected_i8_decoded(stage, input, weights, bias, requant, output, scratch)
}

/// [`fully_connected_i8`] for a layer the model's decoder validated (the interpreter's
/// path): the buffer, shape and constant checks it already made are only debug-asserted
/// here, which keeps a second copy of them out of flash. No memory access rests on them:
/// every loop bounds its own reads and writes by the slices it is given.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub(crate) fn fully_connected_i8_decoded(
    stage: &Int8Stage,
    input: Tensor<i8>,
    weights: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    super::built(OpCode::FullyConnected)?;
    let checked = check_fc(&input, &weights, &output, bias.map(<[i32]>::len));
    debug_assert_eq!(checked, Ok(weights.shape.c));
    let what = why!("fully_connected requant length");
    debug_assert_eq!(check_int8(stage, requant, weights.shape.n, what), Ok(()));
    let (x, in_f, w, out_f) = (input.data, weights.shape.c, weights.data, weights.shape.n);
    let out = &mut *output.data;
    let fast = cfg!(feature = "kernel-fc-fast");
    if fast && fc_fast::fully_connected(stage, x, in_f, w, bias, requant, out_f, out, scratch) {
        return Ok(());
    }
    // Always built: the layers too small for the fast kernel's flash to pay (see
    // `fc_fast::FAST_MIN_MACS`), and those it does not take.
    compact(stage, (x, in_f), (w, out_f), bias, requant, out)
}

/// Every output, one multiply at a time as TFLite-Micro's reference kernel: for buffers and
/// shapes [`check_fc`] and [`check_int8`] accepted.
fn compact(
    stage: &Int8Stage,
    (input, in_f): (&[i8], usize),
    (weights, out_f): (&[i8], usize),
    bias: Option<&[i32]>,
    requant: Requant,
    output: &mut [i8],
) -> Result<(), Error> {
    if in_f == 0 || out_f == 0 {
        return Ok(());
    }
    for (x, y) in input.chunks_exact(in_f).zip(output.chunks_exact_mut(out_f)) {
        let per_feature = y.iter_mut().zip(weights.chunks_exact(in_f));
        for (oc, ((out, w), q)) in per_feature.zip(requant.iter().cycle()).enumerate() {
            let acc = dot_i8(x, stage.input_offset, w, 0)?;
            let b = bias.and_then(|b| b.get(oc)).copied().unwrap_or(0);
            *out = requantize(acc.wrapping_add(b), *q, stage);
        }
    }
    Ok(())
}

/// Scratch bytes [`fully_connected_i8`]'s fast kernel needs for weights `[out, 1, 1, in]`:
/// none for the usual layer (one multiplier, rows of whole words), else one widened slice.
pub fn scratch_bytes(
    stage: &Int8Stage,
    weights: Shape4,
    bias: Option<&[i32]>,
    requant: Requant,
) -> usize {
    fc_fast::scratch_bytes(stage, weights.c, bias, requant)
}

/// [`fully_connected_i8`] computed the way TFLite-Micro's reference kernels do, one multiply
/// at a time: the specification the fast path is tested against.
pub fn fully_connected_i8_reference(
    stage: &Int8Stage,
    input: Tensor<i8>,
    weights: Tensor<i8>,
    bias: Option<&[i32]>,
    requant: Requant,
    output: TensorMut<i8>,
) -> Result<(), Error> {
    let in_f = check_fc(&input, &weights, &output, bias.map(<[i32]>::len))?;
    check_int8(
        stage,
        requant,
        weights.shape.n,
        why!("fully_connected requant length"),
    )?;
    let (x, w, out_f) = (input.data, weights.data, weights.shape.n);
    compact(stage, (x, in_f), (w, out_f), bias, requant, output.data)
}

/// f32 fully connected layer, as TFLite's reference float kernel: products summed in order,
/// then the bias added, then the result clamped to `clamp = (min, max)`.
pub fn fully_connected_f32(
    clamp: (f32, f32),
    input: Tensor<f32>,
    weights: Tensor<f32>,
    bias: Option<&[f32]>,
    output: TensorMut<f32>,
) -> Result<(), Error> {
    let in_f = check_fc(&input, &weights, &output, bias.map(<[f32]>::len))?;
    check_clamp(clamp)?;
    if output.data.is_empty() {
        return Ok(());
    }
    let rows = input.data.chunks_exact(in_f);
    for (x, y) in rows.zip(output.data.chunks_exact_mut(weights.shape.n)) {
        for (oc, (out, w)) in y
            .iter_mut()
            .zip(weights.data.chunks_exact(in_f))
            .enumerate()
        {
            let acc = x.iter().zip(w).fold(0.0f32, |acc, (&x, &w)| acc + x * w);
            *out = clamp_f32(acc + bias.map_or(0.0, |b| b[oc]), clamp);
        }
    }
    Ok(())
}

/// Validates a fully connected layer's buffers and shapes; returns `in_features` (nonzero).
fn check_fc<T>(
    input: &Tensor<T>,
    weights: &Tensor<T>,
    output: &TensorMut<T>,
    bias_len: Option<usize>,
) -> Result<usize, Error> {
    input.shape.check_len(input.data.len())?;
    weights.shape.check_len(weights.data.len())?;
    output.shape.check_len(output.data.len())?;
    let (w, o) = (weights.shape, output.shape);
    same(why!("fully_connected weights height"), 1, w.h)?;
    same(why!("fully_connected weights width"), 1, w.w)?;
    let in_f = w.c;
    if in_f == 0 {
        return Err(Error::InvalidParameter {
            what: why!("fully_connected in_features is zero"),
        });
    }
    let what = why!("fully_connected input elements modulo in_features");
    same(what, 0, input.data.len() % in_f)?;
    same(why!("fully_connected output channels"), w.n, o.c)?;
    // check_len succeeded, so n * h * w cannot overflow.
    same(
        why!("fully_connected output rows"),
        input.data.len() / in_f,
        o.n * o.h * o.w,
    )?;
    if let Some(len) = bias_len {
        same(why!("fully_connected bias length"), w.n, len)?;
    }
    Ok(in_f)
}

record_params! {
    /// FULLY_CONNECTED's record parameters.
    pub struct FullyConnectedParams {
        /// Zero points and clamp.
        pub stage: Int8Stage,
    }
}

/// FULLY_CONNECTED, decoded.
pub type FullyConnected<'a> = Weighted<'a, FullyConnectedParams>;

impl<'a> Operator<'a> for FullyConnected<'a> {
    type Params = FullyConnectedParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 3;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        let (weights, w) = cx.weights()?;
        let [outputs, _inputs] = *w.dims else {
            return Err(LowerError::Unsupported {
                what: "FULLY_CONNECTED weights must be [outputs, inputs]",
            });
        };
        let stage = cx.int8_stage(input, cx.options().activation)?;
        cx.channel_requant((input, weights), outputs, false)?;
        cx.params(&FullyConnectedParams { stage })
    }

    fn decode(d: &Decoder<'_, 'a>, params: FullyConnectedParams) -> Self {
        let input = d.activation(0, DType::I8);
        let mut weights = d.weights(1);
        let output = d.output(DType::I8);
        // Weights are [outputs, inputs] whatever rank they were written with.
        let inputs = weights.shape.c;
        // Checked: `inputs` is never 0 (parse refuses zero-sized dimensions).
        let outputs = weights.data.len().checked_div(inputs).unwrap_or(0);
        weights.shape = Shape4::new(outputs, 1, 1, inputs);
        let in_elements = input.shape.elements().unwrap_or(0);
        let rows = in_elements.checked_div(inputs).unwrap_or(0);
        d.check(
            rows * inputs == in_elements
                && output.shape.c == outputs
                && output.shape.elements() == rows.checked_mul(outputs),
            why!("input, weights and output sizes do not match"),
        );
        // One multiplier for all outputs, or one each.
        let tensors = (input.index, weights, output.index);
        Weighted::decoded(d, params, tensors, &[1, outputs])
    }

    fn io(&self) -> Option<Io> {
        Some(Weighted::io(self))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let (stage, weights) = (&self.params.stage, self.weights);
        let (bias, requant) = (self.bias, self.requant);
        fully_connected_i8_decoded(
            stage,
            v.inputs[0],
            weights,
            bias,
            requant,
            v.output,
            v.scratch,
        )
    }

    fn scratch_need(&self, _: &Model<'a>) -> Result<Option<usize>, Error> {
        let (stage, shape) = (&self.params.stage, self.weights.shape);
        Ok(Some(scratch_bytes(stage, shape, self.bias, self.requant)))
    }

    fn macs(&self, model: &Model<'a>) -> Result<u64, Error> {
        let outputs = model.tensor(self.output)?.shape.elements().unwrap_or(0);
        Ok((outputs as u64) * self.weights.shape.c as u64)
    }

    fn kernel_paths(&self, model: &Model<'a>, paths: &mut KernelPaths) -> Result<(), Error> {
        let in_f = self.weights.shape.c;
        let general = fc_fast::takes_general(&self.params.stage, in_f, self.bias, self.requant);
        paths.take(KernelPath::FcGeneral, general);
        let in_bytes = model.tensor(self.input)?.record.byte_len as usize;
        let rows = in_bytes.checked_div(in_f).unwrap_or(0);
        let macs = self.weights.data.len().saturating_mul(rows);
        paths.take(KernelPath::FcFast, macs >= fc_fast::FAST_MIN_MACS);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, Shape4};
    use crate::quant::QuantizedMultiplier;
    use crate::test_support::*;
    use std::vec::Vec;
    fn run_i8(
        (st, rq): (Int8Stage, &[QuantizedMultiplier]),
        (input, weights): (Tensor<i8>, Tensor<i8>),
        bias: Option<&[i32]>,
        os: Shape4,
    ) -> Result<Vec<i8>, Error> {
        let mut out = vec![0i8; len(os)];
        let mut words = vec![0u32; scratch_bytes(&st, weights.shape, bias, rq).div_ceil(4)];
        let scratch = crate::cast::words_as_bytes_mut(&mut words);
        fully_connected_i8(&st, input, weights, bias, rq, tm(&mut out, os), scratch)?;
        Ok(out)
    }

    // Rows [3, 5, -1], [0, 2, 10]; input_offset -2 -> [1, 3, -3], [-2, 0, 8].
    // Weights [2, -1, 4], [-3, 5, 1]; bias [7, -20]: acc -13+7 = -6, 9-20 = -11 | 35, -6.
    const INPUT: [i8; 6] = [3, 5, -1, 0, 2, 10];
    const WEIGHTS: [i8; 6] = [2, -1, 4, -3, 5, 1];

    #[test]
    fn per_tensor_batch_2() {
        // x0.75: -4.5 -> -4 (the doubling high multiply rounds negative ties toward zero),
        // -8.25 -> -8, 26.25 -> 26, -4.5 -> -4; then + output zero point 3.
        let io = (t(&INPUT, s(2, 1, 1, 3)), t(&WEIGHTS, s(2, 1, 1, 3)));
        let out = run_i8(
            (stage(-2, 3), &[q(0.75)]),
            io,
            Some(&[7, -20]),
            s(2, 1, 1, 2),
        );
        assert_eq!(out, Ok(vec![-1, -5, 29, -1]));
    }

    #[test]
    fn per_channel_batch_2() {
        // Feature 0 x0.5: -3, 17.5 -> 18. Feature 1 x2: -22, -12. Then + 3.
        let io = (t(&INPUT, s(2, 1, 1, 3)), t(&WEIGHTS, s(2, 1, 1, 3)));
        let rq = [q(0.5), q(2.0)];
        let out = run_i8((stage(-2, 3), &rq), io, Some(&[7, -20]), s(2, 1, 1, 2));
        assert_eq!(out, Ok(vec![0, -19, 21, -9]));
    }

    #[test]
    fn saturation_and_fused_activations() {
        // Input [127; 4]; weights [127; 4], [-127; 4], [1,0,0,0], [-1,0,0,0]: acc 64516,
        // -64516, 127, -127. x0.5 -> 32258, -32258, 64, -63; + zero point 10.
        // Scale 0.1: 6.0 is 60 steps above the zero point, so ReLU6 tops out at 70.
        let mut weights = vec![127i8; 4];
        weights.extend([-127; 4]);
        weights.extend([1, 0, 0, 0, -1, 0, 0, 0]);
        let cases = [
            (Activation::None, [127, -128, 74, -53]),
            (Activation::Relu, [127, 10, 74, 10]),
            (Activation::Relu6, [70, 10, 70, 10]),
        ];
        for (act, expected) in cases {
            let mut st = stage(0, 10);
            (st.act_min, st.act_max) = act.int8_range(0.1, 10);
            let io = (t(&[127; 4], s(1, 1, 1, 4)), t(&weights, s(4, 1, 1, 4)));
            let out = run_i8((st, &[q(0.5)]), io, None, s(1, 1, 1, 4));
            assert_eq!(out, Ok(expected.to_vec()), "{act:?}");
        }
    }

    #[test]
    fn matches_naive_reference_on_random_configs() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for case in 0..400 {
            let (rows, in_f, out_f) = (rng.size(1, 3), rng.size(1, 40), rng.size(1, 12));
            // Either [rows, in_f] or a kept-dims [1, rows, in_f] input.
            let (n, h) = [(rows, 1), (1, rows)][case % 2];
            let (is, ws) = (s(n, h, 1, in_f), s(out_f, 1, 1, in_f));
            let (input, weights) = (rng.i8s(rows * in_f), rng.i8s(out_f * in_f));
            let (st, bias, rq) = (rng.stage(), rng.bias(out_f), rng.requant(out_f));
            let mut want = Vec::new();
            for r in 0..rows {
                for o in 0..out_f {
                    let mut acc = bias.as_ref().map_or(0, |b| i64::from(b[o]));
                    for i in 0..in_f {
                        let x = i64::from(input[r * in_f + i]) + i64::from(st.input_offset);
                        acc += x * i64::from(weights[o * in_f + i]);
                    }
                    want.push(reference_requant(acc, rq[o % rq.len()], &st));
                }
            }
            let io = (t(&input, is), t(&weights, ws));
            let got = run_i8((st, &rq), io, bias.as_deref(), chans(is, out_f));
            assert_eq!(got, Ok(want), "case {case}");
        }
    }

    #[test]
    fn f32_matches_f64_reference() {
        let mut rng = Rng(0x0bad_cafe_f00d_d00d);
        for case in 0..100 {
            let (rows, in_f, out_f) = (rng.size(1, 3), rng.size(1, 64), rng.size(1, 10));
            let (is, ws) = (s(rows, 1, 1, in_f), s(out_f, 1, 1, in_f));
            let (input, weights, bias) = (rng.f32s(len(is)), rng.f32s(len(ws)), rng.f32s(out_f));
            let clamp = [(-0.5, 0.75), Activation::None.f32_range()][case % 2];
            let mut got = vec![0f32; rows * out_f];
            let (io, out) = (
                (t(&input, is), t(&weights, ws)),
                tm(&mut got, chans(is, out_f)),
            );
            let res = fully_connected_f32(clamp, io.0, io.1, Some(&bias), out);
            assert_eq!(res, Ok(()));
            for (i, &g) in got.iter().enumerate() {
                let (r, o) = (i / out_f, i % out_f);
                let (mut acc, mut mag) = (f64::from(bias[o]), f64::from(bias[o].abs()));
                for k in 0..in_f {
                    let term = f64::from(input[r * in_f + k]) * f64::from(weights[o * in_f + k]);
                    acc += term;
                    mag += term.abs();
                }
                let want = acc.clamp(clamp.0.into(), clamp.1.into());
                assert!(close(g, want, mag), "case {case}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        // A valid 2 x 3 -> 2 x 2 layer, broken one way at a time.
        struct Case {
            shapes: [Shape4; 3],
            in_len: usize,
            bias: usize,
            rq: usize,
        }
        type Edit = (fn(&mut Case), Result<(), Error>);
        let run = |edit: fn(&mut Case)| {
            let shapes = [s(2, 1, 1, 3), s(2, 1, 1, 3), s(2, 1, 1, 2)];
            let mut c = Case {
                shapes,
                in_len: 6,
                bias: 2,
                rq: 2,
            };
            edit(&mut c);
            let [is, ws, os] = c.shapes;
            let (input, bias, rq) = (vec![0i8; c.in_len], vec![0; c.bias], vec![q(0.5); c.rq]);
            let weights = vec![0i8; ws.elements().unwrap_or(0)];
            let mut out = vec![0i8; os.elements().unwrap_or(0)];
            let (io, out) = ((t(&input, is), t(&weights, ws)), tm(&mut out, os));
            fully_connected_i8(&stage(0, 0), io.0, io.1, Some(&bias), &rq, out, &mut [])
        };
        let modulo = why!("fully_connected input elements modulo in_features");
        let cases: [Edit; 12] = [
            (|_| {}, Ok(())),
            (|c| c.rq = 1, Ok(())),
            (
                |c| c.in_len = 5,
                Err(Error::LengthMismatch {
                    expected: 6,
                    actual: 5,
                }),
            ),
            (|c| c.shapes[1].n = usize::MAX, Err(Error::ShapeOverflow)),
            (
                |c| c.shapes[1].h = 3,
                mismatch(why!("fully_connected weights height"), 1, 3),
            ),
            (
                |c| c.shapes[1].w = 3,
                mismatch(why!("fully_connected weights width"), 1, 3),
            ),
            (
                |c| c.shapes[1].c = 0,
                invalid(why!("fully_connected in_features is zero")),
            ),
            (
                |c| c.shapes[2].c = 3,
                mismatch(why!("fully_connected output channels"), 2, 3),
            ),
            (
                |c| c.shapes[2].n = 1,
                mismatch(why!("fully_connected output rows"), 2, 1),
            ),
            (
                |c| c.bias = 1,
                mismatch(why!("fully_connected bias length"), 2, 1),
            ),
            (
                |c| c.rq = 3,
                mismatch(why!("fully_connected requant length"), 2, 3),
            ),
            (
                |c| c.rq = 0,
                mismatch(why!("fully_connected requant length"), 2, 0),
            ),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            assert_eq!(run(edit), want, "case {i}");
        }
        assert_eq!(run(|c| c.shapes[1].c = 4), mismatch(modulo, 0, 2));
        // The f32 kernel validates the same way, and refuses an empty clamp range.
        let one = s(1, 1, 1, 1);
        let mut out = [0f32];
        let f32_run = |x: &[f32], clamp, out: &mut [f32]| {
            let (input, weights) = (t(x, one), t(&[2.0], one));
            fully_connected_f32(clamp, input, weights, Some(&[0.5]), tm(out, one))
        };
        assert_eq!(f32_run(&[1.0], (0.0, 6.0), &mut out), Ok(()));
        assert_eq!(out, [2.5]);
        assert_eq!(f32_run(&[f32::NAN], (0.0, 6.0), &mut out), Ok(()));
        assert!(out[0].is_nan(), "NaN passes through the clamp, as in C++");
        let nan = invalid(why!("f32 clamp range is empty or NaN"));
        assert_eq!(f32_run(&[1.0], (1.0, 0.0), &mut out), nan);
        let len_err = Err(Error::LengthMismatch {
            expected: 1,
            actual: 2,
        });
        assert_eq!(f32_run(&[1.0, 2.0], (0.0, 6.0), &mut out), len_err);
    }
}
