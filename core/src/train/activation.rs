//! ReLU and ReLU6, as standalone layers or fused into a layer's output: the forward pass in
//! place, and a backward pass that needs only the activated output.
//!
//! `y = clamp(z, lo, hi)` has derivative 1 where `lo < y < hi` and 0 elsewhere, so the output
//! alone decides it (at the kinks the derivative is taken as 0). The pre-activation value is
//! never kept.

use crate::ops::Activation;
use crate::Error;

/// Applies `activation` to `data` in place (ReLU: `max(x, 0)`, ReLU6: `min(max(x, 0), 6)`).
/// NaN stays NaN, as in the forward kernels.
pub fn activation_f32(activation: Activation, data: &mut [f32]) {
    if activation == Activation::None {
        return;
    }
    let (lo, hi) = activation.f32_range();
    for v in data.iter_mut() {
        if *v < lo {
            *v = lo;
        } else if *v > hi {
            *v = hi;
        }
    }
}

/// Turns `grad`, the gradient with respect to an activated `output`, into the gradient with
/// respect to the value before the activation, in place: each element is kept where the
/// activation passes its input through (`lo < output < hi`) and zeroed elsewhere.
pub fn activation_backward_f32(
    activation: Activation,
    output: &[f32],
    grad: &mut [f32],
) -> Result<(), Error> {
    if output.len() != grad.len() {
        return Err(Error::LengthMismatch {
            expected: output.len(),
            actual: grad.len(),
        });
    }
    if activation == Activation::None {
        return Ok(());
    }
    let (lo, hi) = activation.f32_range();
    for (g, &y) in grad.iter_mut().zip(output) {
        if !(y > lo && y < hi) {
            *g = 0.0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testutil::*;
    use std::vec::Vec;

    fn act64(a: Activation, z: f64) -> f64 {
        match a {
            Activation::None => z,
            Activation::Relu => z.max(0.0),
            Activation::Relu6 => z.clamp(0.0, 6.0),
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng(0xac71);
        for a in [Activation::None, Activation::Relu, Activation::Relu6] {
            // Spread over [-8, 8] so both ReLU6 kinks are crossed; no value within 1e-3 of one.
            let z: Vec<f32> = rng
                .f32s(200)
                .into_iter()
                .map(|v| v * 8.0)
                .filter(|v| v.abs() > 1e-3 && (v - 6.0).abs() > 1e-3)
                .collect();
            let r = rng.f32s(z.len());
            let mut y = z.clone();
            activation_f32(a, &mut y);
            for (&yi, &zi) in y.iter().zip(&z) {
                assert_eq!(f64::from(yi), act64(a, f64::from(zi)));
            }
            let mut g = r.clone();
            activation_backward_f32(a, &y, &mut g).unwrap();
            let r64 = to64(&r);
            let n = numeric_grad(&to64(&z), 1e-6, |v| {
                v.iter().zip(&r64).map(|(&zi, ri)| act64(a, zi) * ri).sum()
            });
            assert!(max_rel_err(&g, &n) < 1e-6, "{a:?}");
        }
    }

    #[test]
    fn kinks_have_zero_derivative_and_lengths_are_checked() {
        let y = [0.0f32, 6.0, 3.0, 7.0];
        let mut g = [1.0f32; 4];
        activation_backward_f32(Activation::Relu6, &y, &mut g).unwrap();
        assert_eq!(g, [0.0, 0.0, 1.0, 0.0]);
        let mut g = [1.0f32; 4];
        activation_backward_f32(Activation::Relu, &y, &mut g).unwrap();
        assert_eq!(g, [0.0, 1.0, 1.0, 1.0]);
        let r = activation_backward_f32(Activation::Relu, &y, &mut g[..3]);
        assert_eq!(
            r,
            Err(Error::LengthMismatch {
                expected: 4,
                actual: 3
            })
        );
    }
}
