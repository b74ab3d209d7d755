//! ReLU, ReLU6 and softmax, as standalone layers or fused into a layer's output: the forward
//! pass in place, and a backward pass that needs only the activated output. These are the
//! definitions both trainers use (the host's batched engine calls them too).
//!
//! `y = clamp(z, lo, hi)` has derivative 1 where `lo < y < hi` and 0 elsewhere, so the output
//! alone decides it; the pre-activation value is never kept. At the kinks (`y = 0`, and
//! `y = 6` for ReLU6) the derivative is taken as 0.
//!
//! NaN propagates through the forward pass (a NaN input gives a NaN output), so a diverging
//! network shows up as a non-finite loss and the step is refused rather than the NaN being
//! silently turned into a value. The backward pass zeroes the gradient wherever the output is
//! NaN: the loss has already been refused by then.

use crate::ops::Activation;
use crate::Error;

/// `max(x, 0)`; NaN stays NaN.
#[inline]
pub fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// `min(max(x, 0), 6)`; NaN stays NaN.
#[inline]
pub fn relu6(x: f32) -> f32 {
    x.clamp(0.0, 6.0)
}

/// Derivative of [`relu`] read from its output `y`: 1 where `y > 0`, else 0 (the kink and NaN
/// included).
#[inline]
pub fn relu_derivative(y: f32) -> f32 {
    if y > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Derivative of [`relu6`] read from its output `y`: 1 where `0 < y < 6`, else 0 (both kinks
/// and NaN included).
#[inline]
pub fn relu6_derivative(y: f32) -> f32 {
    if y > 0.0 && y < 6.0 {
        1.0
    } else {
        0.0
    }
}

/// `activation` applied to one value.
#[inline]
pub fn activate(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::None => x,
        Activation::Relu => relu(x),
        Activation::Relu6 => relu6(x),
    }
}

/// The derivative of `activation` read from its output `y`.
#[inline]
pub fn derivative(activation: Activation, y: f32) -> f32 {
    match activation {
        Activation::None => 1.0,
        Activation::Relu => relu_derivative(y),
        Activation::Relu6 => relu6_derivative(y),
    }
}

/// Applies `activation` to `data` in place ([`relu`], [`relu6`] or nothing).
pub fn activation_f32(activation: Activation, data: &mut [f32]) {
    // One loop per activation, so the match is not inside it and each loop vectorises.
    match activation {
        Activation::None => {}
        Activation::Relu => data.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::Relu6 => data.iter_mut().for_each(|v| *v = relu6(*v)),
    }
}

/// `g` where `keep`, else +0.0, without a branch: which elements pass is as random as the data,
/// so a branch would be mispredicted about half the time in the host's batched loops.
#[inline]
fn mask(g: f32, keep: bool) -> f32 {
    f32::from_bits(g.to_bits() & u32::from(keep).wrapping_neg())
}

/// Turns `grad`, the gradient with respect to an activated `output`, into the gradient with
/// respect to the value before the activation, in place: multiplies each element by
/// [`derivative`] (keeps it where the activation passes its input through, zeroes it
/// elsewhere).
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
    match activation {
        Activation::None => {}
        Activation::Relu => {
            for (g, &y) in grad.iter_mut().zip(output) {
                *g = mask(*g, y > 0.0);
            }
        }
        Activation::Relu6 => {
            for (g, &y) in grad.iter_mut().zip(output) {
                *g = mask(*g, y > 0.0 && y < 6.0);
            }
        }
    }
    Ok(())
}

/// Backward pass of softmax over rows of `depth` values
/// ([`softmax_f32`](crate::ops::softmax::softmax_f32) with beta 1), in place: turns `grad`,
/// the gradient with respect to the softmax's `output`, into the gradient with respect to its
/// input, `dx = y * (dy - sum(dy * y))` per row.
pub fn softmax_backward_f32(output: &[f32], grad: &mut [f32], depth: usize) -> Result<(), Error> {
    if output.len() != grad.len() {
        return Err(Error::LengthMismatch {
            expected: output.len(),
            actual: grad.len(),
        });
    }
    if depth == 0 || output.len() % depth != 0 {
        return Err(Error::InvalidParameter {
            what: why!("softmax backward depth (must divide the length and be > 0)"),
        });
    }
    for (d, y) in grad.chunks_exact_mut(depth).zip(output.chunks_exact(depth)) {
        let dot: f32 = d.iter().zip(y).map(|(d, y)| d * y).sum();
        d.iter_mut().zip(y).for_each(|(d, y)| *d = y * (*d - dot));
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

    #[test]
    fn nan_propagates_forward_and_the_slice_functions_agree_with_the_scalar_ones() {
        let special = [
            f32::NAN,
            -f32::NAN,
            0.0,
            -0.0,
            6.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            5.999_999_5,
            6.000_001,
            -1e-30,
        ];
        let mut rng = Rng(0x7a7);
        let mut z: Vec<f32> = rng.f32s(64).into_iter().map(|v| v * 8.0).collect();
        z.extend_from_slice(&special);
        for a in [Activation::None, Activation::Relu, Activation::Relu6] {
            let mut y = z.clone();
            activation_f32(a, &mut y);
            for (&yi, &zi) in y.iter().zip(&z) {
                assert_eq!(yi.to_bits(), activate(a, zi).to_bits(), "{a:?} {zi}");
                assert_eq!(yi.is_nan(), zi.is_nan(), "{a:?} {zi}");
            }
            let r = rng.f32s(z.len());
            let mut g = r.clone();
            activation_backward_f32(a, &y, &mut g).unwrap();
            for ((&gi, &ri), &yi) in g.iter().zip(&r).zip(&y) {
                assert_eq!(gi, ri * derivative(a, yi), "{a:?} {yi}");
            }
        }
        assert_eq!(relu(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(relu_derivative(f32::INFINITY), 1.0);
        assert_eq!(relu6_derivative(f32::NAN), 0.0);
    }

    #[test]
    fn softmax_backward_matches_finite_differences() {
        let mut rng = Rng(0x50f7);
        for _ in 0..30 {
            let depth = rng.size(1, 9);
            let rows = rng.size(1, 3);
            let z: Vec<f32> = rng
                .f32s(rows * depth)
                .into_iter()
                .map(|v| v * 3.0)
                .collect();
            let r = rng.f32s(z.len());
            let mut y = vec![0.0f32; z.len()];
            crate::ops::softmax::softmax_f32(1.0, &z, &mut y, depth).unwrap();
            let mut g = r.clone();
            softmax_backward_f32(&y, &mut g, depth).unwrap();
            let r64 = to64(&r);
            let n = numeric_grad(&to64(&z), 1e-6, |v| {
                let mut total = 0.0;
                for (row, rr) in v.chunks(depth).zip(r64.chunks(depth)) {
                    let max = row.iter().copied().fold(f64::MIN, f64::max);
                    let sum: f64 = row.iter().map(|&x| (x - max).exp()).sum();
                    total += row
                        .iter()
                        .zip(rr)
                        .map(|(&x, w)| (x - max).exp() / sum * w)
                        .sum::<f64>();
                }
                total
            });
            assert!(max_rel_err(&g, &n) < 1e-4, "{z:?}");
        }
        let mut g = [1.0f32; 4];
        assert!(softmax_backward_f32(&[0.5; 4], &mut g, 0).is_err());
        assert!(softmax_backward_f32(&[0.5; 4], &mut g, 3).is_err());
        assert!(softmax_backward_f32(&[0.5; 3], &mut g, 1).is_err());
    }
}
