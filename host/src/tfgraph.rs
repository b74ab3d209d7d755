//! A graph in TFLite's own vocabulary (operator names, options, tensors with float
//! quantization parameters) and its lowering onto mote's [`ModelBuilder`]. The `.tflite`
//! importer produces one of these; so do the golden-vector tests.

use crate::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef};
use anyhow::{anyhow, bail, ensure, Context, Result};
use mote_core::format::DType;
use mote_core::ops::{Activation, Padding};

/// A tensor as TFLite describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TfTensor {
    /// Name.
    pub name: String,
    /// Shape (rank 0 to 4).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Quantization, if any.
    pub quant: Option<Quantization>,
    /// Constant elements.
    pub data: Option<Data>,
}

/// An operator's options, by TFLite's field names. Absent fields keep TFLite's defaults.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // TFLite's option names
pub struct TfOptions {
    pub padding: Padding,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub activation: Activation,
    pub beta: f32,
    pub keep_dims: bool,
}

impl Default for TfOptions {
    fn default() -> Self {
        Self {
            padding: Padding::Valid,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            filter_h: 1,
            filter_w: 1,
            activation: Activation::None,
            beta: 1.0,
            keep_dims: false,
        }
    }
}

/// An operator.
#[derive(Debug, Clone, PartialEq)]
pub struct TfOperator {
    /// TFLite's builtin operator name, e.g. `CONV_2D`.
    pub name: String,
    /// Operator version.
    pub version: u32,
    /// Input tensor indices; `None` for an omitted optional input.
    pub inputs: Vec<Option<usize>>,
    /// Output tensor indices.
    pub outputs: Vec<usize>,
    /// Options.
    pub options: TfOptions,
}

/// A TFLite subgraph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TfGraph {
    /// Tensors.
    pub tensors: Vec<TfTensor>,
    /// Operators, in execution order.
    pub operators: Vec<TfOperator>,
    /// Subgraph inputs.
    pub inputs: Vec<usize>,
    /// Subgraph outputs.
    pub outputs: Vec<usize>,
}

/// TFLite's fused activation names.
pub fn parse_activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "NONE" => Activation::None,
        "RELU" => Activation::Relu,
        "RELU6" => Activation::Relu6,
        other => bail!("fused activation {other} is not supported (NONE, RELU, RELU6 are)"),
    })
}

/// TFLite's padding names.
pub fn parse_padding(name: &str) -> Result<Padding> {
    Ok(match name {
        "SAME" => Padding::Same,
        "VALID" => Padding::Valid,
        other => bail!("padding {other} is not supported"),
    })
}

impl TfGraph {
    /// Lowers the graph onto a [`ModelBuilder`], operator by operator; an unsupported operator
    /// or option is an error that names it.
    pub fn to_builder(&self) -> Result<ModelBuilder> {
        let mut b = ModelBuilder::new();
        for t in &self.tensors {
            b.tensor(TensorDef {
                name: t.name.clone(),
                // Scalars become one-element vectors.
                shape: if t.shape.is_empty() {
                    vec![1]
                } else {
                    t.shape.clone()
                },
                dtype: t.dtype,
                quant: t.quant.clone(),
                data: t.data.clone(),
            });
        }
        for (k, op) in self.operators.iter().enumerate() {
            let def = self
                .lower(op)
                .with_context(|| format!("operator {k} ({} v{})", op.name, op.version))?;
            b.op(def);
        }
        b.inputs(&self.inputs);
        b.outputs(&self.outputs);
        Ok(b)
    }

    fn input(&self, op: &TfOperator, slot: usize) -> Result<usize> {
        let id = op
            .inputs
            .get(slot)
            .copied()
            .flatten()
            .ok_or_else(|| anyhow!("input {slot} is missing"))?;
        ensure!(
            id < self.tensors.len(),
            "input {slot} names tensor {id}, which does not exist"
        );
        Ok(id)
    }

    fn optional(&self, op: &TfOperator, slot: usize) -> Result<Option<usize>> {
        match op.inputs.get(slot).copied().flatten() {
            Some(_) => self.input(op, slot).map(Some),
            None => Ok(None),
        }
    }

    fn output(&self, op: &TfOperator) -> Result<usize> {
        ensure!(
            op.outputs.len() == 1,
            "{} outputs; mote's operators have one",
            op.outputs.len()
        );
        let id = op.outputs[0];
        ensure!(
            id < self.tensors.len(),
            "output names tensor {id}, which does not exist"
        );
        Ok(id)
    }

    fn check_dtype(&self, id: usize, dtype: DType, role: &str) -> Result<()> {
        let t = &self.tensors[id];
        ensure!(
            t.dtype == dtype,
            "{role} `{}` is {:?}; this operator needs {:?}",
            t.name,
            t.dtype,
            dtype
        );
        Ok(())
    }

