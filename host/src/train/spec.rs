//! The model definition file: a Keras-Sequential-like TOML description of the layers and the
//! training settings, parsed into typed structs (unknown fields and layer types are errors).

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::config::TrainingConfig;
use super::tensor::SampleShape;
use crate::data::DataOptions;

/// Every layer `type` a model file may use.
pub const LAYER_TYPES: [&str; 15] = [
    "conv2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "dense",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "batch_norm",
    "dropout",
    "relu",
    "relu6",
    "flatten",
    "softmax",
    "residual",
    "lstm",
];

/// A whole model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model's name.
    pub name: String,
    /// Per-sample input shape, NHWC without the batch: `[h, w, c]`, `[w, c]` or `[features]`.
    pub input: Vec<usize>,
    /// Number of classes: the network's output must have this many values per sample.
    pub classes: usize,
    /// The layers, in order.
    pub layers: Vec<LayerSpec>,
    /// How to train it.
    #[serde(default)]
    pub training: TrainingConfig,
    /// How to read and split the data (the `mote train` flags override it).
    #[serde(default, skip_serializing_if = "DataOptions::is_default")]
    pub data: DataOptions,
}

/// A fused (or standalone) activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Activation {
    /// mote-core's equivalent.
    pub fn to_core(self) -> mote_core::ops::Activation {
        match self {
            Activation::None => mote_core::ops::Activation::None,
            Activation::Relu => mote_core::ops::Activation::Relu,
            Activation::Relu6 => mote_core::ops::Activation::Relu6,
        }
    }
}

/// TFLite's padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingKind {
    /// Output `ceil(in / stride)`, zero padding split as TFLite does (the odd one below/right).
    Same,
    /// No padding (Keras' default).
    #[default]
    Valid,
}

impl PaddingKind {
    /// mote-core's equivalent.
    pub fn to_core(self) -> mote_core::ops::Padding {
        match self {
            PaddingKind::Same => mote_core::ops::Padding::Same,
            PaddingKind::Valid => mote_core::ops::Padding::Valid,
        }
    }
}

/// A `(height, width)` pair, written as one number (both) or `[h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PairRepr", into = "[usize; 2]")]
pub struct Pair {
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
}

impl Pair {
    /// Both the same.
    pub const fn square(v: usize) -> Self {
        Self { h: v, w: v }
    }

    /// As a tuple.
    pub fn tuple(self) -> (usize, usize) {
        (self.h, self.w)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PairRepr {
    One(usize),
    Two(Vec<usize>),
}

impl TryFrom<PairRepr> for Pair {
    type Error = String;
    fn try_from(r: PairRepr) -> Result<Self, String> {
        let p = match r {
            PairRepr::One(v) => Pair::square(v),
            PairRepr::Two(v) if v.len() == 2 => Pair { h: v[0], w: v[1] },
            PairRepr::Two(v) => return Err(format!("expected a number or [h, w], got {v:?}")),
        };
        if p.h == 0 || p.w == 0 {
            return Err(format!("sizes must be at least 1, got [{}, {}]", p.h, p.w));
        }
        Ok(p)
    }
}

impl From<Pair> for [usize; 2] {
    fn from(p: Pair) -> Self {
        [p.h, p.w]
    }
}

const fn one() -> Pair {
    Pair::square(1)
}

const fn yes() -> bool {
    true
}

const fn one_usize() -> usize {
    1
}

/// `conv2d`: filters `[filters, kh, kw, in]` (OHWI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// Output channels.
    pub filters: usize,
    /// Kernel size.
    pub kernel: Pair,
    /// Stride (default 1).
    #[serde(default = "one")]
    pub stride: Pair,
    /// Padding (default valid).
    #[serde(default)]
    pub padding: PaddingKind,
    /// Dilation (default 1).
    #[serde(default = "one")]
    pub dilation: Pair,
    /// Fused activation (default none).
    #[serde(default)]
    pub activation: Activation,
    /// Whether it has a bias (default true).
    #[serde(default = "yes")]
    pub use_bias: bool,
}

/// `depthwise_conv2d`: filter `[1, kh, kw, in * depth_multiplier]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthwiseSpec {
    /// Kernel size.
    pub kernel: Pair,
    /// Stride (default 1).
    #[serde(default = "one")]
    pub stride: Pair,
    /// Padding (default valid).
    #[serde(default)]
    pub padding: PaddingKind,
    /// Dilation (default 1).
    #[serde(default = "one")]
    pub dilation: Pair,
    /// Filters per input channel (default 1).
    #[serde(default = "one_usize")]
    pub depth_multiplier: usize,
    /// Fused activation (default none).
    #[serde(default)]
    pub activation: Activation,
    /// Whether it has a bias (default true).
    #[serde(default = "yes")]
    pub use_bias: bool,
}

