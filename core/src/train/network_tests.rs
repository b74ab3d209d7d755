//! Tests of the network, its memory plan and the trainer.

use super::network::{Layer, LayerKind, Network, Train};
use super::optim::{Schedule, Sgd};
use super::plan::TrainingPlan;
use super::testutil::Rng;
use super::trainer::{Target, Trainer};
use crate::ops::{Activation, Padding, Shape4};
use crate::Error;
use std::vec::Vec;

const SENTINEL: u8 = 0xa5;

/// A byte buffer of `len` bytes starting on a 4-byte boundary, filled with the sentinel.
struct Arena {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Arena {
    fn new(len: usize) -> Self {
        let bytes = vec![SENTINEL; len + 3];
        let start = bytes.as_ptr().align_offset(4);
        Self { bytes, start, len }
    }
    fn get(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

/// 8x8x1 -> conv 3x3x8 SAME ReLU -> max pool 2 -> flatten -> dense 32 ReLU -> dense 10.
fn small_cnn() -> Network<5> {
    let layers = [
        Layer::conv2d(8, 3, 1, Padding::Same, Activation::Relu),
        Layer::max_pool2d(2, 2, Padding::Valid),
        Layer::flatten(),
        Layer::dense(32, Activation::Relu),
        Layer::dense(10, Activation::None),
    ];
    Network::new(Shape4::new(1, 8, 8, 1), layers).unwrap()
}

fn ce64(z: &[f32], label: usize) -> f64 {
    let z: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
    let max = z.iter().copied().fold(f64::MIN, f64::max);
    let sum: f64 = z.iter().map(|&v| (v - max).exp()).sum();
    sum.ln() - (z[label] - max)
}

fn loss64(z: &[f32], target: Target) -> f64 {
    match target {
        Target::Class(label) => ce64(z, label),
        Target::Values(t) => {
            let n = z.len() as f64;
            let sq = |(&a, &b): (&f32, &f32)| (f64::from(a) - f64::from(b)).powi(2);
            z.iter().zip(t).map(sq).sum::<f64>() / n
        }
    }
}

/// Network-level gradient check: the trainer's gradients against central differences of the
/// f32 forward pass (loss in f64). Returns the worst relative error over trained parameters.
fn check_network<const N: usize>(net: &Network<N>, seed: u64, target: Target) -> f64 {
    let plan = TrainingPlan::new(net, Sgd::new(0.1)).unwrap();
    let mut rng = Rng(seed);
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, seed).unwrap();
    // Non-zero biases so that every path carries signal.
    for i in 0..N {
        if let Some((_, b)) = net.param_ranges(i) {
            let v = rng.f32s(b.len());
            params[b].copy_from_slice(&v);
        }
    }
    let input = rng.f32s(net.input_shape().elements().unwrap());
    let mut arena = Arena::new(plan.bytes());
    let analytic: Vec<Vec<f32>> = {
        let mut p = params.clone();
        let mut t = Trainer::new(&plan, &mut p, arena.get()).unwrap();
        t.accumulate(&input, target).unwrap();
        (0..N)
            .map(|i| t.gradient(i).map(<[f32]>::to_vec).unwrap_or_default())
            .collect()
    };
    let mut loss_at = |p: &mut [f32]| {
        let mut t = Trainer::new(&plan, p, arena.get()).unwrap();
        loss64(t.forward(&input).unwrap(), target)
    };
    let eps = 3e-3f32;
    let h = f64::from(eps);
    let center = loss_at(&mut params.clone());
    let (mut worst, mut checked, mut skipped) = (0.0f64, 0usize, 0usize);
    for (i, layer) in net.layers().iter().enumerate() {
        let Some((w, b)) = net.param_ranges(i) else {
            assert!(analytic[i].is_empty());
            continue;
        };
        let trained: Vec<usize> = match layer.train {
            Train::Frozen => Vec::new(),
            Train::BiasOnly => b.collect(),
            Train::All => (w.start..b.end).collect(),
        };
        assert_eq!(trained.len(), analytic[i].len(), "layer {i}");
        for (&at, &a) in trained.iter().zip(&analytic[i]) {
            let mut p = params.clone();
            p[at] += eps;
            let up = loss_at(&mut p);
            p[at] = params[at] - eps;
            let down = loss_at(&mut p);
            // A step that crosses a ReLU or max-pool switch has no meaningful difference
            // quotient: one-sided slopes then disagree. Those parameters are skipped (counted).
            let (up_slope, down_slope) = ((up - center) / h, (center - down) / h);
            if (up_slope - down_slope).abs() > 0.05 * up_slope.abs().max(down_slope.abs()).max(1e-2)
            {
                skipped += 1;
                continue;
            }
            let n = (up - down) / (2.0 * h);
            let e = (f64::from(a) - n).abs() / f64::from(a).abs().max(n.abs()).max(1e-2);
            assert!(e < 1e-2, "layer {i} param {at}: analytic {a}, numeric {n}");
            checked += 1;
            worst = worst.max(e);
        }
    }
    assert!(
        skipped * 20 <= checked,
        "{skipped} kinks for {checked} checked parameters"
    );
    std::println!("{checked} parameters checked, {skipped} skipped at a kink, worst {worst:e}");
    worst
}

#[test]
fn network_gradients_match_finite_differences() {
    // Dense MLP with a fused ReLU, a standalone ReLU6 and cross-entropy.
    let mlp = Network::new(
        Shape4::new(1, 1, 1, 6),
        [
            Layer::dense(8, Activation::Relu),
            Layer::dense(5, Activation::None),
            Layer::relu6(),
            Layer::dense(4, Activation::None),
        ],
    )
    .unwrap();
    // Strided conv, max pool, flatten, dense.
    let cnn = Network::new(
        Shape4::new(1, 6, 5, 2),
        [
            Layer::conv2d(4, 3, 2, Padding::Same, Activation::Relu),
            Layer::max_pool2d(2, 1, Padding::Valid),
            Layer::flatten(),
            Layer::dense(3, Activation::None),
        ],
    )
    .unwrap();
    // Dilated depthwise (multiplier 2) with ReLU6, average pool, pointwise conv, ReLU, global
    // average pool, dense; mean squared error.
    let dw = LayerKind::DepthwiseConv2d {
        depth_multiplier: 2,
        kernel: (3, 3),
        stride: (1, 1),
        dilation: (2, 2),
        padding: Padding::Same,
        activation: Activation::Relu6,
    };
    let mobile = Network::new(
        Shape4::new(1, 7, 7, 3),
        [
            Layer {
                kind: dw,
                train: Train::All,
            },
            Layer::average_pool2d(2, 2, Padding::Same),
            Layer::conv2d(4, 1, 1, Padding::Valid, Activation::None),
            Layer::relu(),
            Layer::global_average_pool(),
            Layer::dense(3, Activation::None),
        ],
    )
    .unwrap();
    let targets = [0.5f32, -1.0, 2.0];
    let mut worst = [0.0f64; 4];
    worst[0] = check_network(&mlp, 11, Target::Class(2));
    worst[1] = check_network(&cnn, 12, Target::Class(1));
    worst[2] = check_network(&mobile, 13, Target::Values(&targets));
    // Partial: head weights, and the conv's bias only; the layers between stay frozen but pass
    // gradients through.
    let mut partial = cnn;
    partial.train_last(1);
    partial.set_train(0, Train::BiasOnly).unwrap();
    worst[3] = check_network(&partial, 14, Target::Class(0));
    std::println!("network gradient check, worst relative errors: {worst:?}");
}

#[test]
fn shapes_and_parameter_counts() {
    let net = small_cnn();
    assert_eq!(net.output_shape(0), Some(Shape4::new(1, 8, 8, 8)));
    assert_eq!(net.output_shape(1), Some(Shape4::new(1, 4, 4, 8)));
    assert_eq!(net.output_shape(2), Some(Shape4::new(1, 1, 1, 128)));
    assert_eq!(net.output_shape(4), Some(Shape4::new(1, 1, 1, 10)));
    assert_eq!(net.param_count(), 80 + 4128 + 330);
    assert_eq!(net.param_ranges(3), Some((80..4176, 4176..4208)));
    assert_eq!(net.param_ranges(1), None);
    let one = Shape4::new(1, 4, 4, 1);
    let no_flatten = Network::new(one, [Layer::dense(3, Activation::None)]);
    assert!(matches!(no_flatten, Err(Error::ShapeMismatch { .. })));
    let empty: Result<Network<0>, _> = Network::new(one, []);
    assert!(empty.is_err());
    let batch = Network::new(Shape4::new(2, 1, 1, 4), [Layer::dense(3, Activation::None)]);
    assert!(batch.is_err());
    let too_big = Network::new(one, [Layer::max_pool2d(5, 1, Padding::Valid)]);
    assert!(matches!(too_big, Err(Error::InvalidParameter { .. })));
    let mut net = net;
    assert!(net.set_train(1, Train::All).is_err());
    assert!(net.set_train(9, Train::Frozen).is_err());
}

/// Working memory, in f32, worked out by hand for `small_cnn` (activations a1 = 512 after the
/// conv, a2 = 128 after the pool, a3 = a2 (flatten), a4 = 32, a5 = 10).
#[test]
fn memory_scales_with_what_is_trained() {
    let sgd = Sgd::new(0.1).with_momentum(0.9);
    let mut net = small_cnn();
    let bytes = |net: &Network<5>, sgd: Sgd| TrainingPlan::new(net, sgd).unwrap().memory();

    // Head only: keep a4, a5 (42); frozen forward ping-pong 512 + 128; gradients 330 x 2.
    net.train_last(1);
    let head = bytes(&net, sgd);
    assert_eq!(
        (
            head.activations,
            head.scratch,
            head.gradients,
            head.optimizer
        ),
        (42 * 4, 640 * 4, 330 * 4, 330 * 4)
    );
    // Last two: keep a2 (aliased by the flatten), a4, a5 (170); frozen forward 512; backward
    // ping-pong 10 + 32; gradients 4458 x 2.
    net.train_last(2);
    let two = bytes(&net, sgd);
    assert_eq!(
        (two.activations, two.scratch, two.gradients, two.optimizer),
        (170 * 4, 512 * 4, 4458 * 4, 4458 * 4)
    );
    // Everything: keep a1, a2, a4, a5 (682); backward ping-pong max(10, 128) + max(32, 512).
    net.train_last(3);
    let full = bytes(&net, sgd);
    assert_eq!(
        (
            full.activations,
            full.scratch,
            full.gradients,
            full.optimizer
        ),
        (682 * 4, 640 * 4, 4538 * 4, 4538 * 4)
    );
    // Biases only, everywhere: activations as for full training, gradients 8 + 32 + 10.
    net.train_biases_only();
    let biases = bytes(&net, sgd);
    assert_eq!((biases.gradients, biases.optimizer), (50 * 4, 50 * 4));
    // Without momentum there is no optimizer state.
    net.train_last(1);
    assert_eq!(bytes(&net, Sgd::new(0.1)).optimizer, 0);
    assert_eq!(
        [head.total(), two.total(), full.total(), biases.total()],
        [5368, 38392, 41592, 5688]
    );
}

/// Trains `small_cnn` on random data for a few batches in an arena of exactly `bytes()` plus
/// a sentinel tail; every byte of the plan is written, none past it.
#[test]
fn the_plan_is_exactly_the_memory_touched() {
    for k in 1..=3 {
        let mut net = small_cnn();
        net.train_last(k);
        let plan = TrainingPlan::new(&net, Sgd::new(0.05).with_momentum(0.9)).unwrap();
        let needed = plan.bytes();
        let mut params = vec![0.0f32; net.param_count()];
        net.init_params(&mut params, 5).unwrap();

        let mut short = Arena::new(needed - 1);
        let err = Trainer::new(&plan, &mut params, short.get()).map(|_| ());
        assert_eq!(
            err,
            Err(Error::BufferTooSmall {
                needed,
                actual: needed - 1
            })
        );

        let mut arena = Arena::new(needed + 64);
        let mut rng = Rng(77 + k as u64);
        {
            let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
            for _ in 0..3 {
                for label in 0..4 {
                    t.accumulate(&rng.f32s(64), Target::Class(label)).unwrap();
                }
                t.step().unwrap();
            }
            t.accumulate(&rng.f32s(64), Target::Class(7)).unwrap();
        }
        let bytes = arena.get();
        assert!(bytes[needed..].iter().all(|&b| b == SENTINEL), "k = {k}");
        let words = bytes[..needed].chunks_exact(4);
        let untouched = words.filter(|w| w.iter().all(|&b| b == SENTINEL)).count();
        assert_eq!(untouched, 0, "k = {k}: words of the plan never written");

        // A misaligned arena is refused, not read.
        let mut big = Arena::new(needed + 4);
        let misaligned = &mut big.get()[1..];
        let r = Trainer::new(&plan, &mut params, misaligned).map(|_| ());
        assert!(matches!(r, Err(Error::InvalidParameter { .. })));
    }
}

#[test]
fn frozen_layers_do_not_change_and_bias_only_changes_only_biases() {
    let mut net = small_cnn();
    net.train_last(1);
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, 9).unwrap();
    let before = params.clone();
    let plan = TrainingPlan::new(&net, Sgd::new(0.1)).unwrap();
    let mut arena = Arena::new(plan.bytes());
    let mut rng = Rng(3);
    {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        assert!(t.gradient(0).is_none() && t.gradient(3).is_none());
        assert_eq!(t.gradient(4).map(<[f32]>::len), Some(330));
        for label in 0..10 {
            t.accumulate(&rng.f32s(64), Target::Class(label)).unwrap();
        }
        t.step().unwrap();
    }
    let (head_w, _) = net.param_ranges(4).unwrap();
    assert_eq!(before[..head_w.start], params[..head_w.start]);
    assert_ne!(before[head_w.start..], params[head_w.start..]);

