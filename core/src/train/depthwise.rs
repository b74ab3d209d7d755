//! Backward pass of the depthwise convolution ([`depthwise_conv2d_f32`]), any depth
//! multiplier, kernel, stride, padding and dilation.
//!
//! Output channel `oc = ic * depth_multiplier + m` reads only input channel `ic` through
//! filter column `oc` of the `[1, kh, kw, in_c * depth_multiplier]` filter, so each tap
//! contributes `g[oc] * x[ic]` to `dL/dF[tap, oc]` and `g[oc] * F[tap, oc]` to `dL/dx[ic]`.
//!
//! [`depthwise_conv2d_f32`]: crate::ops::depthwise_conv2d::depthwise_conv2d_f32

use super::conv::TapGeometry;
use super::Grads;
use crate::ops::conv2d::{same, WindowNames};
use crate::ops::{Tensor, Window};
use crate::Error;

/// Gradients of a depthwise convolution.
///
/// `window`, `depth_multiplier`, `input` and `filter` are what the forward pass was given;
/// `grad_output` has the forward output's shape. `grads.input` is overwritten; `grads.weights`
/// (like `filter`) and `grads.bias` (one per output channel) are accumulated.
pub fn depthwise_conv2d_backward_f32(
    window: &Window,
    depth_multiplier: usize,
    input: Tensor<f32>,
    filter: Tensor<f32>,
    grad_output: Tensor<f32>,
    mut grads: Grads,
) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    filter.shape.check_len(filter.data.len())?;
    grad_output.shape.check_len(grad_output.data.len())?;
    let dm = depth_multiplier;
    if dm == 0 {
        return Err(Error::InvalidParameter {
            what: why!("depthwise_conv2d depth_multiplier is zero"),
        });
    }
    let (i, f, o) = (input.shape, filter.shape, grad_output.shape);
    let out_c = i.c.checked_mul(dm).ok_or(Error::ShapeOverflow)?;
    same(why!("depthwise_conv2d filter batch"), 1, f.n)?;
    let what = why!("depthwise_conv2d filter channels (in_c * depth_multiplier)");
    same(what, out_c, f.c)?;
    let what = why!("depthwise_conv2d output channels (in_c * depth_multiplier)");
    same(what, out_c, o.c)?;
    same(why!("depthwise_conv2d output batch"), i.n, o.n)?;
    let geom = TapGeometry::new(&names(), window, i, (f.h, f.w), o)?;
    grads.check(input.data.len(), filter.data.len(), out_c)?;
    if let Some(gi) = grads.input.as_deref_mut() {
        gi.fill(0.0);
    }
    let in_c = i.c;
    if out_c == 0 {
        return Ok(());
    }
    if let Some(gb) = grads.bias.as_deref_mut() {
        for g in grad_output.data.chunks_exact(out_c) {
            for (b, &go) in gb.iter_mut().zip(g) {
                *b += go;
            }
        }
    }
    geom.for_each_tap(|out_px, in_px, tap| {
        let g = &grad_output.data[out_px * out_c..][..out_c];
        let x = &input.data[in_px * in_c..][..in_c];
        let w = &filter.data[tap * out_c..][..out_c];
        if let Some(gw) = grads.weights.as_deref_mut() {
            let gw = &mut gw[tap * out_c..][..out_c];
            for (oc, (d, &go)) in gw.iter_mut().zip(g).enumerate() {
                *d += go * x[oc / dm];
            }
        }
        if let Some(gi) = grads.input.as_deref_mut() {
            let gi = &mut gi[in_px * in_c..][..in_c];
            for (oc, (&go, &wo)) in g.iter().zip(w).enumerate() {
                gi[oc / dm] += go * wo;
            }
        }
    });
    Ok(())
}

