//! Learning on the device one labelled sample at a time, between inferences, without forgetting
//! what came before.
//!
//! Each [`Learner::learn`] is one SGD step of the trained layers (a [`Trainer`]) on the new
//! sample and a few earlier ones replayed from a [`ReplayMemory`]: caller-owned buffers that
//! hold a uniform sample of every sample seen so far (reservoir sampling), so a class that has
//! not been seen for a while keeps pulling on the weights. A step also says when a save is due,
//! so the caller can keep what was learned across resets through the power-cut-safe
//! [`WeightStore`](crate::persist::WeightStore).

use super::trainer::{Target, Trainer};
use crate::Error;

/// How a [`Learner`] mixes old samples in and how often it asks for a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continual {
    /// Replayed samples trained with each new one (fewer while the memory holds fewer).
    pub replay_per_step: usize,
    /// Steps between saves (0: a save is never due).
    pub save_every: u32,
}

/// Up to `capacity` labelled samples of `width` features in caller-owned buffers: a uniform
/// sample of every sample offered so far.
#[derive(Debug)]
pub struct ReplayMemory<'m> {
    features: &'m mut [f32],
    labels: &'m mut [u16],
    width: usize,
    held: usize,
    seen: u32,
    rng: u32,
}

impl<'m> ReplayMemory<'m> {
    /// Bytes a memory of `capacity` samples of `width` features takes.
    pub const fn bytes(capacity: usize, width: usize) -> usize {
        capacity * (width * 4 + 2)
    }

    /// An empty memory of `labels.len()` samples of `width` features; `features` must hold
    /// exactly `labels.len() * width` values. `seed` (non-zero) picks which samples stay.
    pub fn new(
        features: &'m mut [f32],
        labels: &'m mut [u16],
        width: usize,
        seed: u32,
    ) -> Result<Self, Error> {
        let expected = labels
            .len()
            .checked_mul(width)
            .ok_or(Error::ShapeOverflow)?;
        if features.len() != expected || width == 0 {
            return Err(Error::LengthMismatch {
                expected,
                actual: features.len(),
            });
        }
        Ok(Self {
            features,
            labels,
            width,
            held: 0,
            seen: 0,
            rng: seed.max(1),
        })
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Samples offered so far.
    pub fn seen(&self) -> u32 {
        self.seen
    }

    /// Sample `i`: its features and label.
    pub fn sample(&self, i: usize) -> Option<(&[f32], usize)> {
        if i >= self.held {
            return None;
        }
        let features = self.features.get(i * self.width..(i + 1) * self.width)?;
        Some((features, usize::from(*self.labels.get(i)?)))
    }

    /// A uniformly drawn index below `n` (`n > 0`), from a xorshift generator.
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        ((u64::from(x) * n as u64) >> 32) as usize
    }

    /// Offers a sample: kept while there is room, then with probability `capacity / seen`
    /// in place of a uniformly chosen one, so what is held stays a uniform sample of all.
    fn offer(&mut self, features: &[f32], label: u16) {
        self.seen = self.seen.saturating_add(1);
        let capacity = self.labels.len();
        let slot = match self.held < capacity {
            true => Some(self.held),
            false => Some(self.below(self.seen as usize)).filter(|&j| j < capacity),
        };
        let Some(slot) = slot else {
            return;
        };
        let row = self
            .features
            .get_mut(slot * self.width..(slot + 1) * self.width);
        if let (Some(row), Some(l)) = (row, self.labels.get_mut(slot)) {
            row.copy_from_slice(features);
            *l = label;
            self.held = self.held.max(slot + 1);
        }
    }
}

/// What one [`Learner::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// The new sample's loss before the step.
    pub loss: f32,
    /// Earlier samples trained with it.
    pub replayed: usize,
    /// Whether [`Continual::save_every`] steps have passed since the last [`Learner::saved`].
    pub save_due: bool,
}

/// Trains a network's trained layers one labelled sample at a time, with replay.
#[derive(Debug)]
pub struct Learner<'a, 'm, const N: usize> {
    trainer: Trainer<'a, N>,
    memory: ReplayMemory<'m>,
    continual: Continual,
    since_save: u32,
}

