//! The IDX format of MNIST and its relatives (Fashion-MNIST, EMNIST, KMNIST).
//!
//! A file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
//! each dimension as a big-endian u32, then the elements, big-endian, in C order. Type codes:
//! `0x08` u8, `0x09` i8, `0x0B` i16, `0x0C` i32, `0x0D` f32, `0x0E` f64.

use super::array::dataset_from_arrays;
use super::{Array, ArrayData, Dataset};
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// Reads an IDX file, gzip-compressed if its name ends in `.gz` (as MNIST is distributed).
///
/// Errors name the file: a bad magic number, an unknown type code, a file shorter or longer
/// than its dimensions say.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = super::read_file(path)?;
    parse_idx(&bytes, &path.display().to_string())
}

/// Parses the (uncompressed) bytes of an IDX file as [`read_idx`] does; `source` names it in
/// errors.
pub fn parse_idx(bytes: &[u8], source: &str) -> Result<Array> {
    ensure!(
        bytes.len() >= 4,
        "{source}: not an IDX file (only {} bytes, shorter than the magic number)",
        bytes.len()
    );
    let magic = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    let size = match bytes[2] {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        _ => 0,
    };
    ensure!(
        bytes[0] == 0 && bytes[1] == 0 && size != 0 && bytes[3] != 0,
        "{source}: bad IDX magic number 0x{magic:08X} (expected 0x0000TTDD: type code TT of 08, 09, 0B, 0C, 0D or 0E, then DD >= 1 dimensions)"
    );
    let dims = usize::from(bytes[3]);
    let data_at = 4 + 4 * dims;
    ensure!(
        bytes.len() >= data_at,
        "{source}: truncated IDX file: {dims} dimensions need {data_at} header bytes, the file has {}",
        bytes.len()
    );
    let shape: Vec<usize> = bytes[4..data_at]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let expected = shape
        .iter()
        .try_fold(size, |acc: usize, &d| acc.checked_mul(d))
        .with_context(|| format!("{source}: IDX shape {shape:?} is too large"))?;
    let data = &bytes[data_at..];
    if data.len() != expected {
        let what = if data.len() < expected {
            "truncated IDX file"
        } else {
            "IDX file longer than its dimensions"
        };
        bail!(
            "{source}: {what}: shape {shape:?} needs {expected} data bytes, the file has {}",
            data.len()
        );
    }

    macro_rules! decode {
        ($variant:ident, $t:ty) => {
            ArrayData::$variant(
                data.chunks_exact(size)
                    .map(|c| <$t>::from_be_bytes(c.try_into().expect("item size")))
                    .collect(),
            )
        };
    }
    let data = match bytes[2] {
        0x08 => ArrayData::U8(data.to_vec()),
        0x09 => decode!(I8, i8),
        0x0B => decode!(I16, i16),
        0x0C => decode!(I32, i32),
        0x0D => decode!(F32, f32),
        _ => decode!(F64, f64),
    };
    Ok(Array { shape, data })
}

/// A dataset from an IDX images file and an IDX labels file (e.g. MNIST's
/// `train-images-idx3-ubyte.gz` and `train-labels-idx1-ubyte.gz`). Images of shape
/// `[n, height, width]` become samples of shape `[height, width, 1]` (NHWC, one channel);
/// other ranks keep their shape without the first axis. Values stay raw (0..255 for MNIST).
/// Class names default to `"0"`, `"1"`, ... up to the largest label.
pub fn read_idx_pair(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    class_names: Option<&[String]>,
) -> Result<Dataset> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let x = read_idx(images)?;
    let y = read_idx(labels)?;
    dataset_from_arrays(
        &x,
        &images.display().to_string(),
        &y,
        &labels.display().to_string(),
        x.shape.len() == 3,
        class_names,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(type_code: u8, shape: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, type_code, shape.len() as u8];
        for d in shape {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn errors_name_the_file_and_problem() {
        let magic = "(expected 0x0000TTDD: type code TT of 08, 09, 0B, 0C, 0D or 0E, then DD >= 1 dimensions)";
        let cases = [
            (
                vec![0x12, 0x34, 0x08, 0x01, 0, 0, 0, 0],
                format!("bad IDX magic number 0x12340801 {magic}"),
            ),
            (
                idx(0x07, &[1], &[0]),
                format!("bad IDX magic number 0x00000701 {magic}"),
            ),
            (
                vec![0, 0, 0x08, 0],
                format!("bad IDX magic number 0x00000800 {magic}"),
            ),
            (
                idx(0x08, &[2, 2], &[1, 2, 3]),
                "truncated IDX file: shape [2, 2] needs 4 data bytes, the file has 3".into(),
            ),
            (
                idx(0x08, &[1], &[1, 2]),
                "IDX file longer than its dimensions: shape [1] needs 1 data bytes, the file has 2"
                    .into(),
            ),
            (
                idx(0x08, &[4, 4], &[])[..8].to_vec(),
                "truncated IDX file: 2 dimensions need 12 header bytes, the file has 8".into(),
            ),
            (
                vec![0, 0],
                "not an IDX file (only 2 bytes, shorter than the magic number)".into(),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse_idx(&bytes, "t10k").unwrap_err().to_string(),
                format!("t10k: {expected}")
            );
        }
    }
}