/// `separable_conv2d`: a depthwise convolution (no bias, no activation) then a pointwise 1x1
/// convolution with `filters` outputs, the bias and the activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparableSpec {
    /// Output channels of the pointwise convolution.
    pub filters: usize,
    /// The depthwise kernel size.
    pub kernel: Pair,
    /// The depthwise stride (default 1).
    #[serde(default = "one")]
    pub stride: Pair,
    /// The depthwise padding (default valid).
    #[serde(default)]
    pub padding: PaddingKind,
    /// The depthwise dilation (default 1).
    #[serde(default = "one")]
    pub dilation: Pair,
    /// The depthwise multiplier (default 1).
    #[serde(default = "one_usize")]
    pub depth_multiplier: usize,
    /// Fused activation of the pointwise convolution (default none).
    #[serde(default)]
    pub activation: Activation,
    /// Whether the pointwise convolution has a bias (default true).
    #[serde(default = "yes")]
    pub use_bias: bool,
}

/// `dense`: weights `[units, inputs]`; its input must be flat (`[1, 1, inputs]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Outputs.
    pub units: usize,
    /// Fused activation (default none).
    #[serde(default)]
    pub activation: Activation,
    /// Whether it has a bias (default true).
    #[serde(default = "yes")]
    pub use_bias: bool,
}

/// `max_pool` and `avg_pool`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Window size.
    pub size: Pair,
    /// Stride (default: the window size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<Pair>,
    /// Padding (default valid).
    #[serde(default)]
    pub padding: PaddingKind,
}

impl PoolSpec {
    /// The stride in effect.
    pub fn stride(&self) -> Pair {
        self.stride.unwrap_or(self.size)
    }
}

/// `batch_norm` over the last (channel) axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    /// Running statistics: `running = momentum * running + (1 - momentum) * batch`
    /// (default 0.99, as Keras).
    #[serde(default = "default_momentum")]
    pub momentum: f32,
    /// Added to the variance (default 0.001, as Keras).
    #[serde(default = "default_epsilon")]
    pub epsilon: f32,
}

fn default_momentum() -> f32 {
    0.99
}

fn default_epsilon() -> f32 {
    1e-3
}

/// `dropout` (training only, inverted scaling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Fraction of values zeroed, in `[0, 1)`.
    pub rate: f32,
}

/// `residual`: `activation(shortcut(x) + f(x))` where `f` is the inner layers. The shortcut is
/// the identity when `f` keeps the shape; when `f` changes it (a stride, more channels) the
/// shortcut is a projection, a 1x1 `conv2d` (with bias, no activation) to `f`'s channels with
/// the stride that maps the input's height and width to `f`'s (2 for a halving).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    /// Applied after the sum (default none).
    #[serde(default)]
    pub activation: Activation,
    /// The shortcut (default: the identity when the inner layers keep the shape, a projection
    /// when they change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<Shortcut>,
    /// The inner layers.
    pub layers: Vec<LayerSpec>,
}

/// A residual block's `shortcut`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortcut {
    /// `x` itself: the inner layers must keep the shape.
    Identity,
    /// A trained 1x1 convolution of `x` to the inner layers' output shape.
    Projection,
}

/// `lstm`: a Keras LSTM over sequences `[1, steps, features]` (gates i, f, c, o; sigmoid
/// gates, tanh candidate and output; zero initial state per sample). Input weights are
/// `[4 * units, features]`, recurrent weights `[4 * units, units]`, bias `[4 * units]`, each
/// in four gate blocks of `units` rows (TFLite's per-gate matrices, stacked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmSpec {
    /// Hidden (and cell) state size.
    pub units: usize,
    /// Output every step's hidden state `[1, steps, units]` instead of the last one's
    /// `[1, 1, units]` (default false, as Keras).
    #[serde(default)]
    pub return_sequences: bool,
}

/// One layer of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)] // each variant is its `type` name; the options document themselves
pub enum LayerSpec {
    Conv2d(ConvSpec),
    DepthwiseConv2d(DepthwiseSpec),
    SeparableConv2d(SeparableSpec),
    Dense(DenseSpec),
    MaxPool(PoolSpec),
    AvgPool(PoolSpec),
    GlobalAvgPool,
    BatchNorm(BatchNormSpec),
    Dropout(DropoutSpec),
    Relu,
    Relu6,
    Flatten,
    Softmax,
    Residual(ResidualSpec),
    Lstm(LstmSpec),
}