    net.train_biases_only();
    let plan = TrainingPlan::new(&net, Sgd::new(0.1).with_weight_decay(0.1)).unwrap();
    let before = params.clone();
    let mut arena = Arena::new(plan.bytes());
    {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        t.accumulate(&rng.f32s(64), Target::Class(3)).unwrap();
        t.step().unwrap();
    }
    for i in [0, 3, 4] {
        let (w, b) = net.param_ranges(i).unwrap();
        assert_eq!(before[w.clone()], params[w], "layer {i} weights");
        assert_ne!(before[b.clone()], params[b], "layer {i} biases");
    }
}

#[test]
fn non_finite_loss_or_gradient_leaves_the_weights_exactly() {
    let mut net = small_cnn();
    net.train_last(2);
    let sgd = Sgd::new(0.1).with_momentum(0.9).with_clip_norm(1.0);
    let plan = TrainingPlan::new(&net, sgd).unwrap();
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, 21).unwrap();
    let mut arena = Arena::new(plan.bytes());
    let mut rng = Rng(8);
    let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
    // Build up some velocity first, so that a step would move the weights even with zero
    // gradients.
    t.accumulate(&rng.f32s(64), Target::Class(1)).unwrap();
    t.step().unwrap();
    let before: Vec<u32> = t.params().iter().map(|v| v.to_bits()).collect();
    let bits = |t: &Trainer<5>| t.params().iter().map(|v| v.to_bits()).collect::<Vec<_>>();

