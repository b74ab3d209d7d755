//! What `--data PATH` (and `--test PATH`) names, read by content and extension: a folder in
//! the UEA layout (`<name>_TRAIN.arff` and `<name>_TEST.arff`, like the bundled
//! `data/basic-motions`), ARFF, `.npz`, a `.npy` features file with its labels beside it, an
//! IDX images file (recognised by its magic bytes, whatever its name) with its labels file, or
//! CSV.

use super::{read_arff, read_csv, read_file, read_idx_pair, read_npy_pair, read_npz};
use super::{CsvOptions, Dataset, NpzOptions};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Reads one data file, by its extension or (IDX) its first bytes.
pub fn read_file_source(path: &Path) -> Result<Dataset> {
    match format(path)? {
        Format::Arff => read_arff(path),
        Format::Npz => read_npz(path, &NpzOptions::default()),
        Format::Npy => read_npy_pair(path, beside(path, &npy_label_names(path))?, None),
        Format::Idx => read_idx_pair(path, beside(path, &idx_label_names(path))?, None),
        Format::Csv => read_csv(path, &CsvOptions::default()),
    }
}

/// The formats a data file may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Arff,
    Npz,
    Npy,
    Idx,
    Csv,
}

/// `path`'s format: by extension (`.gz` aside), IDX by its first bytes, else CSV.
fn format(path: &Path) -> Result<Format> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    Ok(if name.ends_with(".arff") {
        Format::Arff
    } else if name.ends_with(".npz") {
        Format::Npz
    } else if name.ends_with(".npy") {
        Format::Npy
    } else if is_idx(path)? {
        Format::Idx
    } else {
        Format::Csv
    })
}

/// Whether `path` is read as CSV (see [`read_file_source`]).
pub(super) fn is_csv(path: &Path) -> Result<bool> {
    Ok(format(path)? == Format::Csv)
}

/// Whether the file starts like IDX: two zero bytes, a type code, then 1 to 4 dimensions.
fn is_idx(path: &Path) -> Result<bool> {
    let bytes = read_file(path)?;
    Ok(matches!(bytes.get(..4), Some(&[0, 0, t, rank])
        if matches!(t, 0x08 | 0x09 | 0x0B..=0x0E) && (1..=4).contains(&rank)))
}

/// The labels file that goes with IDX images: MNIST's naming (`images` -> `labels`, `idx3` ->
/// `idx1`).
fn idx_label_names(path: &Path) -> Vec<String> {
    let name = file_name(path);
    let labels = name.replace("images", "labels").replace("idx3", "idx1");
    vec![labels]
}

/// The labels files that may go with `x.npy`: `<stem>_labels.npy`, `<stem>_y.npy`, and `y.npy`
/// for a features file named `x.npy`.
fn npy_label_names(path: &Path) -> Vec<String> {
    let name = file_name(path);
    let stem = name.strip_suffix(".npy").unwrap_or(&name);
    let mut names = vec![format!("{stem}_labels.npy"), format!("{stem}_y.npy")];
    match stem {
        "x" => names.push("y.npy".into()),
        "X" => names.push("Y.npy".into()),
        _ => {}
    }
    names
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The first of `names` that exists in `path`'s folder.
fn beside(path: &Path, names: &[String]) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{}: its labels file is missing; looked for {} beside it",
                path.display(),
                names.join(", ")
            )
        })
}

/// A UEA-archive folder's `<name>_TRAIN.arff` and `<name>_TEST.arff`.
pub(super) fn uea_pair(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in &names {
        if let Some(stem) = name.strip_suffix("_TRAIN.arff") {
            let test = format!("{stem}_TEST.arff");
            if names.contains(&test) {
                return Ok((dir.join(name), dir.join(test)));
            }
        }
    }
    bail!(
        "{} is a folder without a `<name>_TRAIN.arff` and `<name>_TEST.arff` pair; give a data \
         file (CSV, ARFF, .npy, .npz or IDX) instead",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mote-source-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn idx_is_known_by_its_bytes_and_csv_by_default_whatever_the_name() {
        let dir = temp_dir("idx");
        // Two 2x2 images and their labels, named without "idx".
        let mut images = vec![0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
        images.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7]);
        std::fs::write(dir.join("train-images"), &images).unwrap();
        std::fs::write(dir.join("train-labels"), [0, 0, 0x08, 1, 0, 0, 0, 2, 1, 0]).unwrap();
        let set = read_file_source(&dir.join("train-images")).unwrap();
        assert_eq!((set.len(), set.feature_shape.clone()), (2, vec![2, 2, 1]));
        // A CSV whose path says "idx" is still CSV.
        let csv = dir.join("idx_sensor.csv");
        std::fs::write(&csv, "a,b,label\n1,2,0\n3,4,1\n5,6,0\n").unwrap();
        assert_eq!(read_file_source(&csv).unwrap().len(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_uea_folder_gives_its_own_split() {
        let dir = super::super::data_dir().join("basic-motions");
        let path = dir.to_string_lossy();
        let splits = super::super::DataOptions::default()
            .load(&path, None)
            .unwrap();
        let train = splits.train.len() + splits.validation.len();
        assert_eq!((train, splits.test.len()), (40, 40));
        let empty = temp_dir("empty");
        let e = super::super::DataOptions::default()
            .load(&empty.to_string_lossy(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("_TRAIN.arff"), "{e}");
        std::fs::remove_dir_all(&empty).ok();
    }
}
