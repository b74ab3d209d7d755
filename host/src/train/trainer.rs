//! The epoch loop: shuffled mini-batches, the optimizer and schedule, evaluation on held-out
//! data, early stopping with the best weights restored, and callbacks for progress display.

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{bail, ensure, Result};

use super::config::{Metric, TrainingConfig};
use super::loss::softmax_cross_entropy;
use super::network::{eval_ctx, Network};
use super::optim::{EarlyStopping, LrSchedule, Optimizer};
use super::tensor::{Rng, Tensor};

/// Progress after one training batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchEvent {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Batch within the epoch, from 0.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Samples trained on so far in this epoch.
    pub samples: usize,
    /// The batch's mean loss (class-weighted with `class_weights`).
    pub loss: f32,
    /// The batch's accuracy (before the update).
    pub accuracy: f32,
    /// The learning rate used.
    pub learning_rate: f32,
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size; each batch's loss
    /// class-weighted with `class_weights`).
    pub loss: f32,
    /// Training accuracy over the epoch (each batch measured before its update).
    pub accuracy: f32,
    /// Loss on the validation set, if one was given (never class-weighted).
    pub val_loss: Option<f32>,
    /// Accuracy on the validation set, if one was given.
    pub val_accuracy: Option<f32>,
    /// The learning rate at the epoch's last batch.
    pub learning_rate: f32,
    /// Training throughput (forward, backward and update; evaluation excluded).
    pub samples_per_second: f64,
    /// Samples trained on and the seconds that took (evaluation excluded): summed over
    /// epochs, the run's throughput as total samples over total time.
    pub samples: usize,
    /// See [`Self::samples`].
    pub train_seconds: f64,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Whether early stopping counted this epoch as the best so far.
    pub best: bool,
}

/// Total samples over total training time of `epochs` (not the mean of per-epoch rates, which
/// weighs a fast epoch as much as a slow one).
pub fn throughput(epochs: &[EpochStats]) -> f64 {
    let samples: usize = epochs.iter().map(|e| e.samples).sum();
    let seconds: f64 = epochs.iter().map(|e| e.train_seconds).sum();
    samples as f64 / seconds.max(1e-9)
}

impl EpochStats {
    fn metric(&self, m: Metric) -> Option<f32> {
        match m {
            Metric::ValAccuracy => self.val_accuracy,
            Metric::ValLoss => self.val_loss,
            Metric::Accuracy => Some(self.accuracy),
            Metric::Loss => Some(self.loss),
        }
    }
}

/// What [`train`] reports while it runs. Both methods have empty defaults.
pub trait Callbacks {
    /// After every training batch.
    fn on_batch(&mut self, _event: &BatchEvent) {}
    /// After every epoch (and its evaluation); `Break` stops training.
    fn on_epoch(&mut self, _stats: &EpochStats) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Callbacks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallbacks;

impl Callbacks for NoCallbacks {}

/// What training did.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// One entry per epoch run.
    pub epochs: Vec<EpochStats>,
    /// The epoch whose weights the network holds at the end, when early stopping chose one.
    pub best_epoch: Option<usize>,
    /// Whether early stopping (or a callback) ended training before the last epoch.
    pub stopped_early: bool,
    /// Wall time of the whole run.
    pub seconds: f64,
}

/// Loss and accuracy on a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean softmax cross-entropy.
    pub loss: f32,
    /// Fraction of samples classified correctly.
    pub accuracy: f32,
    /// Samples classified correctly.
    pub correct: usize,
    /// Samples.
    pub total: usize,
}

fn check_data(net: &Network, x: &[f32], y: &[u32], what: &str) -> Result<()> {
    let len = net.sample_len();
    ensure!(
        x.len() == y.len() * len,
        "{what}: {} feature values for {} labels; the model takes {len} values per sample",
        x.len(),
        y.len()
    );
    if let Some(&bad) = y.iter().find(|&&l| l as usize >= net.classes()) {
        bail!(
            "{what}: label {bad} is out of range for {} classes",
            net.classes()
        );
    }
    // As mote-core's trainer refuses a non-finite input: max pooling would otherwise turn a
    // NaN into a finite value and hide it from the loss.
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        bail!(
            "{what}: sample {}, value {} is {}",
            i / len.max(1),
            i % len.max(1),
            x[i]
        );
    }
    Ok(())
}

