//! Optimizers (SGD with momentum, Adam, RMSProp), learning-rate schedules and early stopping.
//! Weight initialization (He, Xavier) is drawn when a [`Network`] is built.
//!
//! One step follows mote-core's (`mote_core::train::optim`): `g` is the batch-mean gradient,
//! scaled down to the clip norm when its global norm exceeds it; SGD is mote-core's update
//! ([`sgd_update_f32`]): `d = g + weight_decay * w` (weights and filters only),
//! `v = momentum * v + d`, `w -= lr * v`. Adam and RMSProp add the same L2 term to `g`.

use anyhow::{ensure, Result};
use mote_core::train::optim::{sgd_update_f32, squared_norm_f32, Update};
use mote_core::train::Sgd;

use super::config::{EarlyStoppingSpec, OptimizerSpec, ScheduleSpec};
use super::network::Network;

/// An optimizer and its per-parameter state.
#[derive(Debug, Clone)]
pub struct Optimizer {
    spec: OptimizerSpec,
    /// Momentum (SGD), first moment (Adam) or squared-gradient average (RMSProp).
    first: Vec<Vec<f32>>,
    /// Second moment (Adam).
    second: Vec<Vec<f32>>,
    steps: u64,
    clip_norm: Option<f32>,
}

impl Optimizer {
    /// A fresh optimizer (zero state).
    pub fn new(spec: &OptimizerSpec) -> Self {
        Self {
            spec: spec.clone(),
            first: Vec::new(),
            second: Vec::new(),
            steps: 0,
            clip_norm: None,
        }
    }

    /// The same, clipping the global gradient norm at `clip_norm` (see
    /// [`TrainingConfig::clip_norm`](super::TrainingConfig::clip_norm)).
    pub fn with_clip_norm(mut self, clip_norm: Option<f32>) -> Self {
        self.clip_norm = clip_norm;
        self
    }

    /// Updates every trainable parameter of `net` from its gradient, at learning rate `lr`.
    ///
    /// As mote-core's trainer does, a non-finite gradient (the sum of squares over every
    /// trainable parameter is not finite) refuses the step: nothing is updated, the optimizer's
    /// state included, and the result is an error.
    pub fn step(&mut self, net: &mut Network, lr: f32) -> Result<()> {
        let mut squares = 0.0f32;
        net.visit_params(&mut |p| {
            if p.trainable {
                squares += squared_norm_f32(&p.grad);
            }
        });
        ensure!(squares.is_finite(), "the gradient is not finite");
        // mote-core's clipping rule (only the clip norm of this `Sgd` is read).
        let clip = Sgd {
            clip_norm: self.clip_norm,
            ..Sgd::new(lr)
        };
        let scale = clip.clip_factor(squares.sqrt());
        self.steps += 1;
        let t = self.steps as i32;
        let mut index = 0;
        let (first, second, spec) = (&mut self.first, &mut self.second, &self.spec);
        net.visit_params(&mut |p| {
            if !p.trainable {
                return;
            }
            if first.len() <= index {
                first.push(vec![0.0; p.value.len()]);
                second.push(Vec::new());
            }
            let m = &mut first[index];
            let decay = |wd: f32| if p.decay { wd } else { 0.0 };
            match *spec {
                OptimizerSpec::Sgd {
                    momentum,
                    weight_decay,
                    ..
                } => {
                    // mote-core's update; the gradient is already the batch mean, so only
                    // clipping scales it.
                    let update = Update {
                        learning_rate: lr,
                        momentum,
                        weight_decay: decay(weight_decay),
                        grad_scale: scale,
                    };
                    sgd_update_f32(&mut p.value, &p.grad, Some(&mut m[..]), &update)
                        .expect("a parameter, its gradient and its velocity have one length");
                }
                OptimizerSpec::Adam {
                    beta1,
                    beta2,
                    epsilon,
                    weight_decay,
                    ..
                } => {
                    let wd = decay(weight_decay);
                    let v = &mut second[index];
                    if v.is_empty() {
                        v.resize(p.value.len(), 0.0);
                    }
                    let c1 = 1.0 - beta1.powi(t);
                    let c2 = 1.0 - beta2.powi(t);
                    for (((w, g), m), v) in p
                        .value
                        .iter_mut()
                        .zip(&p.grad)
                        .zip(m.iter_mut())
                        .zip(v.iter_mut())
                    {
                        let g = g * scale + wd * *w;
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= lr * (*m / c1) / ((*v / c2).sqrt() + epsilon);
                    }
                }
                OptimizerSpec::Rmsprop {
                    rho,
                    epsilon,
                    weight_decay,
                    ..
                } => {
                    let wd = decay(weight_decay);
                    for ((w, g), s) in p.value.iter_mut().zip(&p.grad).zip(m.iter_mut()) {
                        let g = g * scale + wd * *w;
                        *s = rho * *s + (1.0 - rho) * g * g;
                        *w -= lr * g / (s.sqrt() + epsilon);
                    }
                }
            }
            index += 1;
        });
        Ok(())
    }
}

/// The learning rate at each batch.
#[derive(Debug, Clone)]
pub struct LrSchedule {
    base: f32,
    spec: ScheduleSpec,
    epochs: usize,
}

impl LrSchedule {
    /// The schedule for `epochs` epochs starting from `base`.
    pub fn new(base: f32, spec: &ScheduleSpec, epochs: usize) -> Self {
        Self {
            base,
            spec: spec.clone(),
            epochs: epochs.max(1),
        }
    }

