//! Backward passes of average, max and global average pooling ([`pooling`]).
//!
//! Windows are clipped to the input exactly as in the forward kernels: padding is neither
//! summed nor counted, so an average's gradient is shared among the window's in-bounds
//! elements only. Max pooling routes each output's gradient to the first in-bounds element
//! (row-major) holding the window's maximum; with ties that is one valid subgradient.
//!
//! [`pooling`]: crate::ops::pooling

use core::ops::Range;

use crate::ops::conv2d::same;
use crate::ops::pooling::{check_window, PoolParams, Site};
use crate::ops::{Shape4, Tensor};
use crate::Error;

/// Gradient of [`average_pool2d_f32`](crate::ops::pooling::average_pool2d_f32) with respect
/// to its input (of shape `input_shape`), written to `grad_input` (overwritten).
///
/// `grad_output` is the gradient with respect to the output, before any fused activation.
pub fn average_pool2d_backward_f32(
    p: &PoolParams,
    input_shape: Shape4,
    grad_output: Tensor<f32>,
    grad_input: &mut [f32],
) -> Result<(), Error> {
    validate(p, input_shape, &grad_output, grad_input)?;
    grad_input.fill(0.0);
    for_each_window(p, input_shape, grad_output, |site, g| {
        let share = g / site.count() as f32;
        site.for_each_index(input_shape, |i| grad_input[i] += share);
    });
    Ok(())
}

/// Gradient of [`max_pool2d_f32`](crate::ops::pooling::max_pool2d_f32) with respect to its
/// `input` (the forward pass's input), written to `grad_input` (overwritten).
pub fn max_pool2d_backward_f32(
    p: &PoolParams,
    input: Tensor<f32>,
    grad_output: Tensor<f32>,
    grad_input: &mut [f32],
) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    validate(p, input.shape, &grad_output, grad_input)?;
    grad_input.fill(0.0);
    for_each_window(p, input.shape, grad_output, |site, g| {
        // The forward pass's maximum ignores NaN, as f32::max does.
        let mut best: Option<(usize, f32)> = None;
        site.for_each_index(input.shape, |i| {
            let v = input.data[i];
            if best.is_none_or(|(_, b)| v > b) && !v.is_nan() {
                best = Some((i, v));
            }
        });
        if let Some((i, _)) = best {
            grad_input[i] += g;
        }
    });
    Ok(())
}

