//! Golden vectors: tiny int8 models converted by the TFLite converter and run by TFLite-Micro's
//! reference kernels, one JSON file per case in `tests/goldens/` (written by
//! `tools/goldens/generate.py`; see `tools/goldens/README.md` for the schema and the cases).
//!
//! Numbers are kept as [`serde_json::Number`] so that nothing is rounded on the way in; the
//! `*_i8`, `*_i32` and `*_f32` helpers convert them, checking that every value fits its type.
//! Every float in the files is the exact double value of a float32 (scales, float vectors,
//! options), so read floats as `f32`: serde_json's default float parser may land one double ulp
//! away from the written value, which rounding to `f32` undoes. Scales are therefore typed `f32`;
//! widen them with `f64::from` as TFLite-Micro does.

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use std::path::{Path, PathBuf};

/// One golden case: a converted TFLite subgraph and the vectors TFLite-Micro produced for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    /// Case name, the same as the file's stem.
    pub name: String,
    /// What the case covers, in a sentence.
    pub description: String,
    /// Every tensor of the subgraph, indexed by the operators and the subgraph inputs/outputs.
    pub tensors: Vec<GoldenTensor>,
    /// Operators in execution order.
    pub operators: Vec<GoldenOperator>,
    /// Tensor indices of the subgraph inputs.
    pub inputs: Vec<usize>,
    /// Tensor indices of the subgraph outputs.
    pub outputs: Vec<usize>,
    /// Invokes per sequence (models with state): the vectors come in groups this long, each
    /// run by one interpreter with its state carried from invoke to invoke and reset at the
    /// group's first vector. Absent: 1, every vector on its own.
    #[serde(default = "one")]
    pub sequence: usize,
    /// Input/output pairs computed by TFLite-Micro.
    pub vectors: Vec<GoldenVector>,
}

fn one() -> usize {
    1
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Signed 8-bit integer (quantized activations and weights).
    Int8,
    /// Signed 32-bit integer (biases, shape and axis tensors).
    Int32,
    /// IEEE single precision (float model inputs/outputs).
    Float32,
    /// Unsigned 8-bit integer (quantized model edges).
    Uint8,
    /// Signed 16-bit integer (quantized state, audio edges).
    Int16,
}

/// A tensor as stored in the `.tflite` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenTensor {
    /// Name in the `.tflite` file (informational).
    pub name: String,
    /// Dimensions, outermost first (NHWC for images); `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Quantization scales: empty when not quantized, one per tensor, or one per channel along
    /// [`GoldenTensor::quantized_dimension`].
    pub scale: Vec<f32>,
    /// Zero points, as many as scales.
    pub zero_point: Vec<i64>,
    /// The dimension that per-channel scales run along.
    pub quantized_dimension: usize,
    /// Constant contents in row-major order (weights, biases, shape tensors); `None` for
    /// activations.
    pub data: Option<Vec<Number>>,
    /// A variable (state) tensor, kept from one invoke to the next (absent: false).
    #[serde(default)]
    pub variable: bool,
}

/// One operator of the subgraph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenOperator {
    /// TFLite builtin operator name, e.g. `"CONV_2D"`.
    pub op: String,
    /// Operator version from the model's operator codes.
    pub version: u32,
    /// Input tensor indices; `-1` marks an omitted optional input (e.g. no bias).
    pub inputs: Vec<i64>,
    /// Output tensor indices.
    pub outputs: Vec<usize>,
    /// Builtin options, named after the TFLite schema fields in snake_case.
    pub options: Map<String, Value>,
}

/// One vector: an array per subgraph input and per subgraph output, flat in row-major order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenVector {
    /// One array per subgraph input.
    pub inputs: Vec<Vec<Number>>,
    /// One array per subgraph output, as TFLite-Micro computed it.
    pub outputs: Vec<Vec<Number>>,
}

/// The folder holding the committed `*.json` cases (`tests/goldens`).
pub fn goldens_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("goldens")
}

