//! End-to-end training with mote-core's trainer on the UCI handwritten digits (8x8, 1,797
//! images, `data/digits/`): from scratch, fine-tuning the head after a sensor shift, and the
//! memory plan against the bytes the trainer actually touches.
//!
//! Everything is deterministic: a fixed shuffle, a fixed 80/20 split (1,437 training images,
//! 360 held out), fixed initial weights and a fixed sample order.

use std::io::Read;

use mote_core::ops::{Activation, Padding, Shape4};
use mote_core::train::{Layer, Network, Schedule, Sgd, Target, Trainer, TrainingPlan};
use mote_core::Error;

const PIXELS: usize = 64;

#[derive(Clone)]
struct Sample {
    x: [f32; PIXELS],
    label: usize,
}

struct Split {
    train: Vec<Sample>,
    test: Vec<Sample>,
}

/// xorshift64*: the shuffles. Not `mote_tests::synth::Rng`: the held-out split and the
/// accuracies measured below come from this generator's order.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Reads the repository's copy of the digits, scales pixels to [0, 1] (pixel / 16), shuffles
/// with a fixed seed and holds out the last 20%.
fn digits() -> Split {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits/digits.csv.gz");
    let file = std::fs::File::open(path).expect("data/digits/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    let mut all: Vec<Sample> = text
        .lines()
        .map(|line| {
            let v: Vec<u8> = line.split(',').map(|f| f.trim().parse().unwrap()).collect();
            assert_eq!(v.len(), PIXELS + 1);
            let mut x = [0.0f32; PIXELS];
            for (d, &p) in x.iter_mut().zip(&v[..PIXELS]) {
                assert!(p <= 16);
                *d = f32::from(p) / 16.0;
            }
            let label = usize::from(v[PIXELS]);
            assert!(label < 10);
            Sample { x, label }
        })
        .collect();
    assert_eq!(all.len(), 1797);
    Rng(0x5eed_d191_7500).shuffle(&mut all);
    let test = all.split_off(all.len() - all.len().div_ceil(5));
    Split { train: all, test }
}

/// A byte buffer of `len` bytes on a 4-byte boundary, filled with `fill`.
struct Arena {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Arena {
    fn new(len: usize, fill: u8) -> Self {
        let bytes = vec![fill; len + 3];
        let start = bytes.as_ptr().align_offset(4);
        Self { bytes, start, len }
    }
    fn get(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

/// The 64-32-10 MLP: dense + ReLU, dense to 10 logits.
fn mlp() -> Network<2> {
    let layers = [
        Layer::dense(32, Activation::Relu),
        Layer::dense(10, Activation::None),
    ];
    Network::new(Shape4::new(1, 1, 1, PIXELS), layers).unwrap()
}

/// A tiny conv net: conv 3x3x8 SAME + ReLU, 2x2 max pool, flatten, dense 32 + ReLU, dense 10.
fn cnn() -> Network<5> {
    let layers = [
        Layer::conv2d(8, 3, 1, Padding::Same, Activation::Relu),
        Layer::max_pool2d(2, 2, Padding::Valid),
        Layer::flatten(),
        Layer::dense(32, Activation::Relu),
        Layer::dense(10, Activation::None),
    ];
    Network::new(Shape4::new(1, 8, 8, 1), layers).unwrap()
}

fn accuracy<const N: usize>(t: &mut Trainer<N>, data: &[Sample]) -> f32 {
    let hits = data
        .iter()
        .filter(|s| {
            let z = t.forward(&s.x).unwrap();
            let best = (0..z.len()).max_by(|&a, &b| z[a].total_cmp(&z[b]));
            best == Some(s.label)
        })
        .count();
    hits as f32 / data.len() as f32
}

/// Mini-batch SGD over `epochs` passes of `data`, in a fresh deterministic order each epoch.
fn fit<const N: usize>(
    t: &mut Trainer<N>,
    data: &[Sample],
    epochs: usize,
    batch: usize,
    seed: u64,
) {
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng(seed);
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        for chunk in order.chunks(batch) {
            for &i in chunk {
                t.accumulate(&data[i].x, Target::Class(data[i].label))
                    .unwrap();
            }
            t.step().unwrap();
        }
    }
}

const BATCH: usize = 16;
const SCRATCH_EPOCHS: usize = 20;

/// Steps in `epochs` passes over the training set.
fn steps(train: usize, epochs: usize) -> u32 {
    (train.div_ceil(BATCH) * epochs) as u32
}

/// Trains `net` from scratch; returns the parameters and the held-out accuracy.
fn train_from_scratch<const N: usize>(
    net: &Network<N>,
    data: &Split,
    seed: u64,
) -> (Vec<f32>, f32) {
    let sgd = Sgd::new(0.1)
        .with_momentum(0.9)
        .with_weight_decay(1e-4)
        .with_clip_norm(5.0)
        .with_schedule(Schedule::Cosine {
            steps: steps(data.train.len(), SCRATCH_EPOCHS),
            min: 0.001,
        });
    let plan = TrainingPlan::new(net, sgd).unwrap();
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, seed).unwrap();
    let mut arena = Arena::new(plan.bytes(), 0);
    let acc = {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        fit(&mut t, &data.train, SCRATCH_EPOCHS, BATCH, seed);
        accuracy(&mut t, &data.test)
    };
    (params, acc)
}

#[test]
fn mlp_from_scratch_reaches_95_percent_deterministically() {
    let data = digits();
    assert_eq!((data.train.len(), data.test.len()), (1437, 360));
    let net = mlp();
    let (p1, acc1) = train_from_scratch(&net, &data, 7);
    let (p2, acc2) = train_from_scratch(&net, &data, 7);
    println!(
        "MLP 64-32-10 from scratch: held-out accuracy {acc1:.4} ({} of {})",
        (acc1 * data.test.len() as f32).round(),
        data.test.len()
    );
    assert!(acc1 >= 0.95, "held-out accuracy {acc1}");
    // Same seed, same bits.
    assert_eq!(acc1, acc2);
    let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&p1), bits(&p2));
}