    // A NaN pixel: the loss is NaN, the sample is refused before touching any gradient.
    let mut x = rng.f32s(64);
    x[10] = f32::NAN;
    let r = t.accumulate(&x, Target::Class(2));
    assert!(matches!(r, Err(Error::NonFinite { .. })), "{r:?}");
    assert_eq!(t.pending(), 0);
    assert!(t.gradient(4).unwrap().iter().all(|&g| g == 0.0));
    t.step().unwrap(); // nothing pending: no-op
    assert_eq!(bits(&t), before);

    // A huge (finite) input whose label is not the arg-max: the loss is finite, but the
    // gradients overflow f32. The step is refused and the weights and velocity stay.
    let huge: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { 3e37 } else { 0.0 })
        .collect();
    let z = t.forward(&huge).unwrap().to_vec();
    let worst = (0..10).min_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap();
    let loss = t.accumulate(&huge, Target::Class(worst));
    match loss {
        Ok(l) => {
            assert!(l.is_finite());
            assert_eq!(
                t.step(),
                Err(Error::NonFinite {
                    what: why!("gradient")
                })
            );
        }
        Err(e) => assert!(matches!(e, Error::NonFinite { .. })),
    }
    assert_eq!(bits(&t), before);
    assert_eq!(t.pending(), 0);
    // Training goes on afterwards, with the velocity it had.
    t.accumulate(&rng.f32s(64), Target::Class(1)).unwrap();
    t.step().unwrap();
    assert_ne!(bits(&t), before);
    assert_eq!(t.steps(), 2);
}

