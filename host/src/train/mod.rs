//! The host's f32 training engine: Keras-Sequential-like model files ([`ModelSpec`], TOML),
//! batched NHWC forward and backward passes, optimizers, schedules and the epoch loop.
//!
//! mote-core's `train` module is the specification; this engine is batched for speed but
//! calls mote-core for the element-wise training math (activations and their derivatives,
//! softmax and its backward pass, the per-sample cross-entropy, gradient-norm clipping and the
//! SGD update), follows its rules (NaN propagates; a non-finite input, loss or gradient is
//! refused before any weight changes), and is tested layer by layer against mote-core's
//! backward passes.
//!
//! Every layer computes what mote-core's f32 kernel for it computes (TFLite's geometry,
//! including asymmetric SAME padding) and keeps its parameters in mote-core's layouts: conv
//! filters OHWI `[out, kh, kw, in]`, depthwise filters `[1, kh, kw, in * multiplier]` (output
//! channel `ic * multiplier + m`), dense weights `[out, in]`, biases `[out]`. A trained
//! [`Network`] exports as a list of [`ExportLayer`]s or as a
//! [`FloatModel`](crate::float_model::FloatModel) (batch norm folded, dropout gone), which is
//! what the quantizer takes.
//!
//! A model file names the input (`input = [h, w, c]`, per sample), the number of `classes`,
//! the `[[layers]]` in order (`type` = one of [`LAYER_TYPES`]; options as in [`LayerSpec`]'s
//! variants: `kernel`/`stride`/`dilation`/`size` as a number or `[h, w]`, `padding` `"same"`
//! or `"valid"` (the default, as in Keras), fused `activation` `"none"`, `"relu"` or
//! `"relu6"`) and a `[training]` table ([`TrainingConfig`]). Unknown fields and layer types are
//! errors; shape errors name the layer (`layer 3 (dense)`, `layer 2.1` inside a residual
//! block) and both shapes. The last layer's output is taken as logits, or, when it is a
//! `softmax`, its input is (the loss is softmax cross-entropy from logits either way).
//! See `examples/*.toml` at the repository root.
//!
//! A `residual` block adds its input to its inner `layers`' output. When the inner layers
//! change the shape (a stride, more channels) the input goes through a projection first, a
//! 1x1 convolution with the matching stride and channels (`shortcut` is automatic; write
//! `shortcut = "projection"` or `"identity"` to insist on one); see [`ResidualSpec`] and
//! `examples/resnet8.toml`.
//!
//! `[training]` keys: `epochs`, `batch_size`, `optimizer`, `schedule`, `init`,
//! `early_stopping`, `clip_norm`, `seed`, and
//! - `class_weights = "balanced"` or `[w0, w1, ...]` (one per class): the training loss
//!   becomes the class-weighted mean, to counter imbalanced classes ([`ClassWeights`]);
//!   accuracy and the validation loss stay unweighted;
//! - `[training.augment]`: random changes to each training batch, seeded by `seed`
//!   ([`AugmentSpec`]): `time_shift`, `scale`, `noise` for sequences, `shift`,
//!   `flip_horizontal`, `flip_vertical` (and `scale`, `noise`) for images. Options that do
//!   not fit the input shape are errors.
//!
//! Data comes in as plain slices: features row-major (`n * sample_len` values, each sample in
//! the network's input shape, NHWC) and one `u32` label per sample.
//!
//! ```no_run
//! use mote_host::train::{self, ModelSpec, Network, NoCallbacks};
//! # fn main() -> anyhow::Result<()> {
//! let spec = ModelSpec::from_file("examples/digits_mlp.toml")?;
//! let mut net = Network::new(&spec)?;
//! # let (x, y, vx, vy): (Vec<f32>, Vec<u32>, Vec<f32>, Vec<u32>) = Default::default();
//! let history = train::train(&mut net, &x, &y, &vx, &vy, &spec.training, &mut NoCallbacks)?;
//! let float_model = net.to_float_model(); // for mote_host::quantize::quantize
//! # let _ = (history, float_model);
//! # Ok(())
//! # }
//! ```
//!
//! Everything is deterministic for a given seed: initialization, shuffling and dropout draw
//! from seeded streams, and every parallel reduction sums fixed-size blocks in a fixed order,
//! so the result does not depend on the number of threads. Checkpoints
//! ([`Network::save`], [`Network::load`]) are a small binary format that restores a network
//! bit for bit (see [`CHECKPOINT_MAGIC`]).

mod augment;
mod checkpoint;
mod config;
mod conv;
mod dense;
mod depthwise;
mod export;
mod layers;
mod loss;
mod lstm;
mod memory;
mod network;
mod node;
mod norm;
mod optim;
mod pool;
mod shapes;
mod spec;
mod tensor;
mod trainer;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod gradcheck;

pub use checkpoint::CHECKPOINT_MAGIC;
pub use config::{
    AugmentSpec, ClassWeights, EarlyStoppingSpec, Init, Metric, OptimizerSpec, ScheduleSpec, Shift,
    TrainingConfig,
};
pub use export::{ExportLayer, ExportedNetwork};
pub use loss::{softmax_cross_entropy, weighted_softmax_cross_entropy};
pub use network::{LayerInfo, LayerOutput, Network, ParamView};
pub use optim::{EarlyStopping, LrSchedule, Optimizer};
pub use spec::{
    Activation, BatchNormSpec, ConvSpec, DenseSpec, DepthwiseSpec, DropoutSpec, LayerSpec,
    LstmSpec, ModelSpec, PaddingKind, Pair, PoolSpec, ResidualSpec, SeparableSpec, Shortcut,
    LAYER_TYPES,
};
pub use tensor::{Rng, SampleShape, Tensor};
pub use trainer::{
    evaluate, throughput, train, BatchEvent, Callbacks, EpochStats, Evaluation, History,
    NoCallbacks,
};
