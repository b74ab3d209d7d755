//! Losses: each returns the loss of one sample and writes its gradient with respect to the
//! network's output.
//!
//! A non-finite loss is an [`Error::NonFinite`] and leaves the gradient buffer untouched, so a
//! bad sample (a NaN from a sensor) cannot reach the weights.
//!
//! Losses are per sample: a mini-batch's gradient is the sum of its samples' gradients, which
//! the optimizer step scales by `1 / batch` (the host's batched trainer divides each row's
//! gradient by the batch size instead; the same mean).

use super::check_finite;
use crate::Error;

/// Softmax cross-entropy from raw `logits` for the class `label`:
/// `loss = log(sum_j exp(z_j)) - z_label`, computed stably as
/// `log(sum_j exp(z_j - max)) - (z_label - max)`. Writes
/// `grad[j] = softmax(z)_j - [j == label]` (same length as `logits`).
pub fn softmax_cross_entropy_f32(
    logits: &[f32],
    label: usize,
    grad: &mut [f32],
) -> Result<f32, Error> {
    check_lengths(logits.len(), grad.len())?;
    if label >= logits.len() {
        return Err(Error::InvalidParameter {
            what: why!("softmax cross-entropy label (must be below the number of classes)"),
        });
    }
    check_finite(logits, why!("loss (the logits)"))?;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&z| libm::expf(z - max)).sum();
    // sum >= 1 (the maximum contributes exp(0)), so the log is finite.
    let loss = libm::logf(sum) - (logits[label] - max);
    if !loss.is_finite() {
        return Err(Error::NonFinite { what: why!("loss") });
    }
    for (j, (g, &z)) in grad.iter_mut().zip(logits).enumerate() {
        let p = libm::expf(z - max) / sum;
        *g = if j == label { p - 1.0 } else { p };
    }
    Ok(loss)
}

/// Mean squared error: `loss = mean((prediction - target)^2)`; writes
/// `grad = 2 (prediction - target) / len`.
pub fn mean_squared_error_f32(
    prediction: &[f32],
    target: &[f32],
    grad: &mut [f32],
) -> Result<f32, Error> {
    check_lengths(prediction.len(), target.len())?;
    check_lengths(prediction.len(), grad.len())?;
    let n = prediction.len() as f32;
    let sum: f32 = prediction
        .iter()
        .zip(target)
        .map(|(&p, &t)| (p - t) * (p - t))
        .sum();
    let loss = sum / n;
    if !loss.is_finite() {
        return Err(Error::NonFinite { what: why!("loss") });
    }
    for ((g, &p), &t) in grad.iter_mut().zip(prediction).zip(target) {
        *g = 2.0 * (p - t) / n;
    }
    Ok(loss)
}

fn check_lengths(expected: usize, actual: usize) -> Result<(), Error> {
    if expected == 0 {
        return Err(Error::InvalidParameter {
            what: why!("loss over zero outputs"),
        });
    }
    if expected != actual {
        return Err(Error::LengthMismatch { expected, actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testutil::*;
    use std::vec::Vec;

    fn ce64(z: &[f64], label: usize) -> f64 {
        let max = z.iter().copied().fold(f64::MIN, f64::max);
        let sum: f64 = z.iter().map(|&v| (v - max).exp()).sum();
        sum.ln() - (z[label] - max)
    }

    #[test]
    fn cross_entropy_matches_finite_differences() {
        let mut rng = Rng(0x10_55);
        for _ in 0..50 {
            let n = rng.size(1, 12);
            let scale = [1.0f32, 5.0, 30.0][rng.size(0, 2)];
            let z: Vec<f32> = rng.f32s(n).into_iter().map(|v| v * scale).collect();
            let label = rng.size(0, n - 1);
            let mut g = vec![0.0f32; n];
            let loss = softmax_cross_entropy_f32(&z, label, &mut g).unwrap();
            let z64 = to64(&z);
            let want = ce64(&z64, label);
            assert!((f64::from(loss) - want).abs() < 1e-5 * want.abs().max(1.0));
            let num = numeric_grad(&z64, 1e-6, |v| ce64(v, label));
            assert!(max_rel_err(&g, &num) < 1e-4, "{z:?}");
        }
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let mut g = [0.0f32; 3];
        let loss = softmax_cross_entropy_f32(&[1000.0, 0.0, -1000.0], 1, &mut g).unwrap();
        assert_eq!(loss, 1000.0);
        assert_eq!(g, [1.0, -1.0, 0.0]);
        let loss = softmax_cross_entropy_f32(&[1e30, 0.0, -1e30], 0, &mut g).unwrap();
        assert_eq!(loss, 0.0);
    }

    #[test]
    fn mse_matches_finite_differences() {
        let mut rng = Rng(0x3_5e);
        for _ in 0..30 {
            let n = rng.size(1, 10);
            let (p, t) = (rng.f32s(n), rng.f32s(n));
            let mut g = vec![0.0f32; n];
            let loss = mean_squared_error_f32(&p, &t, &mut g).unwrap();
            let t64 = to64(&t);
            let f = |v: &[f64]| {
                v.iter()
                    .zip(&t64)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    / n as f64
            };
            let p64 = to64(&p);
            assert!((f64::from(loss) - f(&p64)).abs() < 1e-6);
            assert!(max_rel_err(&g, &numeric_grad(&p64, 1e-6, f)) < 1e-5);
        }
    }

    #[test]
    fn non_finite_losses_and_bad_labels_are_errors_that_leave_the_gradient() {
        let mut g = [7.0f32; 2];
        let nan = softmax_cross_entropy_f32(&[f32::NAN, 1.0], 0, &mut g);
        assert_eq!(
            nan,
            Err(Error::NonFinite {
                what: why!("loss (the logits)")
            })
        );
        let inf = mean_squared_error_f32(&[f32::MAX, 0.0], &[-f32::MAX, 0.0], &mut g);
        assert_eq!(inf, Err(Error::NonFinite { what: why!("loss") }));
        assert_eq!(g, [7.0, 7.0]);
        let label = softmax_cross_entropy_f32(&[0.0, 1.0], 2, &mut g);
        assert!(matches!(label, Err(Error::InvalidParameter { .. })));
        let empty = mean_squared_error_f32(&[], &[], &mut []);
        assert!(matches!(empty, Err(Error::InvalidParameter { .. })));
    }
}
