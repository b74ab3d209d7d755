//! Stochastic gradient descent with momentum, weight decay and global gradient-norm clipping,
//! and learning-rate schedules.
//!
//! One step, for gradients `g` summed over a mini-batch of `B` samples:
//!
//! 1. `g <- g / B`, then, if clipping is on and the global norm `||g||` (over every trained
//!    tensor) exceeds `max_norm`, `g <- g * max_norm / ||g||`;
//! 2. `d = g + weight_decay * w` (weights only: biases are not decayed);
//! 3. with momentum `mu > 0`: `v <- mu * v + d`, `w <- w - lr * v`; without: `w <- w - lr * d`.
//!
//! `lr` comes from the [`Schedule`] at the current step count.

use crate::Error;

/// The largest learning rate [`Sgd::validate`] accepts: far beyond any rate that trains (the
/// ones mote uses are 0.001 to 0.5); above it a rate is a typo or a unit mistake.
pub const MAX_LEARNING_RATE: f32 = 1000.0;

/// How the learning rate changes with the number of steps taken.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Schedule {
    /// The base rate at every step.
    Constant,
    /// The base rate times `factor` once per `every` steps: `lr * factor^(step / every)`.
    Step {
        /// Steps between decays (at least 1).
        every: u32,
        /// Multiplier applied at each decay (in `(0, 1]`: a larger one grows the rate without
        /// bound).
        factor: f32,
    },
    /// Half a cosine from the base rate down to `min` over `steps` steps, then `min`:
    /// `min + (lr - min) * (1 + cos(pi * step / steps)) / 2`.
    Cosine {
        /// Length of the decay (at least 1).
        steps: u32,
        /// Final rate (finite, >= 0, at most the base rate).
        min: f32,
    },
}

/// SGD hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sgd {
    /// Base learning rate (finite, > 0, at most [`MAX_LEARNING_RATE`]).
    pub learning_rate: f32,
    /// Momentum `mu` in `[0, 1)`; 0 keeps no velocity buffers at all.
    pub momentum: f32,
    /// L2 weight decay added to weight gradients (finite, >= 0); biases are not decayed.
    pub weight_decay: f32,
    /// Largest global gradient norm; larger gradients are scaled down to it. `None`: no
    /// clipping.
    pub clip_norm: Option<f32>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

impl Sgd {
    /// Plain SGD at a constant `learning_rate`: no momentum, decay or clipping.
    pub const fn new(learning_rate: f32) -> Self {
        Self {
            learning_rate,
            momentum: 0.0,
            weight_decay: 0.0,
            clip_norm: None,
            schedule: Schedule::Constant,
        }
    }

    /// The same with momentum `mu`.
    pub const fn with_momentum(mut self, mu: f32) -> Self {
        self.momentum = mu;
        self
    }

    /// The same with L2 weight decay.
    pub const fn with_weight_decay(mut self, decay: f32) -> Self {
        self.weight_decay = decay;
        self
    }

    /// The same with global gradient-norm clipping at `max_norm`.
    pub const fn with_clip_norm(mut self, max_norm: f32) -> Self {
        self.clip_norm = Some(max_norm);
        self
    }

    /// The same with a learning-rate schedule.
    pub const fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Whether the optimizer keeps a velocity buffer per trained parameter.
    pub fn keeps_velocity(&self) -> bool {
        self.momentum != 0.0
    }

