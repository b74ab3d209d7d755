//! From a data source to the three splits training uses: read it (any format), name its
//! classes, lay each sample out (`shape`, channels first) or cut a long-format series into
//! windows, then split it: training, validation (early stopping, schedules) and test (reported
//! once), stratified and seeded. [`DataOptions`] holds every choice; `mote train` records it so
//! that export and eval read the data exactly as training did.

use super::series::{row_roles, RowRole, WindowLabel, Windowing};
use super::{basic_motions, digits, DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION};
use super::{read_arff, read_csv, read_file_source, CsvOptions, Dataset, LabelColumn};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a data source becomes samples and splits (a model file's `[data]` table, the
/// `mote train` flags, and what `training.json` records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataOptions {
    /// The layout of one sample as stored, row-major (e.g. `[64]` or `[8, 8, 1]`); `None`:
    /// as the format gives it (a CSV row is flat; the model reads a flat row of its input's
    /// size in its own shape).
    pub shape: Option<Vec<usize>>,
    /// Samples are stored channels first (`[channels, ...]`, as PyTorch writes them) and are
    /// transposed to mote's channels last. Needs `shape`.
    pub channels_first: bool,
    /// The model's input shape (`mote train` sets it): flat samples of its size, such as a
    /// CSV row, are read in it, so that normalization sees the model's channels.
    pub model_input: Option<Vec<usize>>,
    /// Long format: each row is one time step, and samples are windows of this many rows.
    pub window: Option<usize>,
    /// Rows from one window to the next (default: the window, no overlap).
    pub stride: Option<usize>,
    /// How a window is labelled from its rows.
    pub window_label: WindowLabel,
    /// Class names in label order: numeric labels get these names, named labels this order.
    pub classes: Option<Vec<String>>,
    /// CSV: the label column, `first`, `last`, a 0-based index or a header name.
    pub label_column: Option<String>,
    /// CSV: columns to skip (a timestamp, a subject id), by 0-based index or header name.
    pub ignore_columns: Vec<String>,
    /// Share of each class held out for testing when no test file is given.
    pub test: f64,
    /// Share of each class's training samples used to validate after each epoch.
    pub validation: f64,
    /// Seed of the random (stratified) splits.
    pub seed: u64,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            shape: None,
            channels_first: false,
            model_input: None,
            window: None,
            stride: None,
            window_label: WindowLabel::Majority,
            classes: None,
            label_column: None,
            ignore_columns: Vec::new(),
            test: DIGITS_TEST_FRACTION,
            validation: 0.15,
            seed: DIGITS_SPLIT_SEED,
        }
    }
}

/// Added to the seed for the validation split, so that it is drawn independently of the
/// test split.
const VALIDATION_SEED_OFFSET: u64 = 0x007A_11D8;

/// The three splits, not normalized.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training samples.
    pub train: Dataset,
    /// Validation samples (may be empty when `validation` is 0).
    pub validation: Dataset,
    /// Test samples.
    pub test: Dataset,
}

impl DataOptions {
    /// Whether these are the defaults (a model file without a `[data]` table).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the options against each other.
    pub fn validate(&self) -> Result<()> {
        for (name, share) in [("test", self.test), ("validation", self.validation)] {
            ensure!(
                (0.0..1.0).contains(&share),
                "the {name} share must be at least 0 and below 1, got {share}"
            );
        }
        if let Some(w) = self.windowing() {
            w.validate()?;
            ensure!(
                self.shape.is_none() && !self.channels_first,
                "`window` makes each sample [1, window, channels]: leave out `shape` and \
                 `channels_first`"
            );
        }
        ensure!(
            self.stride.is_none() || self.window.is_some(),
            "`stride` needs `window`"
        );
        ensure!(
            !self.channels_first || self.shape.as_ref().is_some_and(|s| s.len() >= 2),
            "`channels_first` needs `shape` with the channels first and at least one more axis"
        );
        if let Some(shape) = &self.shape {
            ensure!(
                !shape.is_empty() && shape.iter().all(|&d| d > 0),
                "`shape` {shape:?} needs at least one axis and no axis of size 0"
            );
        }
        if let Some(classes) = &self.classes {
            let mut sorted = classes.clone();
            sorted.sort();
            sorted.dedup();
            ensure!(
                !classes.is_empty() && sorted.len() == classes.len(),
                "class names {classes:?}: give at least one, each once"
            );
        }
        Ok(())
    }

