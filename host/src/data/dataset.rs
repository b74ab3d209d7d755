//! The in-memory [`Dataset`]: samples, labels, class names; subsets, splits, shuffling, batches.

use anyhow::{bail, ensure, Result};

/// A labelled dataset held in memory.
///
/// Sample `i`'s features are `features[i * sample_len() .. (i + 1) * sample_len()]`, laid out
/// row-major in `feature_shape` (NHWC without the N: `[height, width, channels]` for images,
/// `[1, time, channels]` for time series). Its label is `labels[i]`, an index into
/// `class_names`. [`Dataset::new`] checks that these agree; the fields are public for reading
/// and for in-place transforms such as [`Normalization::apply`](super::Normalization::apply).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// All samples' features, one after the other, each row-major in `feature_shape`.
    pub features: Vec<f32>,
    /// The shape of one sample, e.g. `[8, 8, 1]` or `[1, 100, 6]`.
    pub feature_shape: Vec<usize>,
    /// One label per sample, each below `class_names.len()`.
    pub labels: Vec<u32>,
    /// The classes' names, indexed by label.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// A dataset from its parts, after checking that the shape has no zero dimension, that
    /// there are `labels.len()` samples' worth of features, and that every label names a class.
    pub fn new(
        features: Vec<f32>,
        feature_shape: Vec<usize>,
        labels: Vec<u32>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        ensure!(
            !feature_shape.is_empty() && feature_shape.iter().all(|&d| d > 0),
            "feature shape {feature_shape:?} must have at least one dimension and none of size 0"
        );
        let sample_len: usize = feature_shape.iter().product();
        ensure!(
            features.len() == labels.len() * sample_len,
            "{} feature values do not make {} samples of shape {feature_shape:?} ({sample_len} values each)",
            features.len(),
            labels.len()
        );
        if let Some((i, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= class_names.len())
        {
            bail!(
                "sample {i} has label {label}, but there are {} classes",
                class_names.len()
            );
        }
        Ok(Self {
            features,
            feature_shape,
            labels,
            class_names,
        })
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of values in one sample (the product of `feature_shape`).
    pub fn sample_len(&self) -> usize {
        self.feature_shape.iter().product()
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Sample `i`: its features and its label.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn sample(&self, i: usize) -> (&[f32], u32) {
        let n = self.sample_len();
        (&self.features[i * n..(i + 1) * n], self.labels[i])
    }

    /// How many samples each class has, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// The samples at `indices`, in that order (an index may repeat), with the same shape and
    /// classes.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.sample_len();
        let mut features = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(&self.features[i * n..(i + 1) * n]);
            labels.push(self.labels[i]);
        }
        Dataset {
            features,
            feature_shape: self.feature_shape.clone(),
            labels,
            class_names: self.class_names.clone(),
        }
    }

    /// A deterministic, stratified split into `(train, test)`, `test` holding
    /// `round(test_fraction * len())` samples.
    ///
    /// The rule, in integer arithmetic after that one rounding: each class gets
    /// `floor(total_test * class_count / len())` test samples, and the test samples still
    /// missing go one each to the classes with the largest remainders (ties to the lower
    /// label). Then, class by class in label order, one SplitMix64 stream seeded with `seed`
    /// shuffles the class's sample indices (Fisher-Yates) and the first ones go to `test`. Both
    /// halves keep the samples in their original order. The same data and seed give the same
    /// split on every machine.
    ///
    /// # Panics
    /// If `test_fraction` is not within `0.0..=1.0`.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        assert!(
            (0.0..=1.0).contains(&test_fraction),
            "test fraction {test_fraction} is not within 0..=1"
        );
        let n = self.len();
        let total_test = ((test_fraction * n as f64).round() as usize).min(n);
        let classes = self
            .labels
            .iter()
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0);
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (i, &label) in self.labels.iter().enumerate() {
            by_class[label as usize].push(i);
        }

        // Largest-remainder apportionment of `total_test` over the classes.
        let mut quota = vec![0usize; classes];
        let mut remainders = Vec::with_capacity(classes);
        for (c, members) in by_class.iter().enumerate() {
            let exact = total_test as u128 * members.len() as u128;
            quota[c] = (exact / n as u128) as usize;
            remainders.push((exact % n as u128, c));
        }
        let missing = total_test - quota.iter().sum::<usize>();
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, c) in remainders.iter().take(missing) {
            quota[c] += 1;
        }

        let mut rng = SplitMix64::new(seed);
        let mut train = Vec::with_capacity(n - total_test);
        let mut test = Vec::with_capacity(total_test);
        for (members, &q) in by_class.iter_mut().zip(&quota) {
            rng.shuffle(members);
            test.extend_from_slice(&members[..q]);
            train.extend_from_slice(&members[q..]);
        }
        train.sort_unstable();
        test.sort_unstable();
        (self.subset(&train), self.subset(&test))
    }

    /// Puts the samples in a random order drawn from `seed` (Fisher-Yates over SplitMix64);
    /// the same seed gives the same order on every machine.
    pub fn shuffle(&mut self, seed: u64) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        *self = self.subset(&order);
    }

    /// The samples in consecutive batches of `batch_size`, in order; the last batch holds the
    /// rest and may be smaller.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn batches(&self, batch_size: usize) -> Batches<'_> {
        assert!(batch_size > 0, "batch size must be at least 1");
        Batches {
            dataset: self,
            batch_size,
            next: 0,
        }
    }
}