/// Evaluates `net` (evaluation mode) on `x` / `y` in batches of `batch_size`.
pub fn evaluate(net: &mut Network, x: &[f32], y: &[u32], batch_size: usize) -> Result<Evaluation> {
    check_data(net, x, y, "evaluation data")?;
    let len = net.sample_len();
    let end = net.logits_end();
    let (mut loss, mut correct) = (0.0f64, 0);
    for (xb, yb) in x
        .chunks(len * batch_size.max(1))
        .zip(y.chunks(batch_size.max(1)))
    {
        let batch = Tensor {
            n: yb.len(),
            shape: net.input_shape(),
            data: xb.to_vec(),
        };
        let logits = net.run(batch, &mut eval_ctx(), end, &mut None);
        let (l, _, c) = softmax_cross_entropy(&logits.data, yb, net.classes())?;
        loss += f64::from(l) * yb.len() as f64;
        correct += c;
    }
    let total = y.len();
    Ok(Evaluation {
        loss: (loss / total.max(1) as f64) as f32,
        accuracy: correct as f32 / total.max(1) as f32,
        correct,
        total,
    })
}

fn snapshot(net: &mut Network) -> Vec<Vec<f32>> {
    let mut values = Vec::new();
    net.visit_params(&mut |p| values.push(p.value.clone()));
    values
}

fn restore(net: &mut Network, values: &[Vec<f32>]) {
    let mut it = values.iter();
    net.visit_params(&mut |p| {
        if let Some(v) = it.next() {
            p.value.copy_from_slice(v);
        }
    });
}

/// The class weights for `train_y` (empty without `class_weights`), after checking that the
/// augmentation fits the network's input.
fn check_features(net: &Network, config: &TrainingConfig, train_y: &[u32]) -> Result<Vec<f32>> {
    if let Some(a) = &config.augment {
        a.check(net.input_shape())?;
    }
    match &config.class_weights {
        Some(w) => w.resolve(train_y, net.classes()),
        None => Ok(Vec::new()),
    }
}

