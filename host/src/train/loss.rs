//! Softmax cross-entropy from logits, averaged over the batch: mote-core's per-sample loss
//! (stable log-sum-exp with the row maximum subtracted) on each row, its gradient divided by
//! the batch size; or, with class weights, the weighted mean and its gradient.

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
    weighted_softmax_cross_entropy(logits, labels, classes, &[])
}

/// [`softmax_cross_entropy`] with a weight per class (`class_weights[label]`; empty means all
/// 1): the loss is the weighted mean `sum(w_i * loss_i) / sum(w_i)` and row `i` of the
/// gradient is `w_i * (softmax - onehot) / sum(w)`. The count of correct rows is unweighted.
pub fn weighted_softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    class_weights: &[f32],
) -> Result<(f32, Vec<f32>, usize)> {
    if !class_weights.is_empty() && class_weights.len() != classes {
        bail!(
            "{} class weights for {classes} classes",
            class_weights.len()
        );
    }
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
    let weight = |label: u32| class_weights.get(label as usize).copied().unwrap_or(1.0);
    // Unweighted, this is the sample count, so the gradient is bit for bit `g / n`.
    let total: f32 = labels.iter().map(|&l| weight(l)).sum();
    let n = if labels.is_empty() { 1.0 } else { total };
    let mut grad = vec![0.0f32; logits.len()];
    let mut loss = 0.0f64;
    let mut correct = 0;
    for ((row, g), &label) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let w = weight(label);
        let label = label as usize;
        match softmax_cross_entropy_f32(row, label, g) {
            Ok(l) => {
                loss += f64::from(l) * f64::from(w);
                g.iter_mut().for_each(|g| *g = *g * w / n);
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
    fn class_weights_give_the_weighted_mean_and_its_gradient() {
        let logits = [0.3, -1.2, 2.0, 0.7, 0.1, -0.4, 1.5, 1.4, -0.2];
        let labels = [2, 0, 1];
        let w = [1.0, 3.0, 0.5];
        let (plain, g1, c1) = softmax_cross_entropy(&logits, &labels, 3).unwrap();
        let (weighted, gw, cw) = weighted_softmax_cross_entropy(&logits, &labels, 3, &w).unwrap();
        let (_, g3, _) = weighted_softmax_cross_entropy(&logits, &labels, 3, &[1.0; 3]).unwrap();
        assert_eq!(g1, g3, "weights of 1 change nothing");
        assert_eq!(c1, cw, "accuracy is unweighted");
        let per: Vec<f32> = (0..3)
            .map(|i| {
                let row = [logits[3 * i], logits[3 * i + 1], logits[3 * i + 2]];
                softmax_cross_entropy(&row, &labels[i..=i], 3).unwrap().0
            })
            .collect();
        let ws = [w[2], w[0], w[1]];
        let want = per.iter().zip(ws).map(|(l, w)| l * w).sum::<f32>() / ws.iter().sum::<f32>();
        assert!((weighted - want).abs() < 1e-6, "{weighted} {want}");
        assert!((plain - per.iter().sum::<f32>() / 3.0).abs() < 1e-6);
        let h = 1e-3;
        for i in 0..logits.len() {
            let at = |d: f32| {
                let mut l = logits;
                l[i] += d;
                f64::from(
                    weighted_softmax_cross_entropy(&l, &labels, 3, &w)
                        .unwrap()
                        .0,
                )
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(gw[i])).abs() < 1e-4,
                "{i}: {numeric} {}",
                gw[i]
            );
        }
        assert!(weighted_softmax_cross_entropy(&logits, &labels, 3, &[1.0, 2.0]).is_err());
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