#[test]
fn a_mini_batch_step_uses_the_mean_gradient_and_clipping_bounds_it() {
    // A single dense layer 3 -> 2, MSE: the gradient is easy to reason about.
    let net = Network::new(Shape4::new(1, 1, 1, 3), [Layer::dense(2, Activation::None)]).unwrap();
    let mut params = vec![0.1f32, -0.2, 0.3, 0.0, 0.5, -0.5, 0.0, 0.0];
    let xs = [[1.0f32, 2.0, 3.0], [-1.0, 0.5, 2.0]];
    let ys = [[1.0f32, 0.0], [0.0, 1.0]];
    let plan = TrainingPlan::new(&net, Sgd::new(0.5)).unwrap();
    let mut arena = Arena::new(plan.bytes());
    let grads: Vec<Vec<f32>> = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| {
            let mut p = params.clone();
            let mut t = Trainer::new(&plan, &mut p, arena.get()).unwrap();
            t.accumulate(x, Target::Values(y)).unwrap();
            t.gradient(0).unwrap().to_vec()
        })
        .collect();
    let start = params.clone();
    {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        for (x, y) in xs.iter().zip(&ys) {
            t.accumulate(x, Target::Values(y)).unwrap();
        }
        let sum: Vec<f32> = t.gradient(0).unwrap().to_vec();
        for (s, (a, b)) in sum.iter().zip(grads[0].iter().zip(&grads[1])) {
            assert!((s - (a + b)).abs() < 1e-6);
        }
        t.step().unwrap();
    }
    for (j, (&p, &p0)) in params.iter().zip(&start).enumerate() {
        let want = p0 - 0.5 * (grads[0][j] + grads[1][j]) / 2.0;
        assert!((p - want).abs() < 1e-6, "param {j}: {p} vs {want}");
    }

    // With clipping at 0.01, the step is exactly lr * 0.01 long (no momentum, no decay).
    let clipped = Sgd::new(0.5).with_clip_norm(0.01);
    let plan = TrainingPlan::new(&net, clipped).unwrap();
    let start = params.clone();
    {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        t.accumulate(&xs[0], Target::Values(&ys[0])).unwrap();
        t.step().unwrap();
    }
    let moved: f32 = params
        .iter()
        .zip(&start)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        .sqrt();
    assert!((moved - 0.005).abs() < 1e-6, "{moved}");
}

