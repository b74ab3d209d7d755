//! The `[training]` table of a model file: optimizer, learning-rate schedule, initialization,
//! early stopping, class weights, data augmentation and seed.

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

pub use super::augment::{AugmentSpec, Shift};

/// Weight initialization (biases start at zero, batch norm at identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He normal: `N(0, 2 / fan_in)`.
    #[default]
    He,
    /// Xavier (Glorot) uniform: `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`.
    Xavier,
}

/// The optimizer. `weight_decay` is an L2 penalty added to the gradient of weights and
/// filters (not biases or batch norm parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// SGD with (heavy-ball) momentum: `v = momentum * v + g; w -= lr * v`.
    Sgd {
        /// Learning rate (default 0.01).
        #[serde(default = "lr_sgd")]
        learning_rate: f32,
        /// Momentum (default 0.9).
        #[serde(default = "default_momentum_sgd")]
        momentum: f32,
        /// L2 penalty (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
    /// Adam with bias correction.
    Adam {
        /// Learning rate (default 0.001).
        #[serde(default = "lr_adaptive")]
        learning_rate: f32,
        /// First-moment decay (default 0.9).
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// Second-moment decay (default 0.999).
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// Added to the denominator (default 1e-7, as Keras).
        #[serde(default = "default_eps")]
        epsilon: f32,
        /// L2 penalty (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
    /// RMSProp: `s = rho * s + (1 - rho) * g^2; w -= lr * g / (sqrt(s) + epsilon)`.
    Rmsprop {
        /// Learning rate (default 0.001).
        #[serde(default = "lr_adaptive")]
        learning_rate: f32,
        /// Decay of the squared-gradient average (default 0.9).
        #[serde(default = "default_rho")]
        rho: f32,
        /// Added to the denominator (default 1e-7).
        #[serde(default = "default_eps")]
        epsilon: f32,
        /// L2 penalty (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
}

fn lr_sgd() -> f32 {
    0.01
}
fn lr_adaptive() -> f32 {
    0.001
}
fn default_momentum_sgd() -> f32 {
    0.9
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-7
}
fn default_rho() -> f32 {
    0.9
}

impl OptimizerSpec {
    /// The base learning rate.
    pub fn learning_rate(&self) -> f32 {
        match *self {
            OptimizerSpec::Sgd { learning_rate, .. }
            | OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::Rmsprop { learning_rate, .. } => learning_rate,
        }
    }
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Adam {
            learning_rate: lr_adaptive(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_eps(),
            weight_decay: 0.0,
        }
    }
}

/// How the learning rate changes over training (evaluated at every batch).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// The base rate throughout.
    #[default]
    Constant,
    /// `base * factor^floor(epoch / every)`.
    Step {
        /// Epochs between drops.
        every: usize,
        /// Multiplier at each drop.
        factor: f32,
    },
    /// Half a cosine from the base rate at the start (after the warm-up) to `min_lr` at the
    /// end of the last epoch.
    Cosine {
        /// Final rate (default 0).
        #[serde(default)]
        min_lr: f32,
        /// Epochs of linear warm-up from 0 (default 0).
        #[serde(default)]
        warmup_epochs: usize,
    },
}

/// What early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Held-out accuracy (higher is better).
    #[default]
    ValAccuracy,
    /// Held-out loss (lower is better).
    ValLoss,
    /// Training accuracy.
    Accuracy,
    /// Training loss.
    Loss,
}

impl Metric {
    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::ValAccuracy | Metric::Accuracy)
    }

    /// Whether it needs a validation set.
    pub fn needs_validation(self) -> bool {
        matches!(self, Metric::ValAccuracy | Metric::ValLoss)
    }
}

/// Stop when `metric` has not improved by more than `min_delta` for `patience` epochs; the
/// best epoch's weights are restored at the end of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// The watched metric (default val_accuracy).
    #[serde(default)]
    pub metric: Metric,
    /// Smallest change that counts as an improvement (default 0).
    #[serde(default)]
    pub min_delta: f32,
}

