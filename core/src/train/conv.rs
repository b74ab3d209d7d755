//! Backward pass of the 2-D convolution ([`conv2d_f32`]), for any kernel, stride, padding and
//! dilation; a 1x1 pointwise convolution is the special case `kernel = 1x1`.
//!
//! Forward: `y[b, oy, ox, o] = sum_{ky, kx, i} x[b, iy, ix, i] F[o, ky, kx, i] + bias[o]` with
//! `iy = oy * stride_h + ky * dilation_h - pad_top` (taps outside the input are zero). Each
//! in-bounds tap contributes `g * x` to `dL/dF` and `g * F` to `dL/dx`.
//!
//! [`conv2d_f32`]: crate::ops::conv2d::conv2d_f32

use super::Grads;
use crate::geometry::tap_range;
use crate::ops::conv2d::{same, Geometry, WindowNames};
use crate::ops::{Shape4, Tensor, Window};
use crate::Error;

/// Gradients of a 2-D convolution.
///
/// `window`, `input` and `filter` (OHWI) are what the forward pass was given; `grad_output` has
/// the forward output's shape. `grads.input` is overwritten; `grads.weights` (OHWI, like
/// `filter`) and `grads.bias` (one per output channel) are accumulated.
pub fn conv2d_backward_f32(
    window: &Window,
    input: Tensor<f32>,
    filter: Tensor<f32>,
    grad_output: Tensor<f32>,
    mut grads: Grads,
) -> Result<(), Error> {
    input.shape.check_len(input.data.len())?;
    filter.shape.check_len(filter.data.len())?;
    grad_output.shape.check_len(grad_output.data.len())?;
    let (i, f, o) = (input.shape, filter.shape, grad_output.shape);
    same(why!("conv2d filter input channels"), i.c, f.c)?;
    same(why!("conv2d output channels"), f.n, o.c)?;
    same(why!("conv2d output batch"), i.n, o.n)?;
    let geom = TapGeometry::new(&names(), window, i, (f.h, f.w), o)?;
    grads.check(input.data.len(), filter.data.len(), o.c)?;
    if let Some(gi) = grads.input.as_deref_mut() {
        gi.fill(0.0);
    }
    let (in_c, out_c) = (i.c, o.c);
    if in_c == 0 || out_c == 0 {
        return Ok(());
    }
    let per_filter = filter.data.len() / out_c;
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
        for (oc, &go) in g.iter().enumerate() {
            if go == 0.0 {
                continue;
            }
            let at = oc * per_filter + tap * in_c;
            if let Some(gw) = grads.weights.as_deref_mut() {
                for (d, &xi) in gw[at..][..in_c].iter_mut().zip(x) {
                    *d += go * xi;
                }
            }
            if let Some(gi) = grads.input.as_deref_mut() {
                let w = &filter.data[at..][..in_c];
                for (d, &wi) in gi[in_px * in_c..][..in_c].iter_mut().zip(w) {
                    *d += go * wi;
                }
            }
        }
    });
    Ok(())
}

fn names() -> WindowNames {
    WindowNames {
        output_h: why!("conv2d output height (at most ceil((in + pad_top) / stride))"),
        output_w: why!("conv2d output width (at most ceil((in + pad_left) / stride))"),
        pad_top: why!("conv2d pad_top must be smaller than the dilated kernel height"),
        pad_left: why!("conv2d pad_left must be smaller than the dilated kernel width"),
    }
}

/// A sliding window validated by the forward kernels' own rules, walked tap by tap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TapGeometry {
    window: Window,
    input: Shape4,
    kernel_h: usize,
    kernel_w: usize,
    output: Shape4,
}

impl TapGeometry {
    /// Validates the window exactly as the forward kernels do.
    pub(crate) fn new(
        names: &WindowNames,
        window: &Window,
        input: Shape4,
        kernel: (usize, usize),
        output: Shape4,
    ) -> Result<Self, Error> {
        Geometry::new(names, window, input, kernel, output)?;
        Ok(Self {
            window: *window,
            input,
            kernel_h: kernel.0,
            kernel_w: kernel.1,
            output,
        })
    }