impl<'a, 'm, const N: usize> Learner<'a, 'm, N> {
    /// A learner over `trainer` whose samples are `memory`'s width (the network's input).
    pub fn new(
        trainer: Trainer<'a, N>,
        memory: ReplayMemory<'m>,
        continual: Continual,
    ) -> Result<Self, Error> {
        let net = trainer.plan().network();
        let width = net.input_shape().elements().ok_or(Error::ShapeOverflow)?;
        if memory.width != width {
            return Err(Error::LengthMismatch {
                expected: width,
                actual: memory.width,
            });
        }
        Ok(Self {
            trainer,
            memory,
            continual,
            since_save: 0,
        })
    }

    /// One step on `features` (the trained layers' input) labelled `label`, with up to
    /// [`Continual::replay_per_step`] replayed samples; then the sample is offered to the
    /// replay memory. A wrong length, a label past the outputs or a non-finite feature is an
    /// error, as is a step the trainer refuses; either way the weights and the memory are
    /// unchanged.
    pub fn learn(&mut self, features: &[f32], label: usize) -> Result<Learned, Error> {
        let net = self.trainer.plan().network();
        let classes = net
            .output_shape(N - 1)
            .and_then(|s| s.elements())
            .ok_or(Error::ShapeOverflow)?;
        if features.len() != self.memory.width {
            return Err(Error::LengthMismatch {
                expected: self.memory.width,
                actual: features.len(),
            });
        }
        let label16 = u16::try_from(label)
            .ok()
            .filter(|_| label < classes)
            .ok_or(Error::InvalidParameter {
                what: why!("label past the network's outputs"),
            })?;
        super::check_finite(features, why!("features"))?;
        let result = self.step(features, label);
        if result.is_err() {
            self.trainer.zero_grad();
        }
        let (loss, replayed) = result?;
        self.memory.offer(features, label16);
        self.since_save = self.since_save.saturating_add(1);
        let every = self.continual.save_every;
        Ok(Learned {
            loss,
            replayed,
            save_due: every > 0 && self.since_save >= every,
        })
    }

    /// The new sample and the replayed ones accumulated, then one optimizer step.
    fn step(&mut self, features: &[f32], label: usize) -> Result<(f32, usize), Error> {
        let loss = self.trainer.accumulate(features, Target::Class(label))?;
        let replayed = self.continual.replay_per_step.min(self.memory.len());
        for _ in 0..replayed {
            let i = self.memory.below(self.memory.len());
            let (old, old_label) = self.memory.sample(i).ok_or(Error::ShapeOverflow)?;
            self.trainer.accumulate(old, Target::Class(old_label))?;
        }
        self.trainer.step()?;
        Ok((loss, replayed))
    }

    /// Tells the learner the weights were saved: the next save is due in
    /// [`Continual::save_every`] steps.
    pub fn saved(&mut self) {
        self.since_save = 0;
    }

