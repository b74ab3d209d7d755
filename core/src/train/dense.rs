//! Backward pass of the fully connected layer ([`fully_connected_f32`]).
//!
//! Forward: `y[r, o] = sum_i W[o, i] x[r, i] + b[o]` for each row `r`. Backward, with
//! `g = dL/dy` (before any fused activation):
//! `dL/dx[r, i] = sum_o g[r, o] W[o, i]`, `dL/dW[o, i] += sum_r g[r, o] x[r, i]`,
//! `dL/db[o] += sum_r g[r, o]`.
//!
//! [`fully_connected_f32`]: crate::ops::fully_connected::fully_connected_f32

use super::Grads;
use crate::ops::conv2d::same;
use crate::ops::Tensor;
use crate::Error;

/// Gradients of a fully connected layer.
///
/// `input` and `weights` are what the forward pass was given (`weights` is
/// `[out_features, 1, 1, in_features]`; the input is read as rows of `in_features`);
/// `grad_output` has one row of `out_features` per input row. `grads.input` is overwritten;
/// `grads.weights` (same layout as `weights`) and `grads.bias` (`out_features`) are accumulated.
pub fn dense_backward_f32(
    input: Tensor<f32>,
    weights: Tensor<f32>,
    grad_output: Tensor<f32>,
    mut grads: Grads,
) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    weights.shape.check_len(weights.data.len())?;
    grad_output.shape.check_len(grad_output.data.len())?;
    let w = weights.shape;
    same(why!("dense weights height"), 1, w.h)?;
    same(why!("dense weights width"), 1, w.w)?;
    let (in_f, out_f) = (w.c, w.n);
    if in_f == 0 || out_f == 0 {
        return Err(Error::InvalidParameter {
            what: why!("dense in_features or out_features is zero"),
        });
    }
    same(
        why!("dense input elements modulo in_features"),
        0,
        input.data.len() % in_f,
    )?;
    let rows = input.data.len() / in_f;
    same(
        why!("dense grad_output channels"),
        out_f,
        grad_output.shape.c,
    )?;
    same(
        why!("dense grad_output rows"),
        rows * out_f,
        grad_output.data.len(),
    )?;
    grads.check(input.data.len(), weights.data.len(), out_f)?;

    let g_rows = grad_output.data.chunks_exact(out_f);
    for (r, (x, g)) in input.data.chunks_exact(in_f).zip(g_rows).enumerate() {
        if let Some(gb) = grads.bias.as_deref_mut() {
            for (b, &go) in gb.iter_mut().zip(g) {
                *b += go;
            }
        }
        if let Some(gw) = grads.weights.as_deref_mut() {
            for (row, &go) in gw.chunks_exact_mut(in_f).zip(g) {
                if go != 0.0 {
                    for (d, &xi) in row.iter_mut().zip(x) {
                        *d += go * xi;
                    }
                }
            }
        }
        if let Some(gi) = grads.input.as_deref_mut() {
            let gi = &mut gi[r * in_f..][..in_f];
            gi.fill(0.0);
            for (row, &go) in weights.data.chunks_exact(in_f).zip(g) {
                if go != 0.0 {
                    for (d, &wi) in gi.iter_mut().zip(row) {
                        *d += go * wi;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fully_connected::fully_connected_f32;
    use crate::test_support::{s, t, tm};
    use crate::train::testutil::*;
    use std::vec::Vec;

    /// f64 reference forward: rows of `in_f`.
    fn forward64(x: &[f64], w: &[f64], b: &[f64], in_f: usize) -> Vec<f64> {
        let out_f = b.len();
        let mut y = Vec::new();
        for row in x.chunks_exact(in_f) {
            for o in 0..out_f {
                let wr = &w[o * in_f..][..in_f];
                y.push(dot(row, wr) + b[o]);
            }
        }
        y
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng(0xdead_beef_1234);
        let mut worst = 0.0f64;
        for case in 0..40 {
            let (rows, in_f, out_f) = (rng.size(1, 3), rng.size(1, 9), rng.size(1, 7));
            let x = rng.f32s(rows * in_f);
            let w = rng.f32s(out_f * in_f);
            let b = rng.f32s(out_f);
            let r = rng.f32s(rows * out_f); // L = sum(r * y), so dL/dy = r
            let ws = s(out_f, 1, 1, in_f);
            // The f64 reference agrees with the f32 kernel.
            let mut y = vec![0.0f32; rows * out_f];
            let (xs, ys) = (s(rows, 1, 1, in_f), s(rows, 1, 1, out_f));
            fully_connected_f32(
                (f32::MIN, f32::MAX),
                t(&x, xs),
                t(&w, ws),
                Some(&b),
                tm(&mut y, ys),
            )
            .unwrap();
            let y64 = forward64(&to64(&x), &to64(&w), &to64(&b), in_f);
            assert!(max_abs_err(&y, &y64) < 1e-5, "case {case}: forward");

            let (mut gi, mut gw, mut gb) = (
                vec![9.0f32; x.len()],
                vec![0.0f32; w.len()],
                vec![0.0f32; b.len()],
            );
            let grads = Grads {
                input: Some(&mut gi),
                weights: Some(&mut gw),
                bias: Some(&mut gb),
            };
            dense_backward_f32(t(&x, xs), t(&w, ws), t(&r, ys), grads).unwrap();

            let (x64, w64, b64, r64) = (to64(&x), to64(&w), to64(&b), to64(&r));
            let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&forward64(x, w, b, in_f), &r64);
            let nx = numeric_grad(&x64, 1e-6, |x| loss(x, &w64, &b64));
            let nw = numeric_grad(&w64, 1e-6, |w| loss(&x64, w, &b64));
            let nb = numeric_grad(&b64, 1e-6, |b| loss(&x64, &w64, b));
            for (what, e) in [
                ("input", max_rel_err(&gi, &nx)),
                ("weights", max_rel_err(&gw, &nw)),
                ("bias", max_rel_err(&gb, &nb)),
            ] {
                assert!(e < 1e-4, "case {case}: {what} rel err {e}");
                worst = worst.max(e);
            }
        }
        std::println!("dense: worst relative error {worst:e}");
    }

    #[test]
    fn parameter_gradients_accumulate_and_input_gradient_is_overwritten() {
        let (x, w, g) = ([1.0f32, 2.0], [3.0f32, 4.0], [0.5f32]);
        let (mut gi, mut gw, mut gb) = ([7.0f32; 2], [1.0f32; 2], [1.0f32]);
        for _ in 0..2 {
            let grads = Grads {
                input: Some(&mut gi),
                weights: Some(&mut gw),
                bias: Some(&mut gb),
            };
            let (xs, ws, gs) = (s(1, 1, 1, 2), s(1, 1, 1, 2), s(1, 1, 1, 1));
            dense_backward_f32(t(&x, xs), t(&w, ws), t(&g, gs), grads).unwrap();
        }
        assert_eq!(gi, [1.5, 2.0]);
        assert_eq!(gw, [2.0, 3.0]);
        assert_eq!(gb, [2.0]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let (x, w, g) = ([1.0f32, 2.0], [3.0f32, 4.0], [0.5f32]);
        let mut gb = [0.0f32; 2];
        let grads = Grads {
            bias: Some(&mut gb),
            ..Grads::default()
        };
        let (xs, ws, gs) = (s(1, 1, 1, 2), s(1, 1, 1, 2), s(1, 1, 1, 1));
        let r = dense_backward_f32(t(&x, xs), t(&w, ws), t(&g, gs), grads);
        assert_eq!(
            r,
            Err(Error::LengthMismatch {
                expected: 1,
                actual: 2
            })
        );
        let r = dense_backward_f32(t(&x, xs), t(&w, ws), t(&[], gs), Grads::default());
        assert!(r.is_err());
    }
}
