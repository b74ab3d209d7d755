//! Long-format time series, one row per time step as data loggers write them, cut into
//! windows: `window` consecutive rows every `stride` rows, each window one sample of shape
//! `[1, window, channels]`, labelled by its rows' labels (the majority, or the last one).
//!
//! Overlapping windows make a random split leak: a test window would share most of its rows
//! with training windows. So series are split by rows, before windowing: every class gives
//! its last rows to the test split and the rows before those to validation ([`row_roles`]),
//! and a window is kept only when all its rows have the same role.

use super::Dataset;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// How a window's label is chosen from its rows' labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowLabel {
    /// The most frequent label; a tie goes to the label of the latest of the tied rows.
    #[default]
    Majority,
    /// The last row's label (what a streaming classifier is asked at that moment).
    Last,
}

/// Windows over a long-format series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windowing {
    /// Rows per window (time steps per sample).
    pub window: usize,
    /// Rows from one window's start to the next one's.
    pub stride: usize,
    /// How each window is labelled.
    pub label: WindowLabel,
}

/// Which split a row of a long-format series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRole {
    /// Training rows.
    Train,
    /// Validation rows (early stopping, schedules).
    Validation,
    /// Test rows (reported once).
    Test,
}

impl Windowing {
    /// Checks that the window and the stride are at least one row.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.window >= 1, "the window must be at least 1 row");
        ensure!(self.stride >= 1, "the stride must be at least 1 row");
        Ok(())
    }

    /// The windows of `rows` (each sample one time step) whose rows all have `role` in
    /// `roles` (every window when `roles` is `None`), in time order, as samples of shape
    /// `[1, window, channels]` (`channels` = the rows' sample length).
    pub fn apply(&self, rows: &Dataset, roles: Option<(&[RowRole], RowRole)>) -> Result<Dataset> {
        self.validate()?;
        if let Some((roles, _)) = roles {
            ensure!(
                roles.len() == rows.len(),
                "{} row roles for {} rows",
                roles.len(),
                rows.len()
            );
        }
        let channels = rows.sample_len();
        let mut features = Vec::new();
        let mut labels = Vec::new();
        let mut start = 0;
        while start + self.window <= rows.len() {
            let span = start..start + self.window;
            start += self.stride;
            if let Some((roles, wanted)) = roles {
                if roles[span.clone()].iter().any(|&r| r != wanted) {
                    continue;
                }
            }
            features.extend_from_slice(&rows.features[span.start * channels..span.end * channels]);
            labels.push(self.label_of(&rows.labels[span]));
        }
        Dataset::new(
            features,
            vec![1, self.window, channels],
            labels,
            rows.class_names.clone(),
        )
    }

    fn label_of(&self, labels: &[u32]) -> u32 {
        let last = labels.last().copied().unwrap_or(0);
        match self.label {
            WindowLabel::Last => last,
            WindowLabel::Majority => {
                let count = |l: u32| labels.iter().filter(|&&x| x == l).count();
                // Scanning from the latest row, the first label with the top count wins ties.
                labels
                    .iter()
                    .rev()
                    .copied()
                    .fold((last, 0), |(best, n), l| match count(l) {
                        c if c > n => (l, c),
                        _ => (best, n),
                    })
                    .0
            }
        }
    }
}

