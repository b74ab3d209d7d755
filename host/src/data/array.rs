//! [`Array`]: an n-dimensional array as read from a `.npy`, `.npz` member or IDX file.

use super::dataset::numbered_classes;
use super::Dataset;
use anyhow::{bail, ensure, Context, Result};

/// An n-dimensional array in C (row-major) order, with its element type kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, `shape.iter().product()` of them.
    pub data: ArrayData,
}

/// An [`Array`]'s elements.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// Unsigned bytes (numpy `u1`, IDX `0x08`).
    U8(Vec<u8>),
    /// Signed bytes (numpy `i1`, IDX `0x09`).
    I8(Vec<i8>),
    /// 16-bit integers (numpy `i2`, IDX `0x0B`).
    I16(Vec<i16>),
    /// 32-bit integers (numpy `i4`, IDX `0x0C`).
    I32(Vec<i32>),
    /// 64-bit integers (numpy `i8`).
    I64(Vec<i64>),
    /// 32-bit floats (numpy `f4`, IDX `0x0D`).
    F32(Vec<f32>),
    /// 64-bit floats (numpy `f8`, IDX `0x0E`).
    F64(Vec<f64>),
}

impl ArrayData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::U8(v) => v.len(),
            ArrayData::I8(v) => v.len(),
            ArrayData::I16(v) => v.len(),
            ArrayData::I32(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's numpy name: `uint8`, `int8`, `int16`, `int32`, `int64`, `float32`,
    /// `float64`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ArrayData::U8(_) => "uint8",
            ArrayData::I8(_) => "int8",
            ArrayData::I16(_) => "int16",
            ArrayData::I32(_) => "int32",
            ArrayData::I64(_) => "int64",
            ArrayData::F32(_) => "float32",
            ArrayData::F64(_) => "float64",
        }
    }

    /// The elements as f64 (exact for every type but 64-bit integers beyond 2^53).
    fn to_f64(&self) -> Vec<f64> {
        match self {
            ArrayData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::F64(v) => v.clone(),
        }
    }
}

impl Array {
    /// The elements converted to f32 (rounded to nearest where f32 cannot hold them exactly).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            other => other.to_f64().iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements as class labels: each must be a whole number in `0..=u32::MAX` (floats
    /// such as `3.0` are accepted). `what` names the array in the error.
    pub fn to_labels(&self, what: &str) -> Result<Vec<u32>> {
        if let ArrayData::U8(v) = &self.data {
            return Ok(v.iter().map(|&x| u32::from(x)).collect());
        }
        let values = self.data.to_f64();
        let mut labels = Vec::with_capacity(values.len());
        for (i, &x) in values.iter().enumerate() {
            if !(x.is_finite() && x.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&x)) {
                bail!(
                    "{what}: element {i} is {x}, not a label (a whole number from 0 to 4294967295)"
                );
            }
            labels.push(x as u32);
        }
        Ok(labels)
    }
}

/// A dataset from a features array `x` (first axis: samples) and a labels array `y` (`[n]` or
/// `[n, 1]`). Each sample's shape is `x`'s shape without its first axis (`[1]` if `x` is 1-D),
/// with a channel axis of 1 appended when `add_channel` is set. Class names default to
/// `"0"`, `"1"`, ... up to the largest label.
pub(crate) fn dataset_from_arrays(
    x: &Array,
    x_name: &str,
    y: &Array,
    y_name: &str,
    add_channel: bool,
    class_names: Option<&[String]>,
) -> Result<Dataset> {
    ensure!(
        !x.shape.is_empty(),
        "{x_name}: a 0-dimensional array holds no samples"
    );
    let n = x.shape[0];
    let y_ok = match y.shape.as_slice() {
        [m] | [m, 1] => *m == n,
        _ => false,
    };
    ensure!(
        y_ok,
        "{y_name}: labels of shape {:?} do not match {n} samples in {x_name} (expected [{n}] or [{n}, 1])",
        y.shape
    );
    let mut feature_shape: Vec<usize> = x.shape[1..].to_vec();
    if feature_shape.is_empty() {
        feature_shape.push(1);
    }
    if add_channel {
        feature_shape.push(1);
    }
    ensure!(
        feature_shape.iter().all(|&d| d > 0),
        "{x_name}: samples of shape {feature_shape:?} hold no values"
    );
    let labels = y.to_labels(y_name)?;
    let class_names = match class_names {
        Some(names) => {
            if let Some((i, l)) = labels
                .iter()
                .enumerate()
                .find(|&(_, &l)| l as usize >= names.len())
            {
                bail!(
                    "{y_name}: element {i} is label {l}, out of range for {} classes",
                    names.len()
                );
            }
            names.to_vec()
        }
        None => numbered_classes(&labels).with_context(|| y_name.to_string())?,
    };
    Dataset::new(x.to_f32(), feature_shape, labels, class_names)
}
