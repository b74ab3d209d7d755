//! Softmax cross-entropy from logits: stable (log-sum-exp with the row maximum subtracted),
//! averaged over the batch.

use anyhow::{bail, Result};

/// Mean cross-entropy of `logits` (`n` rows of `classes`) against `labels`, its gradient with
/// respect to the logits (`(softmax - onehot) / n`), and how many rows have their largest
/// logit at the label (ties go to the lowest index).
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
    let n = labels.len().max(1) as f64;
    let mut grad = vec![0.0f32; logits.len()];
    let mut loss = 0.0f64;
    let mut correct = 0;
    for ((row, g), &label) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let label = label as usize;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&z| f64::from(z - max).exp()).sum();
        loss += sum.ln() - f64::from(row[label] - max);
        for (g, &z) in g.iter_mut().zip(row) {
            *g = (f64::from(z - max).exp() / sum / n) as f32;
        }
        g[label] -= (1.0 / n) as f32;
        if argmax(row) == label {
            correct += 1;
        }
    }
    Ok(((loss / n) as f32, grad, correct))
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