/// Every `*.json` file in [`goldens_dir`], sorted by path.
pub fn case_files() -> Vec<PathBuf> {
    let dir = goldens_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// Reads and parses one case file; panics with the file name on any error.
pub fn load(path: &Path) -> GoldenCase {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// Every committed case, sorted by name; panics with the file name on a parse error.
pub fn load_all() -> Vec<GoldenCase> {
    let mut cases: Vec<GoldenCase> = case_files().iter().map(|p| load(p)).collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// Loads the case called `name` (`tests/goldens/<name>.json`).
pub fn load_case(name: &str) -> GoldenCase {
    load(&goldens_dir().join(format!("{name}.json")))
}

/// Converts numbers to the integer type `T`, failing on a fraction or a value out of range.
fn to_int<T: TryFrom<i64>>(values: &[Number], what: &str) -> Result<Vec<T>, String> {
    values
        .iter()
        .map(|n| {
            n.as_i64()
                .and_then(|v| T::try_from(v).ok())
                .ok_or_else(|| format!("{n} is not an {what}"))
        })
        .collect()
}

/// Converts numbers to `i8`, failing on a fraction or a value out of range.
pub fn to_i8(values: &[Number]) -> Result<Vec<i8>, String> {
    to_int(values, "int8")
}

/// Converts numbers to `i32`, failing on a fraction or a value out of range.
pub fn to_i32(values: &[Number]) -> Result<Vec<i32>, String> {
    to_int(values, "int32")
}

/// Converts numbers to `u8`, failing on a fraction or a value out of range.
pub fn to_u8(values: &[Number]) -> Result<Vec<u8>, String> {
    to_int(values, "uint8")
}

/// Converts numbers to `i16`, failing on a fraction or a value out of range.
pub fn to_i16(values: &[Number]) -> Result<Vec<i16>, String> {
    to_int(values, "int16")
}

/// The bytes a tensor of `dtype` holding `values` has in mote's arena (little-endian).
pub fn to_le_bytes(values: &[Number], dtype: DType) -> Result<Vec<u8>, String> {
    Ok(match dtype {
        DType::Int8 => to_i8(values)?.iter().map(|&v| v as u8).collect(),
        DType::Uint8 => to_u8(values)?,
        DType::Int16 => to_i16(values)?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::Int32 => to_i32(values)?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::Float32 => to_f32(values)?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    })
}

/// Converts numbers to `f32`, failing unless each is a float32 value (up to the few double ulps
/// serde_json's default float parser may be off by).
pub fn to_f32(values: &[Number]) -> Result<Vec<f32>, String> {
    values
        .iter()
        .map(|n| {
            let v = n.as_f64().ok_or_else(|| format!("{n} is not a number"))?;
            let f = v as f32;
            if f.is_finite() && (f64::from(f) - v).abs() <= v.abs() * f64::EPSILON * 4.0 {
                Ok(f)
            } else {
                Err(format!("{n} is not a float32 value"))
            }
        })
        .collect()
}

/// Checks that numbers fit `dtype` exactly.
pub fn check_dtype(values: &[Number], dtype: DType) -> Result<(), String> {
    match dtype {
        DType::Int8 => to_i8(values).map(drop),
        DType::Int32 => to_i32(values).map(drop),
        DType::Float32 => to_f32(values).map(drop),
        DType::Uint8 => to_u8(values).map(drop),
        DType::Int16 => to_i16(values).map(drop),
    }
}

impl GoldenTensor {
    /// Number of elements its shape implies (1 for a scalar).
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it carries quantization parameters.
    pub fn is_quantized(&self) -> bool {
        !self.scale.is_empty()
    }

    /// Whether it has one scale per channel along [`GoldenTensor::quantized_dimension`].
    pub fn is_per_channel(&self) -> bool {
        self.scale.len() > 1
    }

    /// The per-tensor scale as `f32`; panics unless there is exactly one.
    pub fn scale_f32(&self) -> f32 {
        assert_eq!(
            self.scale.len(),
            1,
            "tensor {} is not per-tensor quantized",
            self.name
        );
        self.scale[0]
    }

    /// The per-tensor zero point; panics unless there is exactly one.
    pub fn zero_point_i32(&self) -> i32 {
        assert_eq!(
            self.zero_point.len(),
            1,
            "tensor {} is not per-tensor quantized",
            self.name
        );
        i32::try_from(self.zero_point[0]).expect("zero point fits i32")
    }

    fn constant(&self, want: DType) -> &[Number] {
        assert_eq!(
            self.dtype, want,
            "tensor {} has dtype {:?}",
            self.name, self.dtype
        );
        self.data
            .as_deref()
            .unwrap_or_else(|| panic!("tensor {} has no constant data", self.name))
    }

    /// Constant int8 contents (weights); panics if absent or of another type.
    pub fn data_i8(&self) -> Vec<i8> {
        to_i8(self.constant(DType::Int8)).unwrap_or_else(|e| panic!("tensor {}: {e}", self.name))
    }

    /// Constant int32 contents (biases, shapes, axes); panics if absent or of another type.
    pub fn data_i32(&self) -> Vec<i32> {
        to_i32(self.constant(DType::Int32)).unwrap_or_else(|e| panic!("tensor {}: {e}", self.name))
    }

    /// Constant uint8 contents; panics if absent or of another type.
    pub fn data_u8(&self) -> Vec<u8> {
        to_u8(self.constant(DType::Uint8)).unwrap_or_else(|e| panic!("tensor {}: {e}", self.name))
    }

    /// Constant int16 contents; panics if absent or of another type.
    pub fn data_i16(&self) -> Vec<i16> {
        to_i16(self.constant(DType::Int16)).unwrap_or_else(|e| panic!("tensor {}: {e}", self.name))
    }

    /// Constant float32 contents; panics if absent or of another type.
    pub fn data_f32(&self) -> Vec<f32> {
        to_f32(self.constant(DType::Float32))
            .unwrap_or_else(|e| panic!("tensor {}: {e}", self.name))
    }
}

impl GoldenOperator {
    /// Tensor index of input `i`; `None` when omitted (`-1`) or past the end.
    pub fn input(&self, i: usize) -> Option<usize> {
        self.inputs.get(i).and_then(|&t| usize::try_from(t).ok())
    }

    /// A string option such as `padding` or `fused_activation_function`.
    pub fn option_str(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(Value::as_str)
    }

    /// An integer option such as `stride_w` or `depth_multiplier`.
    pub fn option_u64(&self, key: &str) -> Option<u64> {
        self.options.get(key).and_then(Value::as_u64)
    }

    /// A signed integer option such as an `axis` or a mask.
    pub fn option_i64(&self, key: &str) -> Option<i64> {
        self.options.get(key).and_then(Value::as_i64)
    }

    /// A boolean option such as `keep_num_dims`.
    pub fn option_bool(&self, key: &str) -> Option<bool> {
        self.options.get(key).and_then(Value::as_bool)
    }

    /// A float option such as softmax's `beta` (a float32 in the schema).
    pub fn option_f32(&self, key: &str) -> Option<f32> {
        self.options
            .get(key)
            .and_then(Value::as_f64)
            .map(|v| v as f32)
    }
}

impl GoldenCase {
    /// Tensor `index`; panics if out of range.
    pub fn tensor(&self, index: usize) -> &GoldenTensor {
        &self.tensors[index]
    }

    /// The tensor of subgraph input `i`.
    pub fn input_tensor(&self, i: usize) -> &GoldenTensor {
        self.tensor(self.inputs[i])
    }

    /// The tensor of subgraph output `i`.
    pub fn output_tensor(&self, i: usize) -> &GoldenTensor {
        self.tensor(self.outputs[i])
    }

    /// Operator names in execution order.
    pub fn op_names(&self) -> Vec<&str> {
        self.operators.iter().map(|o| o.op.as_str()).collect()
    }

    /// Input `i` of vector `v` as int8; panics if it is not int8.
    pub fn input_i8(&self, v: usize, i: usize) -> Vec<i8> {
        to_i8(&self.vectors[v].inputs[i])
            .unwrap_or_else(|e| panic!("{} vector {v} input {i}: {e}", self.name))
    }

    /// Output `i` of vector `v` as int8; panics if it is not int8.
    pub fn output_i8(&self, v: usize, i: usize) -> Vec<i8> {
        to_i8(&self.vectors[v].outputs[i])
            .unwrap_or_else(|e| panic!("{} vector {v} output {i}: {e}", self.name))
    }

    /// Input `i` of vector `v` as float32; panics if it is not float32.
    pub fn input_f32(&self, v: usize, i: usize) -> Vec<f32> {
        to_f32(&self.vectors[v].inputs[i])
            .unwrap_or_else(|e| panic!("{} vector {v} input {i}: {e}", self.name))
    }

    /// Output `i` of vector `v` as float32; panics if it is not float32.
    pub fn output_f32(&self, v: usize, i: usize) -> Vec<f32> {
        to_f32(&self.vectors[v].outputs[i])
            .unwrap_or_else(|e| panic!("{} vector {v} output {i}: {e}", self.name))
    }
}