    /// Calls `f(output pixel, input pixel, kernel tap)` for every tap that lands on the input,
    /// pixels counted in NHW order and taps as `ky * kernel_w + kx`.
    pub(crate) fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (w, i, o) = (&self.window, self.input, self.output);
        let mut out_px = 0;
        for b in 0..o.n {
            let image = b * i.h * i.w;
            for oy in 0..o.h {
                let y0 = oy * w.stride_h;
                let ky = tap_range(y0, w.pad_top, i.h, self.kernel_h, w.dilation_h);
                for ox in 0..o.w {
                    let x0 = ox * w.stride_w;
                    let kx = tap_range(x0, w.pad_left, i.w, self.kernel_w, w.dilation_w);
                    for ky in ky.clone() {
                        // In range: `tap_range` keeps y0 + ky * dilation in pad..pad + in_h.
                        let iy = y0 + ky * w.dilation_h - w.pad_top;
                        for kx in kx.clone() {
                            let ix = x0 + kx * w.dilation_w - w.pad_left;
                            f(out_px, image + iy * i.w + ix, ky * self.kernel_w + kx);
                        }
                    }
                    out_px += 1;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::geometry::Axis;
    use crate::ops::conv2d::conv2d_f32;
    use crate::test_support::{all_taps, pad_input, random_axis, s, t, tm};
    use crate::train::testutil::*;
    use std::vec::Vec;

    /// f64 reference forward through an explicitly padded input.
    fn forward64(
        x: &[f64],
        xs: Shape4,
        (y, xa): (Axis, Axis),
        f: &[f64],
        fs: Shape4,
        b: &[f64],
    ) -> Vec<f64> {
        let padded = pad_input(x, xs, y, xa, 0.0);
        let mut out = Vec::new();
        for taps in all_taps(xs.n, y, xa) {
            for oc in 0..fs.n {
                let mut acc = b[oc];
                for &(p, k) in &taps {
                    for ic in 0..xs.c {
                        acc += padded[p * xs.c + ic] * f[(oc * fs.h * fs.w + k) * fs.c + ic];
                    }
                }
                out.push(acc);
            }
        }
        out
    }

    /// Runs one random case with the given axes and channel counts; returns the worst error.
    fn check_case(rng: &mut Rng, (y, x): (Axis, Axis), n: usize, (ic, oc): (usize, usize)) -> f64 {
        let xs = s(n, y.input, x.input, ic);
        let fs = s(oc, y.kernel, x.kernel, ic);
        let os = s(n, y.output, x.output, oc);
        let (xv, fv, bv) = (
            rng.f32s(xs.elements().unwrap()),
            rng.f32s(fs.elements().unwrap()),
            rng.f32s(oc),
        );
        let r = rng.f32s(os.elements().unwrap());
        let win = Window::from_axes(&y, &x);
        let mut out = vec![0.0f32; r.len()];
        let io = (t(&xv, xs), t(&fv, fs));
        conv2d_f32(
            &win,
            (f32::MIN, f32::MAX),
            io.0,
            io.1,
            Some(&bv),
            tm(&mut out, os),
        )
        .unwrap();
        let (x64, f64_, b64, r64) = (to64(&xv), to64(&fv), to64(&bv), to64(&r));
        let loss =
            |xx: &[f64], ff: &[f64], bb: &[f64]| dot(&forward64(xx, xs, (y, x), ff, fs, bb), &r64);
        assert!(max_abs_err(&out, &forward64(&x64, xs, (y, x), &f64_, fs, &b64)) < 1e-5);

        let (mut gi, mut gw, mut gb) = (
            vec![3.0f32; xv.len()],
            vec![0.0f32; fv.len()],
            vec![0.0f32; oc],
        );
        let grads = Grads {
            input: Some(&mut gi),
            weights: Some(&mut gw),
            bias: Some(&mut gb),
        };
        conv2d_backward_f32(&win, io.0, io.1, t(&r, os), grads).unwrap();
        let nx = numeric_grad(&x64, 1e-6, |v| loss(v, &f64_, &b64));
        let nf = numeric_grad(&f64_, 1e-6, |v| loss(&x64, v, &b64));
        let nb = numeric_grad(&b64, 1e-6, |v| loss(&x64, &f64_, v));
        let errs = [
            max_rel_err(&gi, &nx),
            max_rel_err(&gw, &nf),
            max_rel_err(&gb, &nb),
        ];
        errs.into_iter().fold(0.0, f64::max)
    }

    #[test]
    fn gradients_match_finite_differences_on_random_windows() {
        // Random SAME, VALID and arbitrary paddings, strides 1..3, dilations 1..2, kernels
        // 1..4, batches 1..2 (random_axis, shared with the forward kernels' tests).
        let mut rng = Rng(0xc0_11f2_d0b1);
        let mut worst = 0.0f64;
        for case in 0..150 {
            let axes = (random_axis(&mut rng), random_axis(&mut rng));
            let n = rng.size(1, 2);
            let chans = (rng.size(1, 3), rng.size(1, 3));
            let e = check_case(&mut rng, axes, n, chans);
            assert!(e < 1e-4, "case {case} {axes:?}: rel err {e}");
            worst = worst.max(e);
        }
        std::println!("conv2d: worst relative error {worst:e}");
    }

    #[test]
    fn pointwise_1x1_gradients_match_finite_differences() {
        let mut rng = Rng(0x1_0001_0001);
        let one = |len: usize| Axis {
            input: len,
            kernel: 1,
            stride: 1,
            dilation: 1,
            pad: 0,
            output: len,
        };
        for (h, w, ic, oc) in [(1, 1, 4, 3), (3, 2, 5, 2), (4, 4, 2, 6)] {
            let e = check_case(&mut rng, (one(h), one(w)), 2, (ic, oc));
            assert!(e < 1e-4, "pointwise {h}x{w} {ic}->{oc}: rel err {e}");
        }
    }

    #[test]
    fn stride_dilation_and_padding_combinations() {
        // Named geometries that matter on devices: 3x3 SAME stride 2, 3x3 dilation 2 SAME,
        // 5x5 VALID, 1x3 stride 1x2, 3x3 stride 3 (no overlap).
        let mut rng = Rng(0x5eed_cafe);
        let axis = |input, kernel, stride, dilation, p: crate::ops::Padding| {
            let (output, pad) = p.output_and_pad(input, kernel, stride, dilation).unwrap();
            Axis {
                input,
                kernel,
                stride,
                dilation,
                pad,
                output,
            }
        };
        use crate::ops::Padding::{Same, Valid};
        let cases = [
            (axis(7, 3, 2, 1, Same), axis(6, 3, 2, 1, Same)),
            (axis(6, 3, 1, 2, Same), axis(5, 3, 1, 2, Same)),
            (axis(7, 5, 1, 1, Valid), axis(6, 5, 1, 1, Valid)),
            (axis(4, 1, 1, 1, Same), axis(7, 3, 2, 1, Valid)),
            (axis(9, 3, 3, 1, Valid), axis(6, 3, 3, 1, Same)),
        ];
        for (y, x) in cases {
            let e = check_case(&mut rng, (y, x), 1, (2, 3));
            assert!(e < 1e-4, "{y:?} {x:?}: rel err {e}");
        }
    }

    #[test]
    fn only_requested_gradients_are_written() {
        let win = Window::DENSE;
        let (x, f, g) = ([1.0f32, 2.0], [3.0f32], [1.0f32, -1.0]);
        let mut gb = [10.0f32];
        let grads = Grads {
            bias: Some(&mut gb),
            ..Grads::default()
        };
        let (xs, fs) = (s(1, 2, 1, 1), s(1, 1, 1, 1));
        conv2d_backward_f32(&win, t(&x, xs), t(&f, fs), t(&g, xs), grads).unwrap();
        assert_eq!(gb, [10.0]);
        // A grad_output of the wrong shape is refused.
        let bad = conv2d_backward_f32(&win, t(&x, xs), t(&f, fs), t(&g[..1], xs), Grads::default());
        assert!(bad.is_err());
    }
}