/// Each row's split, class by class: of a class's rows in time order, the last
/// `round(test * count)` are test rows and the `round(validation * rest)` before them
/// validation rows; the others are training rows. Stratified by construction, and with no
/// randomness: when a class was recorded in several sessions, the last sessions are held out
/// whole.
pub fn row_roles(labels: &[u32], validation: f64, test: f64) -> Vec<RowRole> {
    let mut roles = vec![RowRole::Train; labels.len()];
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut rows_of = vec![Vec::new(); classes];
    for (row, &label) in labels.iter().enumerate() {
        rows_of[label as usize].push(row);
    }
    for rows in rows_of {
        let test_rows = ((test * rows.len() as f64).round() as usize).min(rows.len());
        let rest = rows.len() - test_rows;
        let validation_rows = ((validation * rest as f64).round() as usize).min(rest);
        for &row in &rows[rest..] {
            roles[row] = RowRole::Test;
        }
        for &row in &rows[rest - validation_rows..rest] {
            roles[row] = RowRole::Validation;
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series of `labels.len()` rows with two channels: row `i` is `[i, -i]`.
    fn series(labels: &[u32]) -> Dataset {
        let features = (0..labels.len())
            .flat_map(|i| [i as f32, -(i as f32)])
            .collect();
        let names = vec!["a".into(), "b".into(), "c".into()];
        Dataset::new(features, vec![2], labels.to_vec(), names).unwrap()
    }

    fn windowing(window: usize, stride: usize, label: WindowLabel) -> Windowing {
        Windowing {
            window,
            stride,
            label,
        }
    }

    #[test]
    fn windows_are_consecutive_rows_every_stride() {
        let rows = series(&[0; 10]);
        let w = windowing(4, 3, WindowLabel::Majority)
            .apply(&rows, None)
            .unwrap();
        // Starts 0, 3, 6; a window starting at 9 would run past the end.
        assert_eq!((w.len(), w.feature_shape.clone()), (3, vec![1, 4, 2]));
        let (second, _) = w.sample(1);
        assert_eq!(second, &[3.0, -3.0, 4.0, -4.0, 5.0, -5.0, 6.0, -6.0]);
        let short = windowing(11, 1, WindowLabel::Last)
            .apply(&rows, None)
            .unwrap();
        assert!(short.is_empty());
    }

    #[test]
    fn labels_by_majority_with_ties_to_the_latest_or_by_last_row() {
        let rows = series(&[0, 0, 1, 2, 2, 1]);
        let label = |w: usize, s: usize, l| windowing(w, s, l).apply(&rows, None).unwrap().labels;
        assert_eq!(label(3, 3, WindowLabel::Majority), vec![0, 2]);
        assert_eq!(label(3, 3, WindowLabel::Last), vec![1, 1]);
        // [0, 1] is a tie: the later row's label wins.
        assert_eq!(label(2, 1, WindowLabel::Majority), vec![0, 1, 2, 2, 1]);
    }

    #[test]
    fn row_roles_hold_out_the_end_of_every_class() {
        let labels = [0; 10].into_iter().chain([1; 20]).collect::<Vec<u32>>();
        let roles = row_roles(&labels, 0.25, 0.2);
        let count =
            |r, range: std::ops::Range<usize>| roles[range].iter().filter(|&&x| x == r).count();
        // 10 rows: 2 test, 2 validation (0.25 of 8), 6 train; 20 rows: 4, 4, 12.
        use RowRole::{Test, Validation};
        assert_eq!(&roles[6..10], &[Validation, Validation, Test, Test]);
        assert_eq!(count(RowRole::Test, 10..30), 4);
        assert_eq!(count(RowRole::Train, 10..30), 12);
        // Sessions of 10 rows, classes alternating: each class's last two sessions are test.
        let sessions: Vec<u32> = (0..200).map(|row| (row / 10 % 2) as u32).collect();
        let roles = row_roles(&sessions, 0.0, 0.2);
        let test_rows: Vec<usize> = (0..200).filter(|&r| roles[r] == RowRole::Test).collect();
        assert_eq!(test_rows, (160..200).collect::<Vec<_>>());
    }

    #[test]
    fn no_window_crosses_roles_so_splits_share_no_row() {
        let labels: Vec<u32> = (0..600).map(|i| (i / 37 % 3) as u32).collect();
        let rows = series(&labels);
        let roles = row_roles(&labels, 0.15, 0.2);
        let w = windowing(8, 3, WindowLabel::Majority);
        let rows_of = |role| {
            let set = w.apply(&rows, Some((&roles, role))).unwrap();
            let mut firsts: Vec<i64> = (0..set.len())
                .flat_map(|i| {
                    set.sample(i)
                        .0
                        .iter()
                        .step_by(2)
                        .map(|&v| v as i64)
                        .collect::<Vec<_>>()
                })
                .collect();
            firsts.sort();
            firsts.dedup();
            firsts
        };
        let (train, val, test) = (
            rows_of(RowRole::Train),
            rows_of(RowRole::Validation),
            rows_of(RowRole::Test),
        );
        assert!(!train.is_empty() && !val.is_empty() && !test.is_empty());
        assert!(train.iter().all(|r| !test.contains(r) && !val.contains(r)));
        assert!(val.iter().all(|r| !test.contains(r)));
    }
}
