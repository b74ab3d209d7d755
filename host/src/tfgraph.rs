//! A graph in TFLite's own vocabulary (operator names, options, tensors with float
//! quantization parameters) and its lowering onto mote's [`ModelBuilder`]. The `.tflite`
//! importer produces one of these; so do the golden-vector tests.

use crate::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef};
use anyhow::{anyhow, bail, ensure, Context, Result};
use mote_core::format::{DType, OpCode};
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
    /// A variable (state) tensor: kept from one invoke to the next.
    pub variable: bool,
}

pub use mote_core::ops::lower::TfOptions;

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
    /// Lowers the graph onto a [`ModelBuilder`], operator by operator, after the graph passes
    /// (see [`crate::passes`]); an unsupported operator or option is an error that names it.
    pub fn to_builder(&self) -> Result<ModelBuilder> {
        crate::passes::simplify(self)?.lower_all()
    }

    fn lower_all(&self) -> Result<ModelBuilder> {
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
        for (id, t) in self.tensors.iter().enumerate() {
            if t.variable {
                b.set_variable(id)?;
            }
        }
        b.inputs(&self.inputs);
        b.outputs(&self.outputs);
        Ok(b)
    }

    /// The operator's mote counterpart, its tensors checked to exist; its module in
    /// mote-core checks the rest when the builder lowers it.
    fn lower(&self, op: &TfOperator) -> Result<OpDef> {
        let code = OpCode::from_tflite(&op.name)
            .ok_or_else(|| anyhow!("operator {} is not supported by mote", op.name))?;
        for (slot, id) in op.inputs.iter().enumerate() {
            if let Some(id) = *id {
                ensure!(
                    id < self.tensors.len(),
                    "input {slot} names tensor {id}, which does not exist"
                );
            }
        }
        ensure!(
            op.outputs.len() == 1,
            "{} outputs; mote's operators have one",
            op.outputs.len()
        );
        let output = op.outputs[0];
        ensure!(
            output < self.tensors.len(),
            "output names tensor {output}, which does not exist"
        );
        Ok(OpDef {
            op: code,
            inputs: op.inputs.clone(),
            output,
            options: op.options,
        })
    }
}
