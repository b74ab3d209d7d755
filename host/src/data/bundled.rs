//! The datasets bundled in the repository's `data/` folder.

use super::{read_arff, read_csv, CsvOptions, Dataset, Header, LabelColumn};
use anyhow::{ensure, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable that, when set (and not empty), names the folder holding the
/// bundled datasets (`digits/`, `basic-motions/`) instead of the workspace's `data/`.
pub const DATA_DIR_ENV: &str = "MOTE_DATA_DIR";

/// The seed of [`digits_split`].
pub const DIGITS_SPLIT_SEED: u64 = 0x5EED;

/// The fraction of the digits that [`digits_split`] holds out for testing.
pub const DIGITS_TEST_FRACTION: f64 = 0.2;

/// The folder holding the bundled datasets: `$MOTE_DATA_DIR` if set, else the workspace's
/// `data/` folder (found from this crate's source location at build time).
pub fn data_dir() -> PathBuf {
    resolve_data_dir(std::env::var_os(DATA_DIR_ENV))
}

fn resolve_data_dir(variable: Option<OsString>) -> PathBuf {
    match variable {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")),
    }
}

fn hint<T>(dir: &Path, result: Result<T>) -> Result<T> {
    result.with_context(|| {
        format!(
            "loading a bundled dataset from {} (set {DATA_DIR_ENV} to the folder holding digits/ and basic-motions/)",
            dir.display()
        )
    })
}

/// The 8x8 handwritten digits (`data/digits/digits.csv.gz`, UCI "Optical Recognition of
/// Handwritten Digits", the copy scikit-learn ships): 1,797 samples of shape `[8, 8, 1]`, raw
/// pixel values 0..16 (not normalized), labels 0..9 named `"0"` to `"9"`.
pub fn digits() -> Result<Dataset> {
    digits_in(&data_dir())
}

fn digits_in(dir: &Path) -> Result<Dataset> {
    let path = dir.join("digits").join("digits.csv.gz");
    let options = CsvOptions {
        label_column: LabelColumn::Last,
        header: Header::Absent,
        feature_shape: Some(vec![8, 8, 1]),
        class_names: Some((0..10).map(|d| d.to_string()).collect()),
        ..CsvOptions::default()
    };
    hint(dir, read_csv(path, &options))
}

/// The digits' fixed split, `(train, test)`: the held-out 20% that every test and benchmark
/// of mote evaluates on. It is [`Dataset::split`] with [`DIGITS_TEST_FRACTION`] and
/// [`DIGITS_SPLIT_SEED`]: stratified, 1,438 training and 359 test samples, each half in file
/// order, identical on every machine.
pub fn digits_split() -> Result<(Dataset, Dataset)> {
    Ok(digits()?.split(DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED))
}

/// BasicMotions (`data/basic-motions/`, UEA multivariate time-series archive): smartwatch
/// accelerometer and gyroscope, `(train, test)` of 40 recordings each as the archive splits
/// them, samples of shape `[1, 100, 6]` (100 steps at 10 Hz, 6 channels), 4 classes named as in
/// the files: `Standing`, `Running`, `Walking`, `Badminton`.
pub fn basic_motions() -> Result<(Dataset, Dataset)> {
    let root = data_dir();
    let dir = root.join("basic-motions");
    let train = hint(&root, read_arff(dir.join("BasicMotions_TRAIN.arff")))?;
    let test = hint(&root, read_arff(dir.join("BasicMotions_TEST.arff")))?;
    ensure!(
        train.class_names == test.class_names && train.feature_shape == test.feature_shape,
        "BasicMotions: the training and test files declare different classes or shapes"
    );
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_variable_overrides_the_workspace_folder() {
        assert_eq!(
            resolve_data_dir(Some("/elsewhere".into())),
            PathBuf::from("/elsewhere")
        );
        for unset in [None, Some(OsString::new())] {
            assert!(resolve_data_dir(unset).ends_with("host/../data"));
        }
    }

    #[test]
    fn digits_load_from_any_folder_and_say_where_they_looked() {
        let dir = std::env::temp_dir().join(format!("mote-bundled-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("digits")).unwrap();
        let err = format!("{:#}", digits_in(&dir).unwrap_err());
        assert!(err.starts_with(&format!("loading a bundled dataset from {}", dir.display())));
        assert!(err.contains("set MOTE_DATA_DIR"), "{err}");

        let row = |label: u32| {
            let pixels: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
            format!("{},{label}\n", pixels.join(","))
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(format!("{}{}", row(9), row(0)).as_bytes())
            .unwrap();
        std::fs::write(dir.join("digits/digits.csv.gz"), gz.finish().unwrap()).unwrap();
        let d = digits_in(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            (d.len(), d.feature_shape.clone(), d.labels.clone()),
            (2, vec![8, 8, 1], vec![9, 0])
        );
        assert_eq!(d.class_names.len(), 10);
        assert_eq!(d.sample(0).0[16], 16.0);
    }
}