#[test]
fn schedule_is_followed_by_the_trainer() {
    let net = Network::new(Shape4::new(1, 1, 1, 1), [Layer::dense(1, Activation::None)]).unwrap();
    let sched = Schedule::Step {
        every: 1,
        factor: 0.5,
    };
    let plan = TrainingPlan::new(&net, Sgd::new(1.0).with_schedule(sched)).unwrap();
    let mut params = vec![0.0f32, 0.0];
    let mut arena = Arena::new(plan.bytes());
    let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
    // x = 0, target 1: only the bias gets a gradient, d/db (b - 1)^2 = 2 (b - 1).
    let mut b = 0.0f32;
    for step in 0..4 {
        t.accumulate(&[0.0], Target::Values(&[1.0])).unwrap();
        t.step().unwrap();
        b -= 0.5f32.powi(step) * 2.0 * (b - 1.0);
        assert!((t.params()[1] - b).abs() < 1e-6);
    }
}

#[test]
fn nothing_trained_still_runs_forward() {
    let mut net = small_cnn();
    net.train_last(0);
    let plan = TrainingPlan::new(&net, Sgd::new(0.1)).unwrap();
    assert_eq!(plan.first_trained(), None);
    assert_eq!(plan.memory().gradients, 0);
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, 1).unwrap();
    let mut arena = Arena::new(plan.bytes());
    let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
    assert_eq!(t.forward(&[0.5; 64]).unwrap().len(), 10);
    assert!(t.accumulate(&[0.5; 64], Target::Class(0)).is_err());
    assert!(t.forward(&[0.5; 63]).is_err());
}