    /// The rate for batch `batch` of `batches` in epoch `epoch` (all from 0).
    pub fn at(&self, epoch: usize, batch: usize, batches: usize) -> f32 {
        let batches = batches.max(1);
        match self.spec {
            ScheduleSpec::Constant => self.base,
            ScheduleSpec::Step { every, factor } => {
                self.base * factor.powi((epoch / every.max(1)) as i32)
            }
            ScheduleSpec::Cosine {
                min_lr,
                warmup_epochs,
            } => {
                let step = (epoch * batches + batch) as f64;
                let warm = (warmup_epochs.min(self.epochs) * batches) as f64;
                let total = (self.epochs * batches) as f64;
                if step < warm {
                    return self.base * ((step + 1.0) / warm) as f32;
                }
                let p = if total > warm {
                    (step - warm) / (total - warm)
                } else {
                    1.0
                };
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
                min_lr + (self.base - min_lr) * cos as f32
            }
        }
    }
}

/// Tracks the watched metric for early stopping.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    spec: EarlyStoppingSpec,
    best: Option<f32>,
    best_epoch: usize,
    wait: usize,
}

impl EarlyStopping {
    /// A tracker that has seen nothing yet.
    pub fn new(spec: &EarlyStoppingSpec) -> Self {
        Self {
            spec: spec.clone(),
            best: None,
            best_epoch: 0,
            wait: 0,
        }
    }

    /// Records an epoch's value; returns whether it is the best so far.
    pub fn observe(&mut self, epoch: usize, value: f32) -> bool {
        let better = match self.best {
            None => true,
            Some(best) if self.spec.metric.higher_is_better() => value > best + self.spec.min_delta,
            Some(best) => value < best - self.spec.min_delta,
        };
        if better {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.wait = 0;
        } else {
            self.wait += 1;
        }
        better
    }

    /// Whether `patience` epochs have passed without improvement.
    pub fn should_stop(&self) -> bool {
        self.wait >= self.spec.patience.max(1)
    }

    /// The best epoch so far and its value.
    pub fn best(&self) -> Option<(usize, f32)> {
        self.best.map(|v| (self.best_epoch, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::Metric;

    #[test]
    fn schedules_follow_their_formulas() {
        let step = LrSchedule::new(
            0.1,
            &ScheduleSpec::Step {
                every: 2,
                factor: 0.5,
            },
            10,
        );
        assert_eq!(step.at(0, 0, 5), 0.1);
        assert_eq!(step.at(3, 4, 5), 0.05);
        assert_eq!(step.at(4, 0, 5), 0.025);
        let cos = ScheduleSpec::Cosine {
            min_lr: 0.0,
            warmup_epochs: 0,
        };
        let cos = LrSchedule::new(1.0, &cos, 4);
        assert_eq!(cos.at(0, 0, 10), 1.0);
        assert!((cos.at(2, 0, 10) - 0.5).abs() < 1e-6);
        assert!(cos.at(3, 9, 10) < 0.01);
        let warm = ScheduleSpec::Cosine {
            min_lr: 0.1,
            warmup_epochs: 1,
        };
        let warm = LrSchedule::new(1.0, &warm, 3);
        assert!((warm.at(0, 1, 4) - 0.5).abs() < 1e-6);
        assert_eq!(warm.at(1, 0, 4), 1.0);
    }

    #[test]
    fn a_non_finite_gradient_refuses_the_step_and_touches_nothing() {
        let text = "name = \"s\"\ninput = [3]\nclasses = 2\n\
                    layers = [ { type = \"dense\", units = 2 } ]\n\
                    [training]\noptimizer = { type = \"sgd\", learning_rate = 0.1 }\n";
        let spec = crate::train::ModelSpec::parse(text).unwrap();
        let mut net = Network::new(&spec).unwrap();
        let mut opt = Optimizer::new(&spec.training.optimizer);
        net.compute_gradients(&[1.0, -2.0, 0.5], &[1], 0).unwrap();
        let before: Vec<Vec<f32>> = net.parameters().iter().map(|p| p.values.to_vec()).collect();
        // A finite step moves the weights; the same with one NaN gradient moves nothing.
        let mut good = net.clone();
        let mut good_opt = opt.clone();
        good_opt.step(&mut good, 0.1).unwrap();
        assert_ne!(good.parameters()[0].values, &before[0][..]);
        let mut first = true;
        net.visit_params(&mut |p| {
            if first {
                p.grad[1] = f32::NAN;
                first = false;
            }
        });
        assert!(opt.step(&mut net, 0.1).is_err());
        let after: Vec<Vec<f32>> = net.parameters().iter().map(|p| p.values.to_vec()).collect();
        assert_eq!(before, after);
        assert_eq!(opt.steps, 0);
    }

    #[test]
    fn early_stopping_waits_patience_epochs() {
        let mut es = EarlyStopping::new(&EarlyStoppingSpec {
            patience: 2,
            metric: Metric::ValLoss,
            min_delta: 0.0,
        });
        assert!(es.observe(0, 1.0));
        assert!(es.observe(1, 0.5));
        assert!(!es.observe(2, 0.6));
        assert!(!es.should_stop());
        assert!(!es.observe(3, 0.5));
        assert!(es.should_stop());
        assert_eq!(es.best(), Some((1, 0.5)));
    }
}