#[test]
fn cnn_from_scratch_reaches_95_percent() {
    let data = digits();
    let (_, acc) = train_from_scratch(&cnn(), &data, 11);
    println!("CNN conv8-pool-32-10 from scratch: held-out accuracy {acc:.4}");
    assert!(acc >= 0.95, "held-out accuracy {acc}");
}

/// The same images through a different sensor: `x' = clamp(gain * x + offset, 0, 1)`.
fn shifted(data: &[Sample], gain: f32, offset: f32) -> Vec<Sample> {
    data.iter()
        .map(|s| {
            let mut t = s.clone();
            for v in &mut t.x {
                *v = (gain * *v + offset).clamp(0.0, 1.0);
            }
            t
        })
        .collect()
}

/// Trains the MLP on clean digits, then fine-tunes only its head (the last dense layer, 330
/// parameters) for 5 epochs on shifted training images. Returns the held-out accuracy on
/// shifted images before and after, and checks that the frozen layer did not move.
fn fine_tune_head(gain: f32, offset: f32) -> (f32, f32) {
    let data = digits();
    let mut net = mlp();
    let (mut params, clean) = train_from_scratch(&net, &data, 7);
    let (train, test) = (
        shifted(&data.train, gain, offset),
        shifted(&data.test, gain, offset),
    );
    net.train_last(1);
    let plan = TrainingPlan::new(&net, Sgd::new(0.05).with_momentum(0.9)).unwrap();
    let frozen = params[..net.param_ranges(1).unwrap().0.start].to_vec();
    let mut arena = Arena::new(plan.bytes(), 0);
    let (before, after, clean_after) = {
        let mut t = Trainer::new(&plan, &mut params, arena.get()).unwrap();
        let before = accuracy(&mut t, &test);
        fit(&mut t, &train, 5, BATCH, 99);
        (
            before,
            accuracy(&mut t, &test),
            accuracy(&mut t, &data.test),
        )
    };
    println!(
        "shift x' = {gain} x + {offset}: held-out accuracy {before:.4} before, {after:.4} after \
         head-only fine-tuning ({} B working memory); clean data {clean:.4} -> {clean_after:.4}",
        plan.bytes()
    );
    assert_eq!(params[..frozen.len()], frozen[..], "the frozen layer moved");
    (before, after)
}