/// Trains `net` on `train_x` / `train_y` (row-major samples in the network's input shape,
/// labels below `classes`), evaluating on `val_x` / `val_y` after each epoch if they are not
/// empty. The same network, data, config and seed always give the same weights.
///
/// `class_weights` ("balanced" counts `train_y`) weigh the training loss; `augment` changes
/// each training batch after it is gathered, never the validation data.
///
/// With early stopping the network ends with the best epoch's weights.
pub fn train(
    net: &mut Network,
    train_x: &[f32],
    train_y: &[u32],
    val_x: &[f32],
    val_y: &[u32],
    config: &TrainingConfig,
    callbacks: &mut dyn Callbacks,
) -> Result<History> {
    config.validate()?;
    check_data(net, train_x, train_y, "training data")?;
    check_data(net, val_x, val_y, "validation data")?;
    ensure!(!train_y.is_empty(), "training data: no samples");
    let has_val = !val_y.is_empty();
    let class_weights = check_features(net, config, train_y)?;
    // Its own stream, so turning augmentation on leaves shuffling and dropout as they were.
    let mut augment_rng = Rng::derive(config.seed, 3);
    if let Some(es) = &config.early_stopping {
        ensure!(
            has_val || !es.metric.needs_validation(),
            "early stopping on {:?} needs validation data",
            es.metric
        );
    }
    let start = Instant::now();
    let (n, len, bs) = (train_y.len(), net.sample_len(), config.batch_size);
    let batches = n.div_ceil(bs);
    let mut optimizer = Optimizer::new(&config.optimizer).with_clip_norm(config.clip_norm);
    let schedule = LrSchedule::new(
        config.optimizer.learning_rate(),
        &config.schedule,
        config.epochs,
    );
    let mut stopper = config.early_stopping.as_ref().map(EarlyStopping::new);
    let mut best_weights = None;
    let mut shuffle_rng = Rng::derive(config.seed, 2);
    let mut order: Vec<usize> = (0..n).collect();
    let mut history = History {
        epochs: Vec::new(),
        best_epoch: None,
        stopped_early: false,
        seconds: 0.0,
    };
    let (mut xb, mut yb) = (Vec::with_capacity(bs * len), Vec::with_capacity(bs));
    let mut step = 0u64;
    for epoch in 0..config.epochs {
        let epoch_start = Instant::now();
        shuffle_rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0f64, 0, 0, 0.0);
        for (batch, idx) in order.chunks(bs).enumerate() {
            xb.clear();
            yb.clear();
            for &i in idx {
                xb.extend_from_slice(&train_x[i * len..][..len]);
                yb.push(train_y[i]);
            }
            if let Some(a) = &config.augment {
                a.apply(net.input_shape(), &mut xb, &mut augment_rng);
            }
            lr = schedule.at(epoch, batch, batches);
            let dropout_seed = Rng::derive(config.seed, 1000 + step).next_u64();
            step += 1;
            let (loss, c) =
                net.compute_weighted_gradients(&xb, &yb, &class_weights, dropout_seed)?;
            ensure!(
                loss.is_finite(),
                "the loss became {loss} at epoch {epoch}, batch {batch}: lower the learning rate"
            );
            optimizer.step(net, lr).map_err(|e| {
                anyhow::anyhow!("{e} at epoch {epoch}, batch {batch}: lower the learning rate")
            })?;
            loss_sum += f64::from(loss) * idx.len() as f64;
            correct += c;
            seen += idx.len();
            callbacks.on_batch(&BatchEvent {
                epoch,
                batch,
                batches,
                samples: seen,
                loss,
                accuracy: c as f32 / idx.len() as f32,
                learning_rate: lr,
            });
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let val = if has_val {
            Some(evaluate(net, val_x, val_y, bs.max(256))?)
        } else {
            None
        };
        let mut stats = EpochStats {
            epoch,
            loss: (loss_sum / seen as f64) as f32,
            accuracy: correct as f32 / seen as f32,
            val_loss: val.map(|v| v.loss),
            val_accuracy: val.map(|v| v.accuracy),
            learning_rate: lr,
            samples_per_second: seen as f64 / train_seconds.max(1e-9),
            samples: seen,
            train_seconds,
            seconds: 0.0,
            best: false,
        };
        let mut stop = false;
        if let (Some(es), Some(spec)) = (&mut stopper, &config.early_stopping) {
            let value = stats.metric(spec.metric).unwrap_or(f32::NAN);
            if es.observe(epoch, value) {
                stats.best = true;
                best_weights = Some(snapshot(net));
            }
            stop = es.should_stop();
        }
        stats.seconds = epoch_start.elapsed().as_secs_f64();
        let flow = callbacks.on_epoch(&stats);
        history.epochs.push(stats);
        if stop || flow.is_break() {
            history.stopped_early = epoch + 1 < config.epochs;
            break;
        }
    }
    if let (Some(es), Some(weights)) = (&stopper, &best_weights) {
        restore(net, weights);
        history.best_epoch = es.best().map(|(e, _)| e);
    }
    history.seconds = start.elapsed().as_secs_f64();
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ModelSpec;

    fn blobs(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let label = rng.below(3);
            // Horizontal stripes, vertical stripes or a checkerboard, with noise.
            for i in 0..36 {
                let (r, c) = (i / 6, i % 6);
                let on = [r % 2, c % 2, (r + c) % 2][label] as f32;
                x.push(on + rng.range(-0.4, 0.4));
            }
            y.push(label as u32);
        }
        (x, y)
    }

    /// Parallel reductions use fixed blocks, so one thread and several give the same weights
    /// (batches of 32 samples of 36 pixels: the conv GEMMs span several 256-row blocks).
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let text = r#"
            name = "threads"
            input = [6, 6, 1]
            classes = 3
            layers = [
                { type = "conv2d", filters = 8, kernel = 3, padding = "same" },
                { type = "batch_norm" }, { type = "relu" },
                { type = "separable_conv2d", filters = 8, kernel = 3, stride = 2, padding = "same" },
                { type = "max_pool", size = 3 },
                { type = "flatten" }, { type = "dropout", rate = 0.3 }, { type = "dense", units = 3 },
            ]
            [training]
            epochs = 6
            batch_size = 32
            optimizer = { type = "adam", learning_rate = 0.01 }
            seed = 9
        "#;
        let spec = ModelSpec::parse(text).unwrap();
        let mut rng = Rng::new(1);
        let (x, y) = blobs(&mut rng, 300);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut net = Network::new(&spec).unwrap();
                let h = train(&mut net, &x, &y, &x, &y, &spec.training, &mut NoCallbacks).unwrap();
                (
                    net.to_checkpoint().unwrap(),
                    h.epochs.last().unwrap().val_accuracy,
                )
            })
        };
        let (one, acc) = run(1);
        assert_eq!(one, run(3).0);
        assert!(acc.unwrap() > 0.9, "{acc:?}");
    }

    #[test]
    fn callbacks_see_every_batch_and_can_stop() {
        struct Count(usize, usize);
        impl Callbacks for Count {
            fn on_batch(&mut self, e: &BatchEvent) {
                assert_eq!(e.batches, 4);
                self.0 += 1;
            }
            fn on_epoch(&mut self, _: &EpochStats) -> ControlFlow<()> {
                self.1 += 1;
                if self.1 == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
        }
        let text = "name = \"c\"\ninput = [36]\nclasses = 3\n\
                    layers = [ { type = \"dense\", units = 3 } ]\n\
                    [training]\nepochs = 5\nbatch_size = 16\n";
        let spec = ModelSpec::parse(text).unwrap();
        let (x, y) = blobs(&mut Rng::new(2), 50);
        let mut net = Network::new(&spec).unwrap();
        let mut count = Count(0, 0);
        let h = train(&mut net, &x, &y, &[], &[], &spec.training, &mut count).unwrap();
        assert_eq!((count.0, count.1, h.epochs.len()), (8, 2, 2));
        assert!(h.stopped_early);
        let bad = train(
            &mut net,
            &x[1..],
            &y,
            &[],
            &[],
            &spec.training,
            &mut NoCallbacks,
        );
        assert!(format!("{:#}", bad.unwrap_err()).contains("36 values per sample"));
        let mut nan = x.clone();
        nan[40] = f32::NAN;
        let bad = train(
            &mut net,
            &nan,
            &y,
            &[],
            &[],
            &spec.training,
            &mut NoCallbacks,
        );
        let msg = format!("{:#}", bad.unwrap_err());
        assert!(msg.contains("sample 1, value 4 is NaN"), "{msg}");
    }
}