    /// The windowing, if the source is a long-format series.
    pub fn windowing(&self) -> Option<Windowing> {
        self.window.map(|window| Windowing {
            window,
            stride: self.stride.unwrap_or(window),
            label: self.window_label,
        })
    }

    fn csv(&self) -> CsvOptions {
        CsvOptions {
            label_column: self
                .label_column
                .as_deref()
                .map_or(LabelColumn::Last, LabelColumn::parse),
            ignore_columns: self
                .ignore_columns
                .iter()
                .map(|c| LabelColumn::parse(c))
                .collect(),
            class_names: self.classes.clone(),
            ..CsvOptions::default()
        }
    }

    /// Every sample of one file, read, laid out or windowed (no split): what `mote eval`
    /// scores and what a fine-tuning recording holds.
    pub fn read_all(&self, path: &Path) -> Result<Dataset> {
        self.validate()?;
        let raw = self.read_file(path)?;
        self.samples(raw)
    }

    /// The three splits of `source`: a bundled set's name (`digits`, `motion`), a file, or a
    /// folder with its own training and test files; `test_file` overrides the test split.
    pub fn load(&self, source: &str, test_file: Option<&Path>) -> Result<Splits> {
        self.validate()?;
        let (all, given_test) = match source {
            "digits" => (self.named(digits()?)?, None),
            "motion" | "basic-motions" => {
                let (train, test) = basic_motions()?;
                (self.named(train)?, Some(self.named(test)?))
            }
            path => self.read_path(Path::new(path))?,
        };
        let given_test = match test_file {
            Some(t) => Some(self.read_file(t)?),
            None => given_test,
        };
        if let Some(test) = &given_test {
            ensure!(
                test.class_names == all.class_names,
                "the test data's classes {:?} differ from the training data's {:?}: give \
                 `classes` to name them in one order",
                test.class_names,
                all.class_names
            );
        }
        let splits = match self.windowing() {
            Some(_) => self.split_series(all, given_test)?,
            None => self.split_samples(all, given_test)?,
        };
        ensure!(
            !splits.train.is_empty(),
            "no training samples are left after the split"
        );
        ensure!(
            !splits.test.is_empty(),
            "the test split is empty: give more data, a larger `test` share or a test file"
        );
        Ok(splits)
    }

    /// A file, or a folder's training and test files.
    fn read_path(&self, path: &Path) -> Result<(Dataset, Option<Dataset>)> {
        if path.is_dir() {
            let (train, test) = super::source::uea_pair(path)?;
            let (train, test) = (read_arff(&train)?, read_arff(&test)?);
            return Ok((self.named(train)?, Some(self.named(test)?)));
        }
        Ok((self.read_file(path)?, None))
    }

    /// One file, its classes named.
    fn read_file(&self, path: &Path) -> Result<Dataset> {
        let set = if super::source::is_csv(path)? {
            read_csv(path, &self.csv())?
        } else {
            ensure!(
                self.label_column.is_none() && self.ignore_columns.is_empty(),
                "{}: `label_column` and `ignore_columns` are for CSV files",
                path.display()
            );
            read_file_source(path)?
        };
        self.named(set).with_context(|| path.display().to_string())
    }

    /// `set` with the class names of `classes`, if given.
    fn named(&self, set: Dataset) -> Result<Dataset> {
        match &self.classes {
            Some(names) => rename_classes(set, names),
            None => Ok(set),
        }
    }

    /// Samples laid out as the options say, or every window of a series.
    fn samples(&self, raw: Dataset) -> Result<Dataset> {
        match self.windowing() {
            Some(w) => windows(w, &raw, None),
            None => self.laid_out(raw),
        }
    }

