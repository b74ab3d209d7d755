//! Softmax cross-entropy from logits, averaged over the batch: mote-core's per-sample loss
//! (stable log-sum-exp with the row maximum subtracted) on each row, its gradient divided by
//! the batch size.

use anyhow::{bail, Result};
use mote_core::train::softmax_cross_entropy_f32;

/// Mean cross-entropy of `logits` (`n` rows of `classes`) against `labels`, its gradient with
/// respect to the logits (`(softmax - onehot) / n`), and how many rows have their largest
/// logit at the label (ties go to the lowest index).
///
/// A row with a non-finite logit (or loss) makes the mean loss NaN and its gradient row NaN,
/// so the divergence propagates to whoever checks the loss (as mote-core's trainer refuses
/// such a sample) instead of being hidden.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
) -> Result<(f32, Vec<f32>, usize)> {
    if classes == 0 || logits.len() != labels.len() * classes {
        bail!(
            "{} logits for {} labels of {classes} classes",
            logits.len(),
            labels.len()
        );
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        bail!("label {bad} is out of range for {classes} classes");
    }
    let n = labels.len().max(1) as f32;
    let mut grad = vec![0.0f32; logits.len()];
    let mut loss = 0.0f64;
    let mut correct = 0;
    for ((row, g), &label) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let label = label as usize;
        match softmax_cross_entropy_f32(row, label, g) {
            Ok(l) => {
                loss += f64::from(l);
                g.iter_mut().for_each(|g| *g /= n);
            }
            // The label and lengths were checked above, so this is a non-finite row.
            Err(_) => {
                loss = f64::NAN;
                g.fill(f32::NAN);
            }
        }
        if argmax(row) == label {
            correct += 1;
        }
    }
    Ok(((loss / f64::from(n)) as f32, grad, correct))
}

/// Index of the largest value (the first one on ties).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_stable_and_its_gradient_sums_to_zero() {
        let logits = [1000.0, 0.0, -1000.0, 1.0, 2.0, 3.0];
        let (loss, grad, correct) = softmax_cross_entropy(&logits, &[0, 2], 3).unwrap();
        let want = (0.0 + ((-2.0f64).exp() + (-1.0f64).exp() + 1.0).ln()) / 2.0;
        assert!((f64::from(loss) - want).abs() < 1e-6, "{loss} {want}");
        assert_eq!(correct, 2);
        for row in grad.chunks(3) {
            assert!(row.iter().sum::<f32>().abs() < 1e-7);
        }
        assert!(softmax_cross_entropy(&logits, &[0, 3], 3).is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let logits = [0.3, -1.2, 2.0, 0.7, 0.1, -0.4, 1.5, 1.4];
        let labels = [2, 0];
        let (_, grad, _) = softmax_cross_entropy(&logits, &labels, 4).unwrap();
        let h = 1e-3;
        for i in 0..logits.len() {
            let at = |d: f32| {
                let mut l = logits;
                l[i] += d;
                f64::from(softmax_cross_entropy(&l, &labels, 4).unwrap().0)
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(grad[i])).abs() < 1e-4,
                "{i}: {numeric} {}",
                grad[i]
            );
        }
    }
}