/// `class_weights`: how much each class's samples count in the training loss and its
/// gradient. `"balanced"` gives class `c` the weight `n / (classes * count_c)` over the `n`
/// training labels (a class with no training samples gets 1, which nothing reads); a list gives
/// one weight per class, each finite and positive.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    /// Inversely proportional to the class frequencies in the training labels.
    Balanced,
    /// One weight per class, in class order.
    List(Vec<f32>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ClassWeightsRepr {
    Name(String),
    List(Vec<f32>),
}

impl TryFrom<ClassWeightsRepr> for ClassWeights {
    type Error = String;
    fn try_from(r: ClassWeightsRepr) -> Result<Self, String> {
        match r {
            ClassWeightsRepr::Name(n) if n == "balanced" => Ok(ClassWeights::Balanced),
            ClassWeightsRepr::Name(n) => Err(format!(
                "class_weights must be \"balanced\" or a list of one weight per class, got \"{n}\""
            )),
            ClassWeightsRepr::List(v) => Ok(ClassWeights::List(v)),
        }
    }
}

impl From<ClassWeights> for ClassWeightsRepr {
    fn from(w: ClassWeights) -> Self {
        match w {
            ClassWeights::Balanced => ClassWeightsRepr::Name("balanced".into()),
            ClassWeights::List(v) => ClassWeightsRepr::List(v),
        }
    }
}

impl Serialize for ClassWeights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ClassWeightsRepr::from(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClassWeights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ClassWeights::try_from(ClassWeightsRepr::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ClassWeights {
    /// Checks an explicit list: every weight finite and positive and, when `classes` is known,
    /// one per class.
    pub fn check(&self, classes: Option<usize>) -> Result<()> {
        let ClassWeights::List(w) = self else {
            return Ok(());
        };
        if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            bail!("training: class_weights must be finite and positive, got {bad}");
        }
        if let Some(classes) = classes {
            ensure!(
                w.len() == classes,
                "training: class_weights has {} weights for {classes} classes",
                w.len()
            );
        }
        Ok(())
    }

    /// The weight of each class for training on `labels` (all below `classes`).
    pub fn resolve(&self, labels: &[u32], classes: usize) -> Result<Vec<f32>> {
        self.check(Some(classes))?;
        Ok(match self {
            ClassWeights::List(w) => w.clone(),
            ClassWeights::Balanced => {
                let mut count = vec![0usize; classes];
                for &l in labels {
                    if let Some(c) = count.get_mut(l as usize) {
                        *c += 1;
                    }
                }
                let n = labels.len() as f64;
                count
                    .iter()
                    .map(|&c| match c {
                        0 => 1.0,
                        c => (n / (classes as f64 * c as f64)) as f32,
                    })
                    .collect()
            }
        })
    }
}

/// The `[training]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the training set (default 10).
    pub epochs: usize,
    /// Samples per batch (default 32).
    pub batch_size: usize,
    /// The optimizer (default Adam, learning rate 0.001).
    pub optimizer: OptimizerSpec,
    /// The learning-rate schedule (default constant).
    pub schedule: ScheduleSpec,
    /// Weight initialization (default he).
    pub init: Init,
    /// Early stopping (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// Largest global norm of the batch's mean gradient (over every trainable parameter);
    /// a larger gradient is scaled down to it before the optimizer (and its weight decay) sees
    /// it, as mote-core's `Sgd::clip_norm` does (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f32>,
    /// Per-class loss weights (default none: every sample counts the same). With weights the
    /// training loss reported per batch and epoch is the weighted mean
    /// `sum(w[y_i] * loss_i) / sum(w[y_i])` over a batch; accuracy and the validation loss
    /// stay unweighted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<ClassWeights>,
    /// Data augmentation of the training batches (default none); see [`AugmentSpec`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentSpec>,
    /// Seeds initialization, shuffling, dropout and augmentation (default 0).
    pub seed: u64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            optimizer: OptimizerSpec::default(),
            schedule: ScheduleSpec::default(),
            init: Init::default(),
            early_stopping: None,
            clip_norm: None,
            class_weights: None,
            augment: None,
            seed: 0,
        }
    }
}