    /// `set` reshaped to `shape`, and transposed to channels last if stored channels first;
    /// without `shape`, flat samples of the model input's size in that shape.
    fn laid_out(&self, mut set: Dataset) -> Result<Dataset> {
        let Some(shape) = &self.shape else {
            if let Some(input) = &self.model_input {
                let fits = input.iter().product::<usize>() == set.sample_len();
                if fits && set.feature_shape.len() == 1 {
                    set.feature_shape.clone_from(input);
                }
            }
            return Ok(set);
        };
        let len: usize = shape.iter().product();
        ensure!(
            len == set.sample_len(),
            "`shape` {shape:?} holds {len} values, but each sample has {} ({:?})",
            set.sample_len(),
            set.feature_shape
        );
        if self.channels_first {
            let (channels, positions) = (shape[0], len / shape[0]);
            for sample in set.features.chunks_exact_mut(len) {
                let stored = sample.to_vec();
                for (c, plane) in stored.chunks_exact(positions).enumerate() {
                    for (p, &v) in plane.iter().enumerate() {
                        sample[p * channels + c] = v;
                    }
                }
            }
            set.feature_shape = shape[1..].iter().copied().chain([channels]).collect();
        } else {
            set.feature_shape = shape.clone();
        }
        Ok(set)
    }

    /// Independent samples: a stratified random test split unless one is given, then a
    /// stratified random validation split of the training samples.
    fn split_samples(&self, all: Dataset, given_test: Option<Dataset>) -> Result<Splits> {
        let (train, test) = match given_test {
            Some(test) => (self.laid_out(all)?, self.laid_out(test)?),
            None => self.laid_out(all)?.split(self.test, self.seed),
        };
        let validation_seed = self.seed.wrapping_add(VALIDATION_SEED_OFFSET);
        let (train, validation) = train.split(self.validation, validation_seed);
        Ok(Splits {
            train,
            validation,
            test,
        })
    }

    /// A long-format series: rows split by [`row_roles`] (no row in two splits), then windowed.
    fn split_series(&self, all: Dataset, given_test: Option<Dataset>) -> Result<Splits> {
        let Some(w) = self.windowing() else {
            bail!("a series is split only to be windowed: `window` is missing");
        };
        let test_share = if given_test.is_some() { 0.0 } else { self.test };
        let roles = row_roles(&all.labels, self.validation, test_share);
        let test = match given_test {
            Some(test) => windows(w, &test, None)?,
            None => windows(w, &all, Some((&roles, RowRole::Test)))?,
        };
        Ok(Splits {
            train: windows(w, &all, Some((&roles, RowRole::Train)))?,
            validation: windows(w, &all, Some((&roles, RowRole::Validation)))?,
            test,
        })
    }
}

/// The windows of a series of rows whose rows all have the given role (all of them: `None`).
fn windows(w: Windowing, rows: &Dataset, roles: Option<(&[RowRole], RowRole)>) -> Result<Dataset> {
    ensure!(
        rows.feature_shape.len() == 1,
        "windows are cut from rows of channels (one row per time step), but the samples are {:?}",
        rows.feature_shape
    );
    w.apply(rows, roles)
}

