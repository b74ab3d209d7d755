//! NumPy's `.npy` (one array) and `.npz` (a zip archive of `.npy` members) formats.
//!
//! A `.npy` file is the magic `\x93NUMPY`, a major and minor version byte, the header length
//! (u16 little-endian in version 1, u32 in versions 2 and 3), then the header: a Python dict
//! literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and a newline, then the data.

use super::array::dataset_from_arrays;
use super::{Array, ArrayData, Dataset};
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` file: an array of `uint8`, `int8`, `int16`, `int32`, `int64`, `float32` or
/// `float64` (either byte order) in C order.
///
/// Errors name the file: a bad magic number or version, a malformed header, another dtype,
/// Fortran order, data shorter (truncated) or longer than the shape says.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_npy(&bytes, &path.display().to_string())
}

/// Parses the bytes of a `.npy` file as [`read_npy`] does; `source` names it in errors.
pub fn parse_npy(bytes: &[u8], source: &str) -> Result<Array> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(MAGIC),
        "{source}: not a .npy file (it does not start with \\x93NUMPY)"
    );
    let (header_len, header_at) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "{source}: truncated .npy header");
            (
                u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
                12,
            )
        }
        major => bail!("{source}: unsupported .npy version {major}.{}", bytes[7]),
    };
    let data_at = header_at + header_len;
    ensure!(
        bytes.len() >= data_at,
        "{source}: truncated .npy file: the header needs {header_len} bytes, {} are left",
        bytes.len() - header_at
    );
    let header = std::str::from_utf8(&bytes[header_at..data_at])
        .with_context(|| format!("{source}: the .npy header is not text"))?;
    let (descr, fortran, shape) = parse_header(header)
        .with_context(|| format!("{source}: malformed .npy header `{}`", header.trim_end()))?;

    let (little, kind, size) = parse_descr(&descr).with_context(|| {
        format!(
            "{source}: unsupported dtype `{descr}` (supported: uint8, int8, int16, int32, int64, float32, float64)"
        )
    })?;
    ensure!(
        !fortran || shape.iter().filter(|&&d| d > 1).count() <= 1,
        "{source}: Fortran-order arrays are not supported (save np.ascontiguousarray(a))"
    );
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("{source}: shape {shape:?} is too large"))?;
    let expected = count
        .checked_mul(size)
        .with_context(|| format!("{source}: shape {shape:?} is too large"))?;
    let data = &bytes[data_at..];
    ensure!(
        data.len() >= expected,
        "{source}: truncated .npy file: shape {shape:?} of `{descr}` needs {expected} data bytes, only {} are there",
        data.len()
    );
    ensure!(
        data.len() == expected,
        "{source}: {} unexpected bytes after the {expected} data bytes of shape {shape:?} of `{descr}`",
        data.len() - expected
    );

    macro_rules! decode {
        ($variant:ident, $t:ty) => {
            ArrayData::$variant(
                data.chunks_exact(size)
                    .map(|c| {
                        let b = c.try_into().expect("item size");
                        if little {
                            <$t>::from_le_bytes(b)
                        } else {
                            <$t>::from_be_bytes(b)
                        }
                    })
                    .collect(),
            )
        };
    }
    let data = match (kind, size) {
        ('u', 1) => ArrayData::U8(data.to_vec()),
        ('i', 1) => decode!(I8, i8),
        ('i', 2) => decode!(I16, i16),
        ('i', 4) => decode!(I32, i32),
        ('i', 8) => decode!(I64, i64),
        ('f', 4) => decode!(F32, f32),
        ('f', 8) => decode!(F64, f64),
        _ => unreachable!("parse_descr accepts only these"),
    };
    Ok(Array { shape, data })
}

/// `(little-endian, kind, item size)` of a supported dtype string such as `<f4` or `|u1`.
fn parse_descr(descr: &str) -> Option<(bool, char, usize)> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    let kind = chars.next()?;
    let size: usize = chars.as_str().parse().ok()?;
    let supported = matches!((kind, size), ('u', 1) | ('i', 1 | 2 | 4 | 8) | ('f', 4 | 8));
    let little = match order {
        '<' => true,
        '>' => false,
        '|' => size == 1 || cfg!(target_endian = "little"),
        '=' => cfg!(target_endian = "little"),
        _ => return None,
    };
    supported.then_some((little, kind, size))
}

/// The `descr`, `fortran_order` and `shape` entries of a header dict.
fn parse_header(header: &str) -> Result<(String, bool, Vec<usize>)> {
    let value_of = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .or_else(|| header.find(&format!("\"{key}\"")))
            .with_context(|| format!("no `{key}` entry"))?;
        let rest = &header[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .with_context(|| format!("no `:` after `{key}`"))?;
        Ok(rest[colon + 1..].trim_start())
    };

    let descr_value = value_of("descr")?;
    let quote = descr_value
        .chars()
        .next()
        .filter(|&c| c == '\'' || c == '"')
        .context("`descr` is not a plain dtype string (structured dtypes are not supported)")?;
    let descr_end = descr_value[1..]
        .find(quote)
        .context("unterminated `descr` string")?;
    let descr = descr_value[1..1 + descr_end].to_string();

    let fortran_value = value_of("fortran_order")?;
    let fortran = if fortran_value.starts_with("True") {
        true
    } else if fortran_value.starts_with("False") {
        false
    } else {
        bail!("`fortran_order` is neither True nor False");
    };

    let shape_value = value_of("shape")?;
    let inner = shape_value
        .strip_prefix('(')
        .and_then(|s| s.find(')').map(|end| &s[..end]))
        .context("`shape` is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .context("`shape` holds something other than sizes")?;
    Ok((descr, fortran, shape))
}

/// A dataset from two `.npy` files: features `x` (first axis: samples; each sample keeps the
/// rest of the shape, `[1]` if `x` is 1-D) and integer labels `y` (`[n]` or `[n, 1]`; floats
/// with whole values are accepted). Class names default to `"0"`, `"1"`, ... up to the largest
/// label; given names bound the labels.
pub fn read_npy_pair(
    x_path: impl AsRef<Path>,
    y_path: impl AsRef<Path>,
    class_names: Option<&[String]>,
) -> Result<Dataset> {
    let (x_path, y_path) = (x_path.as_ref(), y_path.as_ref());
    let x = read_npy(x_path)?;
    let y = read_npy(y_path)?;
    dataset_from_arrays(
        &x,
        &x_path.display().to_string(),
        &y,
        &y_path.display().to_string(),
        false,
        class_names,
    )
}

/// Which arrays of a `.npz` archive [`read_npz`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NpzOptions {
    /// The features array's name (`x` by default; the member is `x.npy`).
    pub x: String,
    /// The labels array's name (`y` by default).
    pub y: String,
    /// The classes' names, indexed by label; `None` gives `"0"`, `"1"`, ...
    pub class_names: Option<Vec<String>>,
}

impl Default for NpzOptions {
    fn default() -> Self {
        Self {
            x: "x".to_string(),
            y: "y".to_string(),
            class_names: None,
        }
    }
}

/// Every array of a `.npz` archive (as written by `np.savez` or `np.savez_compressed`), in
/// archive order, named without the `.npy` suffix.
pub fn read_npz_arrays(path: impl AsRef<Path>) -> Result<Vec<(String, Array)>> {
    let path = path.as_ref();
    let source = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading {source}"))?;
    super::zip::read_members(&bytes, &source)?
        .into_iter()
        .map(|m| {
            let name = m.name.strip_suffix(".npy").unwrap_or(&m.name).to_string();
            let array = parse_npy(&m.bytes, &format!("{source}, array `{name}`"))?;
            Ok((name, array))
        })
        .collect()
}

/// A dataset from the arrays `options.x` (features) and `options.y` (labels) of a `.npz`
/// archive, shaped as [`read_npy_pair`] shapes them.
pub fn read_npz(path: impl AsRef<Path>, options: &NpzOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let source = path.display().to_string();
    let arrays = read_npz_arrays(path)?;
    let find = |name: &str| -> Result<&Array> {
        match arrays.iter().find(|(n, _)| n == name) {
            Some((_, a)) => Ok(a),
            None => {
                let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
                bail!(
                    "{source}: no array `{name}` (it holds: {})",
                    names.join(", ")
                )
            }
        }
    };
    dataset_from_arrays(
        find(&options.x)?,
        &format!("{source}, array `{}`", options.x),
        find(&options.y)?,
        &format!("{source}, array `{}`", options.y),
        false,
        options.class_names.as_deref(),
    )
}