fn names() -> WindowNames {
    WindowNames {
        output_h: why!("depthwise_conv2d output height (at most ceil((in + pad_top) / stride))"),
        output_w: why!("depthwise_conv2d output width (at most ceil((in + pad_left) / stride))"),
        pad_top: why!("depthwise_conv2d pad_top must be smaller than the dilated kernel height"),
        pad_left: why!("depthwise_conv2d pad_left must be smaller than the dilated kernel width"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Axis;
    use crate::ops::depthwise_conv2d::depthwise_conv2d_f32;
    use crate::ops::Shape4;
    use crate::test_support::{all_taps, pad_input, random_axis, s, t, tm};
    use crate::train::testutil::*;
    use std::vec::Vec;

    fn forward64(
        x: &[f64],
        xs: Shape4,
        (y, xa): (Axis, Axis),
        dm: usize,
        f: &[f64],
        b: &[f64],
    ) -> Vec<f64> {
        let padded = pad_input(x, xs, y, xa, 0.0);
        let out_c = xs.c * dm;
        let mut out = Vec::new();
        for taps in all_taps(xs.n, y, xa) {
            for oc in 0..out_c {
                let mut acc = b[oc];
                for &(p, k) in &taps {
                    acc += padded[p * xs.c + oc / dm] * f[k * out_c + oc];
                }
                out.push(acc);
            }
        }
        out
    }

    #[test]
    fn gradients_match_finite_differences_on_random_windows() {
        // Depth multipliers 1..3 over random SAME / VALID / arbitrary windows.
        let mut rng = Rng(0xde_97b0_5e11);
        let mut worst = 0.0f64;
        for case in 0..150 {
            let (y, x) = (random_axis(&mut rng), random_axis(&mut rng));
            let (n, ic, dm) = (rng.size(1, 2), rng.size(1, 3), rng.size(1, 3));
            let out_c = ic * dm;
            let xs = s(n, y.input, x.input, ic);
            let fs = s(1, y.kernel, x.kernel, out_c);
            let os = s(n, y.output, x.output, out_c);
            let (xv, fv, bv) = (
                rng.f32s(xs.elements().unwrap()),
                rng.f32s(fs.elements().unwrap()),
                rng.f32s(out_c),
            );
            let r = rng.f32s(os.elements().unwrap());
            let win = Window::from_axes(&y, &x);
            let mut out = vec![0.0f32; r.len()];
            let (ti, tf) = (t(&xv, xs), t(&fv, fs));
            let clamp = (f32::MIN, f32::MAX);
            depthwise_conv2d_f32(&win, dm, clamp, ti, tf, Some(&bv), tm(&mut out, os)).unwrap();
            let (x64, f64_, b64, r64) = (to64(&xv), to64(&fv), to64(&bv), to64(&r));
            let fwd = |xx: &[f64], ff: &[f64], bb: &[f64]| forward64(xx, xs, (y, x), dm, ff, bb);
            assert!(max_abs_err(&out, &fwd(&x64, &f64_, &b64)) < 1e-5);
            let loss = |xx: &[f64], ff: &[f64], bb: &[f64]| dot(&fwd(xx, ff, bb), &r64);

            let (mut gi, mut gw, mut gb) = (
                vec![5.0f32; xv.len()],
                vec![0.0f32; fv.len()],
                vec![0.0f32; out_c],
            );
            let grads = Grads {
                input: Some(&mut gi),
                weights: Some(&mut gw),
                bias: Some(&mut gb),
            };
            depthwise_conv2d_backward_f32(&win, dm, ti, tf, t(&r, os), grads).unwrap();
            let nx = numeric_grad(&x64, 1e-6, |v| loss(v, &f64_, &b64));
            let nf = numeric_grad(&f64_, 1e-6, |v| loss(&x64, v, &b64));
            let nb = numeric_grad(&b64, 1e-6, |v| loss(&x64, &f64_, v));
            for (what, e) in [
                ("input", max_rel_err(&gi, &nx)),
                ("filter", max_rel_err(&gw, &nf)),
                ("bias", max_rel_err(&gb, &nb)),
            ] {
                assert!(
                    e < 1e-4,
                    "case {case} dm {dm} {y:?} {x:?}: {what} rel err {e}"
                );
                worst = worst.max(e);
            }
        }
        std::println!("depthwise_conv2d: worst relative error {worst:e}");
    }

    #[test]
    fn zero_depth_multiplier_is_an_error() {
        let win = Window::DENSE;
        let one = s(1, 1, 1, 1);
        let r = depthwise_conv2d_backward_f32(
            &win,
            0,
            t(&[1.0], one),
            t(&[1.0], one),
            t(&[1.0], one),
            Grads::default(),
        );
        assert!(matches!(r, Err(Error::InvalidParameter { .. })));
    }
}