    /// Checks every hyperparameter's range.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |what| Err(Error::InvalidParameter { what });
        let non_negative = |v: f32| v.is_finite() && v >= 0.0;
        let lr = self.learning_rate;
        if !(lr > 0.0 && lr <= MAX_LEARNING_RATE) {
            return invalid(why!("sgd learning rate (must be > 0 and at most 1000)"));
        }
        if !(self.momentum >= 0.0 && self.momentum < 1.0) {
            return invalid(why!("sgd momentum (must be in [0, 1))"));
        }
        if !non_negative(self.weight_decay) {
            return invalid(why!("sgd weight decay (must be finite and >= 0)"));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return invalid(why!("sgd clip norm (must be finite and > 0)"));
            }
        }
        match self.schedule {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, factor } => {
                if every == 0 || !(factor > 0.0 && factor <= 1.0) {
                    invalid(why!("step schedule (every >= 1, factor in (0, 1])"))
                } else {
                    Ok(())
                }
            }
            Schedule::Cosine { steps, min } => {
                if steps == 0 || !non_negative(min) || min > lr {
                    invalid(why!(
                        "cosine schedule (steps >= 1, min >= 0 and at most the learning rate)"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The learning rate for step number `step` (0 for the first step).
    pub fn learning_rate_at(&self, step: u32) -> f32 {
        let lr = self.learning_rate;
        match self.schedule {
            Schedule::Constant => lr,
            Schedule::Step { every, factor } => {
                let decays = step / every.max(1);
                lr * libm::powf(factor, decays as f32)
            }
            Schedule::Cosine { steps, min } => {
                let t = step.min(steps) as f32 / steps.max(1) as f32;
                let cos = libm::cosf(core::f32::consts::PI * t);
                min + (lr - min) * 0.5 * (1.0 + cos)
            }
        }
    }

    /// The factor that brings a gradient of global norm `norm` down to the clip norm (1 when
    /// there is no clipping or the norm is already within it).
    pub fn clip_factor(&self, norm: f32) -> f32 {
        match self.clip_norm {
            Some(max) if norm > max => max / norm,
            _ => 1.0,
        }
    }
}

/// The coefficients of one update of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Update {
    /// Learning rate for this step.
    pub learning_rate: f32,
    /// Momentum (ignored without a velocity buffer).
    pub momentum: f32,
    /// Weight decay for this tensor (0 for biases).
    pub weight_decay: f32,
    /// Factor applied to the raw gradient first: `clip / batch`.
    pub grad_scale: f32,
}

/// One parameter's update: its new value and velocity (the velocity stays 0 without a
/// buffer). The one formula both the check and the update use, so a checked update is the
/// update applied.
#[inline(always)]
fn updated(w: f32, g: f32, v: Option<f32>, u: &Update) -> (f32, f32) {
    let d = g * u.grad_scale + u.weight_decay * w;
    match v {
        Some(v) => {
            let v = u.momentum * v + d;
            (w - u.learning_rate * v, v)
        }
        None => (w - u.learning_rate * d, 0.0),
    }
}

fn check_lengths(params: usize, grads: usize, velocity: Option<usize>) -> Result<(), Error> {
    for actual in [Some(grads), velocity].into_iter().flatten() {
        if actual != params {
            return Err(Error::LengthMismatch {
                expected: params,
                actual,
            });
        }
    }
    Ok(())
}

/// Whether the SGD update [`sgd_update_f32`] would make of these buffers leaves every
/// parameter and velocity finite; nothing is written. The trainer checks every tensor's
/// update before applying any, so that a step either happens whole or not at all.
pub fn sgd_update_is_finite(
    params: &[f32],
    grads: &[f32],
    velocity: Option<&[f32]>,
    u: &Update,
) -> Result<bool, Error> {
    check_lengths(params.len(), grads.len(), velocity.map(<[f32]>::len))?;
    let finite = |(w, v): (f32, f32)| w.is_finite() && v.is_finite();
    Ok(match velocity {
        Some(vel) => params
            .iter()
            .zip(grads)
            .zip(vel)
            .all(|((&w, &g), &v)| finite(updated(w, g, Some(v), u))),
        None => params
            .iter()
            .zip(grads)
            .all(|(&w, &g)| finite(updated(w, g, None, u))),
    })
}

/// Applies one SGD update to `params` from `grads` (same length), with the velocity buffer if
/// there is one (same length; zeros before the first step). Writes whatever the arithmetic
/// gives: check with [`sgd_update_is_finite`] first to refuse an update that overflows.
pub fn sgd_update_f32(
    params: &mut [f32],
    grads: &[f32],
    velocity: Option<&mut [f32]>,
    u: &Update,
) -> Result<(), Error> {
    check_lengths(
        params.len(),
        grads.len(),
        velocity.as_deref().map(<[f32]>::len),
    )?;
    match velocity {
        Some(vel) => {
            for ((w, &g), v) in params.iter_mut().zip(grads).zip(vel.iter_mut()) {
                (*w, *v) = updated(*w, g, Some(*v), u);
            }
        }
        None => {
            for (w, &g) in params.iter_mut().zip(grads) {
                *w = updated(*w, g, None, u).0;
            }
        }
    }
    Ok(())
}

/// Sum of squares of `values`, in f32 (an overflow shows up as infinity, which the trainer
/// treats as a non-finite gradient).
pub fn squared_norm_f32(values: &[f32]) -> f32 {
    values.iter().map(|&v| v * v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let base = Sgd::new(0.1);
        assert_eq!(base.learning_rate_at(1000), 0.1);
        let step = base.with_schedule(Schedule::Step {
            every: 10,
            factor: 0.5,
        });
        assert_eq!(step.learning_rate_at(9), 0.1);
        assert_eq!(step.learning_rate_at(10), 0.05);
        assert_eq!(step.learning_rate_at(25), 0.025);
        let cos = base.with_schedule(Schedule::Cosine {
            steps: 100,
            min: 0.01,
        });
        assert_eq!(cos.learning_rate_at(0), 0.1);
        assert!((cos.learning_rate_at(50) - 0.055).abs() < 1e-7);
        assert!((cos.learning_rate_at(100) - 0.01).abs() < 1e-7);
        assert!((cos.learning_rate_at(5000) - 0.01).abs() < 1e-7);
        assert!(cos.learning_rate_at(30) > cos.learning_rate_at(31));
    }

    #[test]
    fn validation_rejects_out_of_range_hyperparameters() {
        assert!(Sgd::new(0.1).validate().is_ok());
        assert!(Sgd::new(f32::NAN).validate().is_err());
        assert!(Sgd::new(0.1).with_momentum(1.0).validate().is_err());
        assert!(Sgd::new(0.1).with_weight_decay(-1.0).validate().is_err());
        assert!(Sgd::new(0.1).with_clip_norm(0.0).validate().is_err());
        let s = Schedule::Step {
            every: 0,
            factor: 0.5,
        };
        assert!(Sgd::new(0.1).with_schedule(s).validate().is_err());
        let c = Schedule::Cosine { steps: 0, min: 0.0 };
        assert!(Sgd::new(0.1).with_schedule(c).validate().is_err());
    }

    #[test]
    fn settings_that_cannot_be_meant_are_refused() {
        for lr in [0.0, -0.1, 3e38, 1001.0, f32::INFINITY, f32::NAN] {
            assert!(Sgd::new(lr).validate().is_err(), "learning rate {lr}");
        }
        assert!(Sgd::new(MAX_LEARNING_RATE).validate().is_ok());
        for mu in [-0.1, 1.0, 1.5, f32::NAN, f32::INFINITY] {
            assert!(
                Sgd::new(0.1).with_momentum(mu).validate().is_err(),
                "momentum {mu}"
            );
        }
        assert!(Sgd::new(0.1).with_momentum(0.0).validate().is_ok());
        assert!(Sgd::new(0.1).with_momentum(0.999).validate().is_ok());
        // A "decay" that grows the rate, and a cosine that ends above where it starts.
        for factor in [1.5, f32::INFINITY, 0.0, f32::NAN] {
            let s = Schedule::Step { every: 1, factor };
            assert!(
                Sgd::new(0.1).with_schedule(s).validate().is_err(),
                "{factor}"
            );
        }
        let s = Schedule::Step {
            every: 1,
            factor: 1.0,
        };
        assert!(Sgd::new(0.1).with_schedule(s).validate().is_ok());
        let c = Schedule::Cosine {
            steps: 10,
            min: 0.2,
        };
        assert!(Sgd::new(0.1).with_schedule(c).validate().is_err());
        let c = Schedule::Cosine {
            steps: 10,
            min: 0.1,
        };
        assert!(Sgd::new(0.1).with_schedule(c).validate().is_ok());
    }

    #[test]
    fn an_overflowing_update_is_seen_before_it_is_written() {
        let u = Update {
            learning_rate: 3e38,
            momentum: 0.9,
            weight_decay: 0.0,
            grad_scale: 1.0,
        };
        let (w, g, v) = ([0.5f32, -0.25], [2.0f32, 0.0], [0.0f32, 0.0]);
        assert_eq!(sgd_update_is_finite(&w, &g, Some(&v), &u), Ok(false));
        assert_eq!(sgd_update_is_finite(&w, &g, None, &u), Ok(false));
        let tame = Update {
            learning_rate: 0.1,
            ..u
        };
        assert_eq!(sgd_update_is_finite(&w, &g, Some(&v), &tame), Ok(true));
        // What the check approves is exactly what the update writes.
        let (mut w2, mut v2) = (w, v);
        sgd_update_f32(&mut w2, &g, Some(&mut v2), &tame).unwrap();
        assert!(w2.iter().chain(&v2).all(|x| x.is_finite()));
        assert!(sgd_update_is_finite(&w, &g[..1], None, &u).is_err());
    }

    #[test]
    fn momentum_weight_decay_and_scale() {
        // w = 1, g = 4 over a batch of 2 (scale 0.5): d = 2 + 0.1 * 1 = 2.1.
        let (mut w, mut v) = ([1.0f32], [0.0f32]);
        let u = Update {
            learning_rate: 0.5,
            momentum: 0.9,
            weight_decay: 0.1,
            grad_scale: 0.5,
        };
        sgd_update_f32(&mut w, &[4.0], Some(&mut v), &u).unwrap();
        assert_eq!(v, [2.1]);
        assert!((w[0] - (1.0 - 1.05)).abs() < 1e-7);
        // Second step: d = 2 + 0.1 * w; v = 0.9 * 2.1 + d.
        let w0 = w[0];
        sgd_update_f32(&mut w, &[4.0], Some(&mut v), &u).unwrap();
        let v_want = 0.9 * 2.1 + (2.0 + 0.1 * w0);
        assert!((v[0] - v_want).abs() < 1e-6);
        assert!((w[0] - (w0 - 0.5 * v_want)).abs() < 1e-6);
        // Without velocity: plain SGD.
        let mut w = [1.0f32];
        sgd_update_f32(&mut w, &[4.0], None, &u).unwrap();
        assert!((w[0] - (1.0 - 0.5 * 2.1)).abs() < 1e-7);
        assert!(sgd_update_f32(&mut w, &[1.0, 2.0], None, &u).is_err());
    }

    #[test]
    fn clipping_factor() {
        let s = Sgd::new(0.1).with_clip_norm(2.0);
        assert_eq!(s.clip_factor(1.0), 1.0);
        assert_eq!(s.clip_factor(8.0), 0.25);
        assert_eq!(Sgd::new(0.1).clip_factor(1e9), 1.0);
    }
}