    /// The trainer (its parameters: [`Trainer::params`]).
    pub fn trainer(&self) -> &Trainer<'a, N> {
        &self.trainer
    }

    /// The parameters, to change between steps (e.g. [`Head::start_class`]).
    ///
    /// [`Head::start_class`]: super::Head::start_class
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.trainer.params_mut()
    }

    /// The replay memory.
    pub fn memory(&self) -> &ReplayMemory<'m> {
        &self.memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, Shape4};
    use crate::test_support::Rng;
    use crate::train::{Head, Layer, Network, Sgd, TrainingPlan};
    use std::vec::Vec;

    const WIDTH: usize = 8;

    /// Gaussian-ish clusters: class `c` around `means[c]`, noise 0.5 per feature.
    struct Clusters {
        means: Vec<[f32; WIDTH]>,
    }

    impl Clusters {
        fn new(classes: usize, rng: &mut Rng) -> Self {
            let means = (0..classes)
                .map(|_| core::array::from_fn(|_| rng.uniform_f32(-1.5, 1.5)))
                .collect();
            Clusters { means }
        }

        /// A sample of class `c`, its features turned by `turn` (a rotation of feature pairs,
        /// as a sensor mounted at an angle turns its axes).
        fn sample(&self, c: usize, turn: f32, rng: &mut Rng) -> [f32; WIDTH] {
            let noise = |rng: &mut Rng| (0..4).map(|_| rng.uniform_f32(-0.5, 0.5)).sum::<f32>();
            let mut x: [f32; WIDTH] = core::array::from_fn(|i| self.means[c][i] + noise(rng));
            let (sin, cos) = (libm::sinf(turn), libm::cosf(turn));
            for pair in x.chunks_exact_mut(2) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = cos * a - sin * b;
                pair[1] = sin * a + cos * b;
            }
            x
        }
    }

    fn head(classes: usize) -> (Network<1>, TrainingPlan<1>) {
        let net = Network::new(
            Shape4::new(1, 1, 1, WIDTH),
            [Layer::dense(classes, Activation::None)],
        )
        .unwrap();
        let plan = TrainingPlan::new(&net, Sgd::new(0.05)).unwrap();
        (net, plan)
    }

    /// The share of `n` samples per class of `classes` (turned by `turn`) the parameters
    /// classify right.
    fn accuracy(params: &[f32], data: &Clusters, classes: &[usize], turn: f32) -> f32 {
        let mut rng = Rng(0x7E57);
        let (mut right, mut total) = (0, 0);
        for &c in classes {
            for _ in 0..200 {
                let x = data.sample(c, turn, &mut rng);
                let logits: Vec<f32> = params[..params.len() - params.len() / (WIDTH + 1)]
                    .chunks_exact(WIDTH)
                    .zip(&params[params.len() - params.len() / (WIDTH + 1)..])
                    .map(|(row, b)| row.iter().zip(&x).map(|(w, v)| w * v).sum::<f32>() + b)
                    .collect();
                let best = (0..logits.len())
                    .max_by(|&i, &j| logits[i].total_cmp(&logits[j]))
                    .unwrap();
                right += usize::from(best == c);
                total += 1;
            }
        }
        right as f32 / total as f32
    }

    /// Buffers for a learner of a head of `classes` outputs with a replay memory of
    /// `capacity` samples.
    struct Rig {
        plan: TrainingPlan<1>,
        params: Vec<f32>,
        arena: Vec<u32>,
        features: Vec<f32>,
        labels: Vec<u16>,
    }

    impl Rig {
        fn new(classes: usize, capacity: usize) -> Self {
            let (_, plan) = head(classes);
            Rig {
                plan,
                params: std::vec![0.0; classes * (WIDTH + 1)],
                arena: std::vec![0u32; plan.bytes().div_ceil(4)],
                features: std::vec![0.0; capacity * WIDTH],
                labels: std::vec![0; capacity],
            }
        }

        fn learner(&mut self) -> Learner<'_, '_, 1> {
            let arena = crate::cast::words_as_bytes_mut(&mut self.arena);
            let trainer = Trainer::new(&self.plan, &mut self.params, arena).unwrap();
            let memory = ReplayMemory::new(&mut self.features, &mut self.labels, WIDTH, 7).unwrap();
            let continual = Continual {
                replay_per_step: 4,
                save_every: 0,
            };
            Learner::new(trainer, memory, continual).unwrap()
        }
    }

    /// Feeds `steps` samples, class `pick(i)` each, turned by `turn`.
    fn feed(
        learner: &mut Learner<'_, '_, 1>,
        data: &Clusters,
        (steps, turn): (usize, f32),
        pick: impl Fn(usize) -> usize,
        rng: &mut Rng,
    ) {
        for i in 0..steps {
            let c = pick(i);
            learner.learn(&data.sample(c, turn, rng), c).unwrap();
        }
    }

    #[test]
    fn replay_keeps_the_classes_a_stream_stops_showing() {
        let data = Clusters::new(3, &mut Rng(0xC1A55));
        let left = [64, 0].map(|capacity| {
            let mut rig = Rig::new(3, capacity);
            let mut learner = rig.learner();
            let mut rng = Rng(0x1EA2);
            feed(&mut learner, &data, (600, 0.0), |i| i % 3, &mut rng);
            let before = accuracy(learner.trainer().params(), &data, &[0, 1], 0.0);
            assert!(before >= 0.9, "{before}");
            // Then a long stretch of class 2 alone.
            feed(&mut learner, &data, (600, 0.0), |_| 2, &mut rng);
            accuracy(learner.trainer().params(), &data, &[0, 1], 0.0)
        });
        let [with, without] = left;
        assert!(with >= 0.85, "with replay {with}");
        assert!(
            with >= without + 0.15,
            "with replay {with}, without {without}"
        );
    }

    #[test]
    fn a_turned_sensor_is_learned_sample_by_sample() {
        let data = Clusters::new(3, &mut Rng(0x5E45));
        let mut rig = Rig::new(3, 64);
        let mut learner = rig.learner();
        let mut rng = Rng(0x1EA2);
        feed(&mut learner, &data, (600, 0.0), |i| i % 3, &mut rng);
        let turn = 1.2;
        let before = accuracy(learner.trainer().params(), &data, &[0, 1, 2], turn);
        feed(&mut learner, &data, (200, turn), |i| i % 3, &mut rng);
        let after = accuracy(learner.trainer().params(), &data, &[0, 1, 2], turn);
        assert!(
            after >= 0.85 && after >= before + 0.1,
            "{before} -> {after}"
        );
    }

    #[test]
    fn a_class_starts_from_ten_samples() {
        let data = Clusters::new(4, &mut Rng(0xAD_DC1A));
        // The factory head knows classes 0..3; its fourth row is spare (never trained).
        let mut rig = Rig::new(4, 64);
        let mut learner = rig.learner();
        let mut rng = Rng(0x1EA2);
        feed(&mut learner, &data, (600, 0.0), |i| i % 3, &mut rng);
        let (net, plan) = head(4);
        let head = Head {
            op: 0,
            features: 0,
            inputs: WIDTH,
            outputs: 4,
            network: net,
            plan,
        };
        let shots: Vec<[f32; WIDTH]> = (0..10).map(|_| data.sample(3, 0.0, &mut rng)).collect();
        let mean: Vec<f32> = (0..WIDTH)
            .map(|i| shots.iter().map(|s| s[i]).sum::<f32>() / 10.0)
            .collect();
        head.start_class(learner.params_mut(), 3, &mean).unwrap();
        let started = accuracy(learner.trainer().params(), &data, &[3], 0.0);
        // Then the same ten samples through the learner, three times.
        for shot in shots.iter().cycle().take(30) {
            learner.learn(shot, 3).unwrap();
        }
        let new = accuracy(learner.trainer().params(), &data, &[3], 0.0);
        let old = accuracy(learner.trainer().params(), &data, &[0, 1, 2], 0.0);
        assert!(started >= 0.4, "the prototype alone: {started}");
        assert!(new >= 0.8 && old >= 0.85, "new class {new}, old {old}");
        let params = learner.params_mut();
        assert!(head.start_class(params, 4, &mean).is_err());
        assert!(head.start_class(params, 3, &[0.0; WIDTH]).is_err());
    }

    #[test]
    fn the_memory_stays_a_uniform_sample() {
        let (mut features, mut labels) = (std::vec![0.0; 50 * 2], std::vec![0; 50]);
        let mut memory = ReplayMemory::new(&mut features, &mut labels, 2, 3).unwrap();
        for i in 0..2000u32 {
            memory.offer(&[i as f32, 0.0], u16::from(i >= 1000));
        }
        assert_eq!((memory.len(), memory.seen()), (50, 2000));
        let late = (0..50)
            .filter(|&i| memory.sample(i).unwrap().1 == 1)
            .count();
        assert!(
            (15..=35).contains(&late),
            "{late} of 50 from the second half"
        );
        assert!(ReplayMemory::new(&mut [0.0; 3], &mut [0; 2], 2, 1).is_err());
    }

    #[test]
    fn bad_samples_change_nothing() {
        let (_, plan) = head(3);
        let mut params = std::vec![0.1; 3 * (WIDTH + 1)];
        let mut arena = std::vec![0u32; plan.bytes().div_ceil(4)];
        let trainer = Trainer::new(
            &plan,
            &mut params,
            crate::cast::words_as_bytes_mut(&mut arena),
        )
        .unwrap();
        let (mut features, mut labels) = (std::vec![0.0; 4 * WIDTH], std::vec![0; 4]);
        let memory = ReplayMemory::new(&mut features, &mut labels, WIDTH, 1).unwrap();
        let continual = Continual {
            replay_per_step: 2,
            save_every: 2,
        };
        let mut learner = Learner::new(trainer, memory, continual).unwrap();
        let good = [0.5; WIDTH];
        assert!(!learner.learn(&good, 1).unwrap().save_due);
        assert!(learner.learn(&good, 2).unwrap().save_due);
        learner.saved();
        let before = learner.trainer().params().to_vec();
        let mut nan = good;
        nan[3] = f32::NAN;
        assert!(learner.learn(&good[..3], 0).is_err());
        assert!(learner.learn(&good, 3).is_err());
        assert!(learner.learn(&nan, 0).is_err());
        assert_eq!(learner.trainer().params(), &before[..]);
        assert_eq!((learner.memory().len(), learner.memory().seen()), (2, 2));
        assert!(!learner.learn(&good, 0).unwrap().save_due);
    }
}