    fn lower(&self, op: &TfOperator) -> Result<OpDef> {
        let o = &op.options;
        let output = self.output(op)?;
        let int8_io = |input: usize| -> Result<()> {
            self.check_dtype(input, DType::I8, "input")?;
            self.check_dtype(output, DType::I8, "output")
        };
        Ok(match op.name.as_str() {
            "CONV_2D" | "DEPTHWISE_CONV_2D" => {
                let input = self.input(op, 0)?;
                let filter = self.input(op, 1)?;
                let bias = self.optional(op, 2)?;
                int8_io(input)?;
                self.check_dtype(filter, DType::I8, "filter")?;
                if let Some(bias) = bias {
                    self.check_dtype(bias, DType::I32, "bias")?;
                }
                let common = (
                    o.padding,
                    (o.stride_h, o.stride_w),
                    (o.dilation_h, o.dilation_w),
                );
                if op.name == "CONV_2D" {
                    OpDef::Conv2d {
                        input,
                        filter,
                        bias,
                        output,
                        padding: common.0,
                        stride: common.1,
                        dilation: common.2,
                        activation: o.activation,
                    }
                } else {
                    // Derived rather than read: some converters write a wrong multiplier.
                    let in_c = *self.tensors[input].shape.last().unwrap_or(&1);
                    let out_c = *self.tensors[filter].shape.last().unwrap_or(&1);
                    ensure!(
                        in_c > 0 && out_c % in_c == 0,
                        "filter channels {out_c} are not a multiple of input channels {in_c}"
                    );
                    OpDef::DepthwiseConv2d {
                        input,
                        filter,
                        bias,
                        output,
                        padding: common.0,
                        stride: common.1,
                        dilation: common.2,
                        depth_multiplier: out_c / in_c,
                        activation: o.activation,
                    }
                }
            }
            "FULLY_CONNECTED" => {
                let input = self.input(op, 0)?;
                let weights = self.input(op, 1)?;
                int8_io(input)?;
                self.check_dtype(weights, DType::I8, "weights")?;
                OpDef::FullyConnected {
                    input,
                    weights,
                    bias: self.optional(op, 2)?,
                    output,
                    activation: o.activation,
                }
            }
            "AVERAGE_POOL_2D" | "MAX_POOL_2D" => {
                let input = self.input(op, 0)?;
                int8_io(input)?;
                let (filter, stride) = ((o.filter_h, o.filter_w), (o.stride_h, o.stride_w));
                if op.name == "AVERAGE_POOL_2D" {
                    OpDef::AveragePool2d {
                        input,
                        output,
                        padding: o.padding,
                        filter,
                        stride,
                        activation: o.activation,
                    }
                } else {
                    OpDef::MaxPool2d {
                        input,
                        output,
                        padding: o.padding,
                        filter,
                        stride,
                        activation: o.activation,
                    }
                }
            }
            "ADD" => {
                let (a, b) = (self.input(op, 0)?, self.input(op, 1)?);
                int8_io(a)?;
                self.check_dtype(b, DType::I8, "input")?;
                let count = |id: usize| self.tensors[id].shape.iter().product::<usize>();
                ensure!(
                    count(a) == count(b) && count(a) == count(output),
                    "ADD with broadcasting ({:?} + {:?}) is not supported",
                    self.tensors[a].shape,
                    self.tensors[b].shape
                );
                OpDef::Add {
                    a,
                    b,
                    output,
                    activation: o.activation,
                }
            }
            "SOFTMAX" => {
                let input = self.input(op, 0)?;
                int8_io(input)?;
                OpDef::Softmax {
                    input,
                    output,
                    beta: o.beta,
                }
            }
            // The new shape is the output tensor's; the optional shape input adds nothing.
            "RESHAPE" | "SQUEEZE" | "EXPAND_DIMS" => OpDef::Reshape {
                input: self.input(op, 0)?,
                output,
            },
            "MEAN" => {
                let input = self.input(op, 0)?;
                int8_io(input)?;
                let axes = self.input(op, 1)?;
                let rank = self.tensors[input].shape.len();
                let spatial = match &self.tensors[axes].data {
                    Some(Data::I32(a)) => {
                        let mut a: Vec<i64> = a
                            .iter()
                            .map(|&x| (x as i64).rem_euclid(rank as i64))
                            .collect();
                        a.sort_unstable();
                        rank == 4 && a == [1, 2]
                    }
                    _ => false,
                };
                ensure!(
                    spatial,
                    "MEAN is supported over the height and width of a 4-D input only"
                );
                OpDef::Mean {
                    input,
                    output,
                    keep_dims: o.keep_dims,
                }
            }
            "RELU" | "RELU6" => {
                let input = self.input(op, 0)?;
                int8_io(input)?;
                let activation = match op.name.as_str() {
                    "RELU" => Activation::Relu,
                    _ => Activation::Relu6,
                };
                OpDef::Relu {
                    input,
                    output,
                    activation,
                }
            }
            "QUANTIZE" => {
                let input = self.input(op, 0)?;
                self.check_dtype(input, DType::F32, "input")?;
                self.check_dtype(output, DType::I8, "output")?;
                OpDef::Quantize { input, output }
            }
            "DEQUANTIZE" => {
                let input = self.input(op, 0)?;
                self.check_dtype(input, DType::I8, "input")?;
                self.check_dtype(output, DType::F32, "output")?;
                OpDef::Dequantize { input, output }
            }
            other => bail!("operator {other} is not supported by mote"),
        })
    }
}