impl LayerSpec {
    /// The layer's `type` in the model file.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d(_) => "conv2d",
            LayerSpec::DepthwiseConv2d(_) => "depthwise_conv2d",
            LayerSpec::SeparableConv2d(_) => "separable_conv2d",
            LayerSpec::Dense(_) => "dense",
            LayerSpec::MaxPool(_) => "max_pool",
            LayerSpec::AvgPool(_) => "avg_pool",
            LayerSpec::GlobalAvgPool => "global_avg_pool",
            LayerSpec::BatchNorm(_) => "batch_norm",
            LayerSpec::Dropout(_) => "dropout",
            LayerSpec::Relu => "relu",
            LayerSpec::Relu6 => "relu6",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Softmax => "softmax",
            LayerSpec::Residual(_) => "residual",
            LayerSpec::Lstm(_) => "lstm",
        }
    }
}

/// `[top-level]` as written, before the layers are parsed one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    input: Vec<usize>,
    classes: usize,
    layers: Vec<toml::Value>,
    #[serde(default)]
    training: TrainingConfig,
    #[serde(default)]
    data: DataOptions,
}

/// A layer's position: `3` at the top level, `3.1` for the second layer inside layer 3.
pub(crate) fn path_name(path: &[usize]) -> String {
    path.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn parse_layer(value: &toml::Value, path: &[usize]) -> Result<LayerSpec> {
    let at = path_name(path);
    let table = value
        .as_table()
        .ok_or_else(|| anyhow!("layer {at}: expected a table with a `type`"))?;
    let ty = table
        .get("type")
        .ok_or_else(|| {
            anyhow!(
                "layer {at}: missing `type` (one of {})",
                LAYER_TYPES.join(", ")
            )
        })?
        .as_str()
        .ok_or_else(|| anyhow!("layer {at}: `type` must be a string"))?;
    if !LAYER_TYPES.contains(&ty) {
        bail!(
            "layer {at}: unknown layer type `{ty}` (expected one of {})",
            LAYER_TYPES.join(", ")
        );
    }
    if ty == "residual" {
        let mut rest = table.clone();
        rest.remove("type");
        let inner = rest
            .remove("layers")
            .ok_or_else(|| anyhow!("layer {at} (residual): missing `layers`"))?;
        let inner = inner
            .as_array()
            .ok_or_else(|| anyhow!("layer {at} (residual): `layers` must be an array"))?;
        let layers = inner
            .iter()
            .enumerate()
            .map(|(i, v)| parse_layer(v, &[path, &[i]].concat()))
            .collect::<Result<Vec<_>>>()?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rest {
            #[serde(default)]
            activation: Activation,
            #[serde(default)]
            shortcut: Option<Shortcut>,
        }
        let rest: Rest = toml::Value::Table(rest)
            .try_into()
            .map_err(|e| anyhow!("layer {at} (residual): {e}"))?;
        return Ok(LayerSpec::Residual(ResidualSpec {
            activation: rest.activation,
            shortcut: rest.shortcut,
            layers,
        }));
    }
    let spec: LayerSpec = value
        .clone()
        .try_into()
        .map_err(|e| anyhow!("layer {at} ({ty}): {}", e.to_string().trim()))?;
    Ok(spec)
}

impl ModelSpec {
    /// Parses a model file's text and checks that its layers connect (see
    /// [`ModelSpec::shapes`]).
    pub fn parse(text: &str) -> Result<Self> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim()))?;
        let layers = raw
            .layers
            .iter()
            .enumerate()
            .map(|(i, v)| parse_layer(v, &[i]))
            .collect::<Result<Vec<_>>>()?;
        let spec = ModelSpec {
            name: raw.name,
            input: raw.input,
            classes: raw.classes,
            layers,
            training: raw.training,
            data: raw.data,
        };
        spec.shapes()?;
        spec.training.validate()?;
        spec.data.validate().context("in the [data] table")?;
        spec.check_training_fits()?;
        Ok(spec)
    }

    /// Checks the `[training]` options that depend on the model: one class weight per class,
    /// augmentations that fit the input shape.
    pub fn check_training_fits(&self) -> Result<()> {
        if let Some(w) = &self.training.class_weights {
            w.check(Some(self.classes))?;
        }
        if let Some(a) = &self.training.augment {
            a.check(self.input_shape()?)?;
        }
        Ok(())
    }

    /// Reads and parses a model file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the model file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the model file {}", path.display()))
    }

    /// The model file's text for this spec (what checkpoints embed); [`ModelSpec::parse`]
    /// gives back an equal spec.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| anyhow!("writing the model spec as TOML: {e}"))
    }

    /// The input shape as `[h, w, c]` (shorter `input`s are right-aligned: `[k]` is
    /// `[1, 1, k]`).
    pub fn input_shape(&self) -> Result<SampleShape> {
        let d = &self.input;
        if d.is_empty() || d.len() > 3 || d.contains(&0) {
            bail!(
                "input must be [h, w, c], [w, c] or [features] with sizes >= 1, got {:?}",
                d
            );
        }
        let mut s = [1; 3];
        s[3 - d.len()..].copy_from_slice(d);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{Init, OptimizerSpec, ScheduleSpec};

    const HEAD: &str = "name = \"t\"\ninput = [10, 3]\nclasses = 3\n";

    #[test]
    fn defaults_pairs_and_input_shapes() {
        let text = format!(
            "{HEAD}[[layers]]\ntype = \"conv2d\"\nfilters = 3\nkernel = [1, 5]\n\
             [[layers]]\ntype = \"global_avg_pool\"\n"
        );
        let spec = ModelSpec::parse(&text).unwrap();
        assert_eq!(spec.input_shape().unwrap(), [1, 10, 3]);
        let LayerSpec::Conv2d(c) = &spec.layers[0] else {
            panic!("{:?}", spec.layers[0])
        };
        assert_eq!(
            (c.kernel, c.stride, c.dilation),
            (Pair { h: 1, w: 5 }, Pair::square(1), Pair::square(1))
        );
        assert_eq!(
            (c.padding, c.activation, c.use_bias),
            (PaddingKind::Valid, Activation::None, true)
        );
        assert_eq!(spec.shapes().unwrap(), [[1, 6, 3], [1, 1, 3]]);
        assert_eq!(spec.training, TrainingConfig::default());
        assert_eq!(spec.training.init, Init::He);
        assert_eq!(spec.training.schedule, ScheduleSpec::Constant);
        assert!(matches!(
            spec.training.optimizer,
            OptimizerSpec::Adam { .. }
        ));
    }

    #[test]
    fn unknown_fields_anywhere_are_errors() {
        let layer = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 3\n";
        for (extra, word) in [
            (
                "[training]\noptimizer = { type = \"adam\", lr = 0.1 }\n",
                "lr",
            ),
            (
                "[training]\nearly_stopping = { patience = 2, metrik = \"loss\" }\n",
                "metrik",
            ),
            (
                "[training]\nschedule = { type = \"cosine\", every = 2 }\n",
                "every",
            ),
            ("[training]\nepoch = 3\n", "epoch"),
        ] {
            let e = format!(
                "{:#}",
                ModelSpec::parse(&format!("{HEAD}{layer}{extra}")).unwrap_err()
            );
            assert!(e.contains(word), "{e}");
        }
        let e = format!(
            "{:#}",
            ModelSpec::parse(&format!(
                "{HEAD}[[layers]]\ntype = \"residual\"\nactivaton = \"relu\"\nlayers = [ {{ type = \"relu\" }} ]\n{layer}"
            ))
            .unwrap_err()
        );
        assert!(
            e.contains("layer 0 (residual)") && e.contains("activaton"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            ModelSpec::parse(&format!(
                "{HEAD}[[layers]]\ntype = \"max_pool\"\nsize = [2, 2, 2]\n"
            ))
            .unwrap_err()
        );
        assert!(
            e.contains("layer 0 (max_pool)") && e.contains("[h, w]"),
            "{e}"
        );
    }

    #[test]
    fn lstm_defaults_shapes_and_unknown_options() {
        let text = format!(
            "{HEAD}[[layers]]\ntype = \"lstm\"\nunits = 6\nreturn_sequences = true\n\
             [[layers]]\ntype = \"lstm\"\nunits = 3\n"
        );
        let spec = ModelSpec::parse(&text).unwrap();
        let LayerSpec::Lstm(second) = &spec.layers[1] else {
            panic!("{:?}", spec.layers[1])
        };
        assert!(!second.return_sequences, "Keras' default");
        assert_eq!(spec.shapes().unwrap(), [[1, 10, 6], [1, 1, 3]]);
        let e = format!(
            "{:#}",
            ModelSpec::parse(&format!(
                "{HEAD}[[layers]]\ntype = \"lstm\"\nunits = 3\nreturn_sequence = true\n"
            ))
            .unwrap_err()
        );
        assert!(
            e.contains("layer 0 (lstm)") && e.contains("return_sequence"),
            "{e}"
        );
    }
}