#[cfg(test)]
mod feature_tests {
    use super::*;
    use crate::train::ModelSpec;

    /// Two overlapping 2-D gaussians, `minority` of every 100 samples in class 1.
    fn imbalanced(rng: &mut Rng, n: usize, minority: usize) -> (Vec<f32>, Vec<u32>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let label = u32::from(i % 100 < minority);
            let centre = if label == 1 { 1.2 } else { 0.0 };
            x.extend((0..2).map(|_| centre + rng.normal() as f32));
            y.push(label);
        }
        (x, y)
    }

    fn recall(net: &mut Network, x: &[f32], y: &[u32], class: usize) -> f32 {
        let p = net.predict(x).unwrap();
        let hits = p
            .iter()
            .zip(y)
            .filter(|(p, &y)| y as usize == class && **p == class);
        let total = y.iter().filter(|&&y| y as usize == class).count();
        hits.count() as f32 / total as f32
    }

    #[test]
    fn balanced_class_weights_raise_the_minority_recall() {
        let head = "name = \"imb\"\ninput = [2]\nclasses = 2\n\
                    layers = [ { type = \"dense\", units = 2 } ]\n\
                    [training]\nepochs = 15\nbatch_size = 32\n\
                    optimizer = { type = \"adam\", learning_rate = 0.05 }\n";
        let (x, y) = imbalanced(&mut Rng::new(1), 2000, 5);
        let (tx, ty) = imbalanced(&mut Rng::new(2), 1000, 50);
        let run = |extra: &str| {
            let spec = ModelSpec::parse(&format!("{head}{extra}")).unwrap();
            let mut net = Network::new(&spec).unwrap();
            train(&mut net, &x, &y, &[], &[], &spec.training, &mut NoCallbacks).unwrap();
            recall(&mut net, &tx, &ty, 1)
        };
        let (none, balanced) = (run(""), run("class_weights = \"balanced\"\n"));
        let explicit = run("class_weights = [1.0, 19.0]\n");
        eprintln!("minority recall: none {none:.3}, balanced {balanced:.3}, [1, 19] {explicit:.3}");
        assert!(balanced > none + 0.3, "{none} vs {balanced}");
        assert!(
            (balanced - explicit).abs() < 0.1,
            "{balanced} vs {explicit}"
        );

        for (bad, word) in [
            ("class_weights = [1.0]\n", "1 weights for 2 classes"),
            ("class_weights = [1.0, -2.0]\n", "finite and positive"),
            ("class_weights = [1.0, nan]\n", "finite and positive"),
            ("class_weights = \"balance\"\n", "\"balanced\""),
        ] {
            let e = format!(
                "{:#}",
                ModelSpec::parse(&format!("{head}{bad}")).unwrap_err()
            );
            assert!(e.contains(word), "{bad}: {e}");
        }
        let w = crate::train::ClassWeights::Balanced
            .resolve(&[0, 0, 0, 1], 3)
            .unwrap();
        assert_eq!(w, [4.0 / 9.0, 4.0 / 3.0, 1.0]);
    }

    const AUGMENTED: &str = r#"
        name = "aug"
        input = [6, 6, 1]
        classes = 3
        layers = [
            { type = "conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu" },
            { type = "global_avg_pool" }, { type = "dense", units = 3 },
        ]
        [training]
        epochs = 2
        batch_size = 16
        seed = 4
        [training.augment]
        shift = [1, 2]
        flip_horizontal = true
        flip_vertical = true
        scale = 0.1
        noise = 3.0
    "#;

    /// The trained checkpoint and history of a run on `x` / `y`, validated on the same data.
    fn batches(spec: &ModelSpec, x: &[f32], y: &[u32]) -> (Vec<u8>, History) {
        let mut net = Network::new(spec).unwrap();
        let h = train(&mut net, x, y, x, y, &spec.training, &mut NoCallbacks).unwrap();
        (net.to_checkpoint().unwrap(), h)
    }

    #[test]
    fn augmentation_repeats_with_the_seed_and_spares_the_validation_data() {
        let spec = ModelSpec::parse(AUGMENTED).unwrap();
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..60 * 36).map(|_| rng.range(0.0, 1.0)).collect();
        let y: Vec<u32> = (0..60).map(|i| i % 3).collect();
        let (a, ha) = batches(&spec, &x, &y);
        let (b, _) = batches(&spec, &x, &y);
        assert_eq!(a, b, "same seed, same batches");
        let mut plain = spec.clone();
        plain.training.augment = None;
        let (c, hc) = batches(&plain, &x, &y);
        assert_ne!(a, c, "augmentation changes what is trained on");
        // Noise of 3 on the training batches only: the held-out loss of the last epoch is the
        // trained network's loss on the untouched data.
        let mut net = Network::from_checkpoint(&a).unwrap();
        let eval = evaluate(&mut net, &x, &y, 256).unwrap();
        assert_eq!(ha.epochs.last().unwrap().val_loss, Some(eval.loss));
        assert_ne!(ha.epochs[1].loss, hc.epochs[1].loss);
    }
}

#[cfg(test)]
mod throughput_tests {
    use super::*;

    fn epoch(samples: usize, train_seconds: f64) -> EpochStats {
        EpochStats {
            epoch: 0,
            loss: 0.0,
            accuracy: 0.0,
            val_loss: None,
            val_accuracy: None,
            learning_rate: 0.0,
            samples_per_second: samples as f64 / train_seconds,
            samples,
            train_seconds,
            seconds: train_seconds,
            best: false,
        }
    }

    #[test]
    fn throughput_is_total_samples_over_total_time() {
        // 100 samples in 1 s, then 100 in 3 s: 50 samples/s, not the rates' mean (66.7).
        let rate = throughput(&[epoch(100, 1.0), epoch(100, 3.0)]);
        assert!((rate - 50.0).abs() < 1e-9, "{rate}");
    }
}