/// Consecutive samples of a [`Dataset`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch<'a> {
    /// The samples' features, one after the other.
    pub features: &'a [f32],
    /// The samples' labels.
    pub labels: &'a [u32],
}

impl Batch<'_> {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch has no samples (never the case for one from [`Batches`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The iterator of [`Dataset::batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    dataset: &'a Dataset,
    batch_size: usize,
    next: usize,
}

impl<'a> Iterator for Batches<'a> {
    type Item = Batch<'a>;

    fn next(&mut self) -> Option<Batch<'a>> {
        let total = self.dataset.len();
        if self.next >= total {
            return None;
        }
        let start = self.next;
        let end = (start + self.batch_size).min(total);
        self.next = end;
        let n = self.dataset.sample_len();
        Some(Batch {
            features: &self.dataset.features[start * n..end * n],
            labels: &self.dataset.labels[start..end],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left =
            (self.dataset.len() - self.next.min(self.dataset.len())).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// The most classes a reader names by number when it is given no class names.
pub const MAX_NUMBERED_CLASSES: usize = 65_536;

/// The class names `"0"`, `"1"`, ... up to the largest label, for readers given no names; an
/// error for a label that would make more than [`MAX_NUMBERED_CLASSES`] of them (a column of
/// measurements taken for labels, or a corrupt file).
pub(crate) fn numbered_classes(labels: &[u32]) -> Result<Vec<String>> {
    let count = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    ensure!(
        count <= MAX_NUMBERED_CLASSES,
        "label {} would make {count} classes (at most {MAX_NUMBERED_CLASSES} are numbered \
         without class names): check which column holds the labels, or give the class names",
        count - 1
    );
    Ok((0..count).map(|c| c.to_string()).collect())
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast, portable generator; all the
/// dataset randomness (splits, shuffles) comes from it, so results do not depend on the
/// platform or on any other crate's version.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (no modulo bias: draws below `2^64 mod n` are rejected).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let reject_below = n.wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= reject_below {
                return x % n;
            }
        }
    }

    /// Fisher-Yates, from the last element down.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 0 of the reference C implementation.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let x = rng.below(5);
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn split_rounds_per_class_by_largest_remainder() {
        // Classes of 3, 3 and 4 samples, 50% test: 5 test samples, quotas 1.5, 1.5, 2 ->
        // floors 1, 1, 2 and the one missing goes to class 0 (equal remainders, lower label).
        let labels = vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 2];
        let features = (0..10).map(|i| i as f32).collect();
        let d = Dataset::new(features, vec![1], labels, numbered_classes(&[2]).unwrap()).unwrap();
        let (train, test) = d.split(0.5, 1);
        assert_eq!(test.class_counts(), vec![2, 1, 2]);
        assert_eq!(train.class_counts(), vec![1, 2, 2]);
        let mut all: Vec<f32> = train
            .features
            .iter()
            .chain(&test.features)
            .copied()
            .collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, (0..10).map(|i| i as f32).collect::<Vec<_>>());
    }
}
