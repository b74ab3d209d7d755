//! Datasets for training and evaluation: an in-memory [`Dataset`], its splits, shuffling,
//! batches and [`Normalization`], and readers for the formats small-model datasets come in.
//!
//! | format | reader | notes |
//! |---|---|---|
//! | CSV (optionally `.gz`) | [`read_csv`], [`parse_csv`] | features then a label column (selectable), header auto-detected |
//! | NumPy `.npy` | [`read_npy`], [`read_npy_pair`] | C order; `u1 i1 i2 i4 i8 f4 f8`, either byte order |
//! | NumPy `.npz` | [`read_npz`], [`read_npz_arrays`] | stored or deflated members, arrays `x`/`y` by default |
//! | IDX (MNIST, optionally `.gz`) | [`read_idx`], [`read_idx_pair`] | images + labels files |
//! | ARFF relational | [`read_arff`], [`parse_arff`] | multivariate time series (UEA archive, e.g. BasicMotions) |
//!
//! Two datasets are bundled in the repository's `data/` folder: [`digits`] (with the fixed
//! held-out split [`digits_split`]) and [`basic_motions`].
//!
//! Every sample is stored NHWC without the N: images are `[height, width, channels]` and
//! time series `[1, time, channels]`, so a 1-D convolution is a 2-D convolution of height 1.
//! Every reader's error names the file and, where it applies, the line, record or array.

mod arff;
mod array;
mod bundled;
mod csv;
mod dataset;
mod idx;
mod normalize;
mod npy;
mod pipeline;
mod series;
mod source;
mod zip;

pub use arff::{parse_arff, read_arff};
pub use array::{Array, ArrayData};
pub use bundled::{
    basic_motions, data_dir, digits, digits_split, DATA_DIR_ENV, DIGITS_SPLIT_SEED,
    DIGITS_TEST_FRACTION,
};
pub use csv::{parse_csv, read_csv, CsvOptions, Header, LabelColumn};
pub use dataset::{Batch, Batches, Dataset};
pub use idx::{parse_idx, read_idx, read_idx_pair};
pub use normalize::Normalization;
pub use npy::{parse_npy, read_npy, read_npy_pair, read_npz, read_npz_arrays, NpzOptions};
pub use pipeline::{DataOptions, Splits};
pub use series::{row_roles, RowRole, WindowLabel, Windowing};
pub use source::read_file_source;

use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;

/// Reads a whole file, decompressing it when its name ends in `.gz`.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
    {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a valid gzip file", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}
