//! Any bytes, through every data loader: CSV (a sample shape and the label column varied by
//! the first bytes), `.npy`, `.npz` (through a temporary file: the archive reader takes a
//! path), IDX and ARFF. Each returns data or an error; a panic, overflow or out-of-bounds
//! access is a finding.
//!
//! CSV and `.npz` get class names: without them a reader names every class up to the largest
//! label, so one label of 500,000,000 allocates gigabytes (a finding of this target, left to
//! the data readers' owner; `tests/tests/import_hardening.rs` holds its ignored test). Drop
//! the names here once that is fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_host::data::{
    parse_arff, parse_csv, parse_idx, parse_npy, read_npz, read_npz_arrays, CsvOptions,
    LabelColumn, NpzOptions,
};
use std::path::PathBuf;
use std::sync::OnceLock;

/// One file per process, written for each archive-like input and removed after it.
fn npz_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("mote-fuzz-{}.npz", std::process::id())))
}

/// Half the inputs with class names, half numbered by the readers (capped at 65,536 classes).
fn class_names(named: bool) -> Option<Vec<String>> {
    named.then(|| (0..10).map(|c| format!("class{c}")).collect())
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = (
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    );
    let csv = CsvOptions {
        label_column: match a % 3 {
            0 => LabelColumn::Last,
            1 => LabelColumn::Index(usize::from(b % 4)),
            _ => LabelColumn::Name("label".to_string()),
        },
        feature_shape: (a & 4 != 0).then(|| vec![usize::from(a % 5), usize::from(b % 7)]),
        class_names: class_names(a & 8 != 0),
        ..CsvOptions::default()
    };
    let _ = parse_csv(data, "fuzz.csv", &csv);
    let _ = parse_npy(data, "fuzz.npy");
    let _ = parse_idx(data, "fuzz.idx");
    let _ = parse_arff(data, "fuzz.arff");
    // Only zip-like inputs reach the file system: the rest would fail at the magic anyway.
    if data.starts_with(b"PK") {
        let path = npz_path();
        std::fs::write(path, data).expect("the temporary directory is writable");
        let _ = read_npz_arrays(path);
        let npz = NpzOptions {
            class_names: class_names(a & 8 != 0),
            ..NpzOptions::default()
        };
        let _ = read_npz(path, &npz);
        // Removed at once: a run that ends here leaves nothing in the temporary directory.
        let _ = std::fs::remove_file(path);
    }
});