/// The device use: a frozen int8 backbone (here a synthetic int8 fully connected layer with
/// ReLU) produces int8 features; they are dequantized into the f32 input of a trainable head.
#[test]
fn head_trains_on_dequantized_int8_backbone_features() {
    use crate::ops::fully_connected::fully_connected_i8;
    use crate::ops::{Int8Stage, Tensor, TensorMut};
    use crate::quant::QuantizedMultiplier;

    let mut rng = Rng(0x0bac_cb0e);
    let (in_f, feat, classes) = (16usize, 24usize, 4usize);
    let backbone: Vec<i8> = rng.i8s(feat * in_f);
    let prototypes: Vec<Vec<f32>> = (0..classes).map(|_| rng.f32s(in_f)).collect();
    let (in_scale, feat_scale, feat_zp) = (1.0f32 / 100.0, 0.05f32, -128i32);
    let requant =
        [
            QuantizedMultiplier::from_f64(
                f64::from(in_scale) * (1.0 / 64.0) / f64::from(feat_scale),
            )
            .unwrap(),
        ];
    let (act_min, act_max) = Activation::Relu.int8_range(feat_scale, feat_zp);
    let stage = Int8Stage {
        input_offset: 0,
        output_offset: feat_zp,
        act_min,
        act_max,
    };
    // A sample: a noisy prototype, quantized, through the backbone, dequantized.
    let sample = |rng: &mut Rng, class: usize| -> Vec<f32> {
        let noise = rng.f32s(in_f);
        let x: Vec<i8> = prototypes[class]
            .iter()
            .zip(&noise)
            .map(|(p, n)| crate::ops::quantize::quantize_one(in_scale, 0, p + 0.3 * n))
            .collect();
        let mut q = vec![0i8; feat];
        fully_connected_i8(
            &stage,
            Tensor {
                data: &x,
                shape: Shape4::new(1, 1, 1, in_f),
            },
            Tensor {
                data: &backbone,
                shape: Shape4::new(feat, 1, 1, in_f),
            },
            None,
            &requant,
            TensorMut {
                data: &mut q,
                shape: Shape4::new(1, 1, 1, feat),
            },
            &mut [],
        )
        .unwrap();
        let mut f = vec![0.0f32; feat];
        super::network::dequantize_features(feat_scale, feat_zp, &q, &mut f).unwrap();
        f
    };
    let head = Network::new(
        Shape4::new(1, 1, 1, feat),
        [Layer::dense(classes, Activation::None)],
    )
    .unwrap();
    let plan = TrainingPlan::new(&head, Sgd::new(0.05).with_momentum(0.9)).unwrap();
    let mut params = vec![0.0f32; head.param_count()];
    head.init_params(&mut params, 2).unwrap();
    let mut arena = Arena::new(plan.bytes());
    let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
    let test: Vec<(Vec<f32>, usize)> = (0..200).map(|i| (sample(&mut rng, i % 4), i % 4)).collect();
    let accuracy = |t: &mut Trainer<1>| {
        let hits = test.iter().filter(|(x, c)| {
            let z = t.forward(x).unwrap();
            (0..classes).max_by(|&a, &b| z[a].total_cmp(&z[b])) == Some(*c)
        });
        hits.count() as f32 / test.len() as f32
    };
    let before = accuracy(&mut t);
    for step in 0..150 {
        for k in 0..8 {
            let c = (step * 8 + k) % classes;
            let x = sample(&mut rng, c);
            t.accumulate(&x, Target::Class(c)).unwrap();
        }
        t.step().unwrap();
    }
    let after = accuracy(&mut t);
    std::println!("int8 backbone + f32 head: accuracy {before} -> {after}");
    assert!(after >= 0.9 && after > before + 0.3, "{before} -> {after}");
}