#[test]
fn fine_tuning_the_head_recovers_from_a_low_gain_high_offset_sensor() {
    // x' = 0.4 x + 0.5: measured 0.7278 -> 0.9694.
    let (before, after) = fine_tune_head(0.4, 0.5);
    assert!(after >= before + 0.15, "{before} -> {after}");
    assert!(after >= 0.95, "{after}");
}

#[test]
fn fine_tuning_the_head_recovers_from_a_mild_sensor_shift() {
    // x' = 0.6 x + 0.25: the MLP copes fairly well already; measured 0.9472 -> 0.9778.
    let (before, after) = fine_tune_head(0.6, 0.25);
    assert!(after >= before + 0.02, "{before} -> {after}");
}

#[test]
fn fine_tuning_the_head_adapts_to_inverted_images() {
    // x' = 1 - x: the clean model is almost always wrong; measured 0.0028 -> 0.9417.
    let (before, after) = fine_tune_head(-1.0, 1.0);
    assert!(before < 0.1, "{before}");
    assert!(after >= 0.90, "{after}");
}

#[test]
fn memory_plan_is_exactly_what_training_touches() {
    let data = digits();
    let mut net = cnn();
    let sgd = Sgd::new(0.05).with_momentum(0.9);
    let mut report = Vec::new();
    for (what, k) in [("head only", 1), ("last 2", 2), ("full", 3)] {
        net.train_last(k);
        let plan = TrainingPlan::new(&net, sgd).unwrap();
        let needed = plan.bytes();
        let mut params = vec![0.0f32; net.param_count()];
        net.init_params(&mut params, 3).unwrap();

        // One byte short: refused.
        let mut short = Arena::new(needed - 1, 0);
        let r = Trainer::new(&plan, &mut params, short.get()).map(|_| ());
        assert_eq!(
            r,
            Err(Error::BufferTooSmall {
                needed,
                actual: needed - 1
            })
        );

        // Exactly enough, inside a bigger sentinel-filled buffer: an epoch of training writes
        // every byte of the plan and none past it.
        let mut arena = Arena::new(needed + 256, 0xa5);
        {
            let mut t = Trainer::new(&plan, &mut params, &mut arena.get()[..needed]).unwrap();
            fit(&mut t, &data.train[..256], 1, BATCH, 5);
        }
        let bytes = arena.get();
        assert!(
            bytes[needed..].iter().all(|&b| b == 0xa5),
            "{what}: wrote past the plan"
        );
        let untouched = bytes[..needed]
            .chunks_exact(4)
            .filter(|w| w.iter().all(|&b| b == 0xa5))
            .count();
        assert_eq!(untouched, 0, "{what}: words of the plan never written");
        let m = plan.memory();
        report.push((what, m, needed));
    }
    println!(
        "working memory of conv3x3x8-maxpool2-flatten-dense32-dense10 (params {} B, SGD \
         momentum 0.9):",
        net.param_count() * 4
    );
    for (what, m, total) in &report {
        println!(
            "  {what:>9}: {total:>6} B = activations {} + scratch {} + gradients {} + momentum {}",
            m.activations, m.scratch, m.gradients, m.optimizer
        );
    }
    let totals: Vec<usize> = report.iter().map(|r| r.2).collect();
    assert_eq!(totals, [5368, 38392, 41592]);
}