impl TrainingConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            bail!("training: epochs and batch_size must be at least 1");
        }
        let lr = self.optimizer.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            bail!("training: the learning rate must be positive, got {lr}");
        }
        if let OptimizerSpec::Sgd {
            learning_rate,
            momentum,
            weight_decay,
        } = self.optimizer
        {
            // The ranges mote-core's SGD accepts: the same update, so the same limits.
            let sgd = mote_core::train::Sgd::new(learning_rate)
                .with_momentum(momentum)
                .with_weight_decay(weight_decay);
            if let Err(e) = sgd.validate() {
                bail!("training: {e}");
            }
        }
        // Decays outside [0, 1) make the moving averages grow without bound (or flip sign);
        // a non-positive epsilon can divide by zero.
        let unit = |v: f32| (0.0..1.0).contains(&v);
        let (decays, epsilon) = match self.optimizer {
            OptimizerSpec::Sgd { .. } => (None, None),
            OptimizerSpec::Adam {
                beta1,
                beta2,
                epsilon,
                ..
            } => (Some((beta1, beta2, "adam beta1 and beta2")), Some(epsilon)),
            OptimizerSpec::Rmsprop { rho, epsilon, .. } => {
                (Some((rho, rho, "rmsprop rho")), Some(epsilon))
            }
        };
        if let Some((a, b, what)) = decays {
            if !(unit(a) && unit(b)) {
                bail!("training: {what} must be in [0, 1), got {a} and {b}");
            }
        }
        if let Some(e) = epsilon {
            if !(e.is_finite() && e > 0.0) {
                bail!("training: the optimizer's epsilon must be finite and > 0, got {e}");
            }
        }
        if let Some(c) = self.clip_norm {
            if let Err(e) = mote_core::train::Sgd::new(lr).with_clip_norm(c).validate() {
                bail!("training: {e}");
            }
        }
        if let ScheduleSpec::Step { every: 0, .. } = self.schedule {
            bail!("training: schedule step needs every >= 1");
        }
        if let Some(w) = &self.class_weights {
            w.check(None)?;
        }
        if let Some(a) = &self.augment {
            a.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_and_rmsprop_decays_outside_0_1_are_refused() {
        let adam = |beta1: f32, beta2: f32, epsilon: f32| TrainingConfig {
            optimizer: OptimizerSpec::Adam {
                learning_rate: 0.001,
                beta1,
                beta2,
                epsilon,
                weight_decay: 0.0,
            },
            ..TrainingConfig::default()
        };
        assert!(adam(0.9, 0.999, 1e-7).validate().is_ok());
        assert!(adam(0.0, 0.0, 1e-7).validate().is_ok());
        for (b1, b2, eps) in [
            (1.0, 0.999, 1e-7),
            (0.9, 1.0, 1e-7),
            (-0.1, 0.999, 1e-7),
            (0.9, f32::NAN, 1e-7),
            (0.9, 0.999, 0.0),
            (0.9, 0.999, f32::INFINITY),
        ] {
            let err = adam(b1, b2, eps).validate().unwrap_err().to_string();
            assert!(err.contains("adam") || err.contains("epsilon"), "{err}");
        }
        let rmsprop = |rho: f32| TrainingConfig {
            optimizer: OptimizerSpec::Rmsprop {
                learning_rate: 0.001,
                rho,
                epsilon: 1e-7,
                weight_decay: 0.0,
            },
            ..TrainingConfig::default()
        };
        assert!(rmsprop(0.9).validate().is_ok());
        assert!(rmsprop(1.0).validate().is_err());
    }

    #[test]
    fn sgd_hyperparameters_have_mote_cores_ranges() {
        let sgd = |momentum: f32, weight_decay: f32| TrainingConfig {
            optimizer: OptimizerSpec::Sgd {
                learning_rate: 0.1,
                momentum,
                weight_decay,
            },
            ..TrainingConfig::default()
        };
        assert!(sgd(0.9, 1e-4).validate().is_ok());
        assert!(sgd(0.0, 0.0).validate().is_ok());
        for (m, wd) in [
            (1.0, 0.0),
            (-0.1, 0.0),
            (f32::NAN, 0.0),
            (0.9, -1e-4),
            (0.9, f32::INFINITY),
        ] {
            let err = sgd(m, wd).validate().unwrap_err().to_string();
            assert!(err.contains("sgd"), "{m} {wd}: {err}");
        }
    }
}