/// The case: learning rate 3e38 with momentum wrote Inf into 3 of 68 weights and
/// returned Ok. Such a rate is now refused when the plan is made.
#[test]
fn an_absurd_learning_rate_is_refused_before_training() {
    let net = Network::new(
        Shape4::new(1, 1, 1, 3),
        [Layer::dense(17, Activation::None)],
    )
    .unwrap();
    for sgd in [
        Sgd::new(3e38).with_momentum(0.9),
        Sgd::new(0.0),
        Sgd::new(-0.1),
        Sgd::new(0.1).with_momentum(1.0),
        Sgd::new(0.1).with_momentum(-0.5),
    ] {
        assert!(
            matches!(
                TrainingPlan::new(&net, sgd),
                Err(Error::InvalidParameter { .. })
            ),
            "{sgd:?}"
        );
    }
}

/// An update that overflows with settings that pass validation (the largest rate, momentum,
/// weight decay on a huge weight): refused, and every tensor, the first layer's included
/// (whose own update was finite), stays as it was.
#[test]
fn a_step_that_would_make_a_weight_non_finite_is_refused_and_rolled_back() {
    let net = Network::new(
        Shape4::new(1, 1, 1, 4),
        [
            Layer::dense(6, Activation::Relu),
            Layer::dense(3, Activation::None),
        ],
    )
    .unwrap();
    let sgd = Sgd::new(1000.0).with_momentum(0.9).with_weight_decay(1.0);
    let plan = TrainingPlan::new(&net, sgd).unwrap();
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, 7).unwrap();
    // A huge but finite weight in the last layer: 1000 * 1 * 1e36 overflows.
    let (w, _) = net.param_ranges(1).unwrap();
    params[w.start] = 1e36;
    let before = params.clone();
    let mut arena = Arena::new(plan.bytes());
    {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        t.accumulate(&[0.5, -1.0, 0.25, 2.0], Target::Class(1))
            .unwrap();
        assert!(matches!(t.step(), Err(Error::NonFinite { .. })));
        assert_eq!(t.steps(), 0, "a refused step is not counted");
        assert_eq!(t.pending(), 0, "the batch's gradients are dropped");
        assert!(t.gradient(0).unwrap().iter().all(|&g| g == 0.0));
    }
    assert_eq!(params, before, "a refused step changed the weights");

    // Without the huge weight, the same settings step, and the weights stay finite.
    params[w.start] = 0.1;
    let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
    t.accumulate(&[0.5, -1.0, 0.25, 2.0], Target::Class(1))
        .unwrap();
    t.step().unwrap();
    assert!(t.params().iter().all(|p| p.is_finite()));
    assert_eq!(t.steps(), 1);
}