/// `set` relabelled to `names`: numbered classes (`"0"`, `"1"`, ...) are renamed; named ones
/// are put in `names`' order.
fn rename_classes(mut set: Dataset, names: &[String]) -> Result<Dataset> {
    let numbered = set
        .class_names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == i.to_string());
    if numbered {
        ensure!(
            set.num_classes() <= names.len(),
            "the labels go up to {}, but {} class names are given: {names:?}",
            set.num_classes().saturating_sub(1),
            names.len()
        );
    } else {
        let mut map = Vec::with_capacity(set.num_classes());
        for name in &set.class_names {
            match names.iter().position(|n| n == name) {
                Some(i) => map.push(i as u32),
                None => bail!("the data has a class `{name}`, which is not in {names:?}"),
            }
        }
        set.labels.iter_mut().for_each(|l| *l = map[*l as usize]);
    }
    set.class_names = names.to_vec();
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: &[u32], names: &[&str], shape: Vec<usize>) -> Dataset {
        let len: usize = shape.iter().product();
        let features = (0..labels.len() * len).map(|v| v as f32).collect();
        let names = names.iter().map(|n| n.to_string()).collect();
        Dataset::new(features, shape, labels.to_vec(), names).unwrap()
    }

    #[test]
    fn channels_first_samples_become_channels_last() {
        let options = DataOptions {
            shape: Some(vec![2, 3]),
            channels_first: true,
            ..DataOptions::default()
        };
        let laid = options.laid_out(set(&[0], &["a"], vec![6])).unwrap();
        // Stored [c0: 0 1 2][c1: 3 4 5] -> positions [0 3][1 4][2 5].
        assert_eq!(laid.feature_shape, vec![3, 2]);
        assert_eq!(laid.features, vec![0., 3., 1., 4., 2., 5.]);
        let wrong = DataOptions {
            shape: Some(vec![4, 2]),
            ..DataOptions::default()
        };
        let e = wrong.laid_out(set(&[0], &["a"], vec![6])).unwrap_err();
        assert!(e.to_string().contains("8 values"), "{e}");
    }

    #[test]
    fn class_names_rename_numbers_and_reorder_names() {
        let names = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let numbered = rename_classes(set(&[0, 1], &["0", "1"], vec![1]), &names(&["x", "y", "z"]));
        assert_eq!(numbered.unwrap().class_names, names(&["x", "y", "z"]));
        let named = rename_classes(
            set(&[0, 1], &["run", "walk"], vec![1]),
            &names(&["walk", "run"]),
        );
        assert_eq!(named.unwrap().labels, vec![1, 0]);
        let missing = rename_classes(set(&[0], &["run"], vec![1]), &names(&["walk"]));
        assert!(missing.unwrap_err().to_string().contains("`run`"));
        let too_few = rename_classes(set(&[2], &["0", "1", "2"], vec![1]), &names(&["a"]));
        assert!(too_few.is_err());
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let check = |o: DataOptions, word: &str| {
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        };
        let d = DataOptions::default;
        check(
            DataOptions {
                test: f64::NAN,
                ..d()
            },
            "test share",
        );
        check(
            DataOptions {
                validation: 1.0,
                ..d()
            },
            "validation share",
        );
        check(
            DataOptions {
                window: Some(0),
                ..d()
            },
            "window",
        );
        check(
            DataOptions {
                stride: Some(2),
                ..d()
            },
            "`stride` needs",
        );
        check(
            DataOptions {
                channels_first: true,
                ..d()
            },
            "channels_first",
        );
        check(
            DataOptions {
                shape: Some(vec![0]),
                ..d()
            },
            "size 0",
        );
        let twice = Some(vec!["a".to_string(), "a".to_string()]);
        check(
            DataOptions {
                classes: twice,
                ..d()
            },
            "each once",
        );
    }

    #[test]
    fn three_splits_are_disjoint_stratified_and_seeded() {
        let labels: Vec<u32> = (0..200).map(|i| i % 4).collect();
        let all = set(&labels, &["a", "b", "c", "d"], vec![1]);
        let options = DataOptions::default();
        let s = options.split_samples(all.clone(), None).unwrap();
        assert_eq!(
            (s.train.len(), s.validation.len(), s.test.len()),
            (136, 24, 40)
        );
        assert_eq!(s.test.class_counts(), vec![10; 4]);
        let mut seen: Vec<f32> = [&s.train, &s.validation, &s.test]
            .iter()
            .flat_map(|d| d.features.clone())
            .collect();
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, all.features);
        let again = options.split_samples(all.clone(), None).unwrap();
        assert_eq!(again.validation, s.validation);
        let other = DataOptions { seed: 7, ..options };
        assert_ne!(other.split_samples(all, None).unwrap().test, s.test);
    }
}
