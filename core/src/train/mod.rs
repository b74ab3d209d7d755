//! On-device training: backward passes, losses, SGD and a sequential network over caller-owned
//! buffers. No heap: every buffer belongs to the caller, and its size is known before anything
//! runs ([`TrainingPlan::bytes`]).
//!
//! # Conventions
//!
//! - Layout is NHWC, as in [`ops`](crate::ops); the forward passes are the f32 kernels there.
//! - A backward pass takes `grad_output`, the gradient of the loss with respect to the layer's
//!   output *before* its fused activation. [`activation_backward_f32`] turns the gradient with
//!   respect to the activated output into that, using only the activated output.
//! - Gradients with respect to parameters are *accumulated* (`+=`), so a mini-batch is a
//!   sequence of backward passes followed by one optimizer step; gradients with respect to the
//!   input are *overwritten*.
//! - Every function checks its buffers and returns an [`Error`] instead of panicking.
//! - These functions define the training math. The host's batched trainer (`mote-host`) has its
//!   own layer loops for speed but calls the activations, their derivatives, the softmax
//!   cross-entropy and the SGD update from here, and is tested layer by layer against the
//!   backward passes here.
//!
//! # Pieces
//!
//! | file | what |
//! |---|---|
//! | [`dense`] | fully connected backward |
//! | [`conv`] | conv2d backward, any kernel, stride, padding, dilation (1x1 pointwise included) |
//! | [`depthwise`] | depthwise conv2d backward, any depth multiplier |
//! | [`pool`] | average, max and global average pooling backward |
//! | [`activation`] | ReLU, ReLU6 and their derivatives (per value, per slice); softmax backward |
//! | [`loss`] | softmax cross-entropy from logits, mean squared error |
//! | [`optim`] | SGD with momentum, weight decay, gradient-norm clipping; LR schedules |
//! | [`network`] | a sequential network of trainable and frozen layers |
//! | [`plan`] | the memory plan: exact bytes for activations, gradients, optimizer state |
//! | [`trainer`] | the [`Trainer`]: forward, backward, mini-batch steps |
//! | [`learner`] | the [`Learner`]: one labelled sample at a time, with replay |

pub mod activation;
pub mod conv;
pub mod dense;
pub mod depthwise;
pub mod head;
pub mod learner;
pub mod loss;
pub mod network;
pub mod optim;
pub mod plan;
pub mod pool;
pub mod trainer;

#[cfg(test)]
mod network_tests;

pub use activation::{activation_backward_f32, activation_f32, softmax_backward_f32};
pub use conv::conv2d_backward_f32;
pub use dense::dense_backward_f32;
pub use depthwise::depthwise_conv2d_backward_f32;
pub use head::Head;
pub use learner::{Continual, Learned, Learner, ReplayMemory};
pub use loss::{mean_squared_error_f32, softmax_cross_entropy_f32};
pub use network::{dequantize_features, Layer, LayerKind, Network, Train};
pub use optim::{Schedule, Sgd};
pub use plan::{Memory, TrainingPlan};
pub use pool::{
    average_pool2d_backward_f32, global_average_pool_backward_f32, max_pool2d_backward_f32,
};
pub use trainer::{Target, Trainer};

use crate::Error;

/// Where a layer's backward pass writes its gradients. Each is optional: leave out what is not
/// needed (the input gradient of the first trained layer, the weights of a bias-only layer).
#[derive(Debug, Default)]
pub struct Grads<'a> {
    /// Gradient with respect to the input, same length as the input; overwritten.
    pub input: Option<&'a mut [f32]>,
    /// Gradient with respect to the weights (filter), same layout; accumulated.
    pub weights: Option<&'a mut [f32]>,
    /// Gradient with respect to the bias, one per output channel; accumulated.
    pub bias: Option<&'a mut [f32]>,
}

impl Grads<'_> {
    /// Checks the lengths of the buffers present against the input, weight and bias lengths.
    fn check(&self, input: usize, weights: usize, bias: usize) -> Result<(), Error> {
        let pairs = [
            (self.input.as_deref().map(<[f32]>::len), input),
            (self.weights.as_deref().map(<[f32]>::len), weights),
            (self.bias.as_deref().map(<[f32]>::len), bias),
        ];
        for (got, expected) in pairs {
            match got {
                Some(actual) if actual != expected => {
                    return Err(Error::LengthMismatch { expected, actual })
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `Err(NonFinite)` unless every value is finite.
pub(crate) fn check_finite(values: &[f32], what: crate::Why) -> Result<(), Error> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite { what })
    }
}

/// A bug in a plan computed by this module: never expected, reported rather than panicking.
pub(crate) fn plan_bug() -> Error {
    Error::InvalidParameter {
        what: why!("training plan inconsistent with its buffers (internal error)"),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Finite-difference helpers shared by the gradient checks.
    use std::vec::Vec;

    pub(crate) use crate::test_support::Rng;

    /// Relative error of an analytic gradient against a numeric one, with a floor on the
    /// denominator so that gradients that are zero up to rounding do not divide by ~0.
    pub(crate) fn rel_err(analytic: f32, numeric: f64) -> f64 {
        let a = f64::from(analytic);
        (a - numeric).abs() / a.abs().max(numeric.abs()).max(1e-3)
    }

    /// Central difference of `f` at every element of `x` (f64 throughout).
    pub(crate) fn numeric_grad(x: &[f64], eps: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
        let mut x = x.to_vec();
        (0..x.len())
            .map(|i| {
                let keep = x[i];
                x[i] = keep + eps;
                let up = f(&x);
                x[i] = keep - eps;
                let down = f(&x);
                x[i] = keep;
                (up - down) / (2.0 * eps)
            })
            .collect()
    }

    /// Largest [`rel_err`] over two gradients of the same length.
    pub(crate) fn max_rel_err(analytic: &[f32], numeric: &[f64]) -> f64 {
        assert_eq!(analytic.len(), numeric.len());
        analytic
            .iter()
            .zip(numeric)
            .map(|(&a, &n)| rel_err(a, n))
            .fold(0.0, f64::max)
    }

    /// Largest absolute difference: how the f32 forward kernels are compared with the f64
    /// references (values are O(1)).
    pub(crate) fn max_abs_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(&g, &w)| (f64::from(g) - w).abs())
            .fold(0.0, f64::max)
    }

    pub(crate) fn to64(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| f64::from(v)).collect()
    }

    pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
}