/// Gradient of global average pooling (average over height and width, one output pixel per
/// image and channel) with respect to its input of shape `input_shape`, written to
/// `grad_input` (overwritten). `grad_output` holds `n * c` values.
pub fn global_average_pool_backward_f32(
    input_shape: Shape4,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<(), Error> {
    input_shape.check_len(grad_input.len())?;
    let (n, c) = (input_shape.n, input_shape.c);
    same(
        why!("global average pool grad_output length"),
        n * c,
        grad_output.len(),
    )?;
    let pixels = input_shape.h * input_shape.w;
    if grad_input.is_empty() {
        return Ok(());
    }
    let per_image = pixels * c;
    for (image, g) in grad_input
        .chunks_exact_mut(per_image)
        .zip(grad_output.chunks_exact(c))
    {
        for pixel in image.chunks_exact_mut(c) {
            for (d, &go) in pixel.iter_mut().zip(g) {
                *d = go / pixels as f32;
            }
        }
    }
    Ok(())
}

/// Calls `f` with each output's window and gradient, in NHWC order.
fn for_each_window(
    p: &PoolParams,
    is: Shape4,
    grad_output: Tensor<f32>,
    mut f: impl FnMut(Site, f32),
) {
    let os = grad_output.shape;
    let (rows, cols) = p.axes(is, os);
    let mut g = grad_output.data.iter();
    for n in 0..os.n {
        for oy in 0..os.h {
            let Range { start: y0, end: y1 } = rows.clipped(oy);
            for ox in 0..os.w {
                let Range { start: x0, end: x1 } = cols.clipped(ox);
                for c in 0..os.c {
                    if let Some(&go) = g.next() {
                        let site = Site {
                            n,
                            c,
                            y0,
                            y1,
                            x0,
                            x1,
                        };
                        f(site, go);
                    }
                }
            }
        }
    }
}

/// The forward kernels' rules (their window check, shared), plus buffer lengths.
fn validate(
    p: &PoolParams,
    is: Shape4,
    grad_output: &Tensor<f32>,
    grad_input: &[f32],
) -> Result<(), Error> {
    is.check_len(grad_input.len())?;
    grad_output.shape.check_len(grad_output.data.len())?;
    let os = grad_output.shape;
    same(why!("pool output batch"), is.n, os.n)?;
    same(why!("pool output channels"), is.c, os.c)?;
    check_window(p, is, os)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pooling::{average_pool2d_f32, global_average_pool_params, max_pool2d_f32};
    use crate::ops::{Padding, Window};
    use crate::test_support::{s, t, tm};
    use crate::train::testutil::*;
    use std::vec::Vec;

    const NO_CLAMP: (f32, f32) = (f32::MIN, f32::MAX);

    /// A random pool: SAME or VALID, filter 1..3, stride 1..3, input 1..6.
    fn random_pool(rng: &mut Rng) -> (PoolParams, Shape4, Shape4) {
        let (n, c) = (rng.size(1, 2), rng.size(1, 3));
        let (ih, iw) = (rng.size(1, 6), rng.size(1, 6));
        let (fh, fw) = (rng.size(1, 3).min(ih), rng.size(1, 3).min(iw));
        let (sh, sw) = (rng.size(1, 3), rng.size(1, 3));
        let pad = if rng.next() % 2 == 0 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let (oh, pt) = pad.output_and_pad(ih, fh, sh, 1).unwrap();
        let (ow, pl) = pad.output_and_pad(iw, fw, sw, 1).unwrap();
        let window = Window {
            stride_h: sh,
            stride_w: sw,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: pt,
            pad_left: pl,
        };
        let p = PoolParams {
            window,
            filter_h: fh,
            filter_w: fw,
        };
        (p, s(n, ih, iw, c), s(n, oh, ow, c))
    }

    /// f64 reference: average (`max = false`) or maximum of each clipped window.
    fn forward64(p: &PoolParams, is: Shape4, os: Shape4, x: &[f64], max: bool) -> Vec<f64> {
        let mut out = Vec::new();
        let g = vec![0.0f32; os.elements().unwrap()];
        for_each_window(p, is, t(&g, os), |site, _| {
            let mut vals = Vec::new();
            site.for_each_index(is, |i| vals.push(x[i]));
            out.push(if max {
                vals.iter().copied().fold(f64::MIN, f64::max)
            } else {
                vals.iter().sum::<f64>() / vals.len() as f64
            });
        });
        out
    }

    /// Distinct values, far apart compared with the finite-difference step (no ties).
    fn distinct(rng: &mut Rng, len: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..len).map(|i| i as f32 / len as f32 - 0.5).collect();
        for i in (1..len).rev() {
            v.swap(i, rng.size(0, i));
        }
        v
    }

    #[test]
    fn average_and_max_gradients_match_finite_differences() {
        let mut rng = Rng(0x9001_c0de);
        let mut worst = 0.0f64;
        for case in 0..200 {
            let (p, is, os) = random_pool(&mut rng);
            let x = distinct(&mut rng, is.elements().unwrap());
            let r = rng.f32s(os.elements().unwrap());
            let (x64, r64) = (to64(&x), to64(&r));
            for max in [false, true] {
                let mut y = vec![0.0f32; r.len()];
                if max {
                    max_pool2d_f32(&p, NO_CLAMP, t(&x, is), tm(&mut y, os)).unwrap();
                } else {
                    average_pool2d_f32(&p, NO_CLAMP, t(&x, is), tm(&mut y, os)).unwrap();
                }
                assert!(max_abs_err(&y, &forward64(&p, is, os, &x64, max)) < 1e-6);
                let mut gi = vec![7.0f32; x.len()];
                if max {
                    max_pool2d_backward_f32(&p, t(&x, is), t(&r, os), &mut gi).unwrap();
                } else {
                    average_pool2d_backward_f32(&p, is, t(&r, os), &mut gi).unwrap();
                }
                let n = numeric_grad(&x64, 1e-6, |v| dot(&forward64(&p, is, os, v, max), &r64));
                let e = max_rel_err(&gi, &n);
                assert!(e < 1e-4, "case {case} max={max} {p:?} {is:?}: rel err {e}");
                worst = worst.max(e);
            }
        }
        std::println!("pooling: worst relative error {worst:e}");
    }

    #[test]
    fn global_average_pool_gradient_matches_finite_differences() {
        let mut rng = Rng(0x6a9);
        for _ in 0..20 {
            let is = s(
                rng.size(1, 2),
                rng.size(1, 5),
                rng.size(1, 5),
                rng.size(1, 4),
            );
            let os = s(is.n, 1, 1, is.c);
            let p = global_average_pool_params(is);
            let x = rng.f32s(is.elements().unwrap());
            let r = rng.f32s(os.elements().unwrap());
            let mut gi = vec![0.0f32; x.len()];
            global_average_pool_backward_f32(is, &r, &mut gi).unwrap();
            let r64 = to64(&r);
            let n = numeric_grad(&to64(&x), 1e-6, |v| {
                dot(&forward64(&p, is, os, v, false), &r64)
            });
            assert!(max_rel_err(&gi, &n) < 1e-5);
            // The same as the average pool's backward with the global parameters.
            let mut via_avg = vec![0.0f32; x.len()];
            average_pool2d_backward_f32(&p, is, t(&r, os), &mut via_avg).unwrap();
            assert_eq!(gi, via_avg);
        }
    }

    #[test]
    fn max_pool_routes_ties_to_the_first_maximum() {
        let p = PoolParams {
            window: Window::DENSE,
            filter_h: 2,
            filter_w: 2,
        };
        let x = [1.0f32, 3.0, 3.0, f32::NAN];
        let mut gi = [0.0f32; 4];
        max_pool2d_backward_f32(&p, t(&x, s(1, 2, 2, 1)), t(&[2.0], s(1, 1, 1, 1)), &mut gi)
            .unwrap();
        assert_eq!(gi, [0.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let mut p = PoolParams {
            window: Window {
                stride_h: 0,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                pad_top: 0,
                pad_left: 0,
            },
            filter_h: 1,
            filter_w: 1,
        };
        let one = s(1, 1, 1, 1);
        let mut gi = [0.0f32];
        let r = average_pool2d_backward_f32(&p, one, t(&[1.0], one), &mut gi);
        assert!(matches!(r, Err(Error::InvalidParameter { .. })));
        p.window.stride_h = 1;
        let r = average_pool2d_backward_f32(&p, one, t(&[1.0, 2.0], s(1, 2, 1, 1)), &mut gi);
        assert!(matches!(r, Err(Error::ShapeMismatch { .. })));
        let r = global_average_pool_backward_f32(one, &[1.0, 2.0], &mut gi);
        assert!(r.is_err());
    }
}
