//! One training step of mote-core's trainer on a random small network: three layers of any
//! kind (dense, convolutions with any kernel, stride, dilation and padding, pooling, ReLUs,
//! flatten), each frozen, bias-only or trained, any optimizer settings (validation may refuse
//! them), any input and target, any finite starting weights (huge ones included). Nothing may
//! panic; a step that returns `Ok` leaves every weight finite, and one that returns an error
//! leaves every weight as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_core::geometry::Padding;
use mote_core::ops::{Activation, Shape4};
use mote_core::train::{
    Layer, LayerKind, Network, Schedule, Sgd, Target, Train, Trainer, TrainingPlan,
};

/// The fuzzer's bytes, read as needed (zeros once they run out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// 1..=max, mostly small.
    fn small(&mut self, max: u8) -> usize {
        usize::from(self.u8() % max) + 1
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A float from a table of ordinary and extreme values, or raw bits.
    fn value(&mut self) -> f32 {
        const TABLE: [f32; 12] = [
            0.0,
            0.5,
            -1.0,
            0.01,
            2.0,
            1e-3,
            1e3,
            -1e6,
            1e18,
            3e38,
            f32::MIN_POSITIVE,
            0.9,
        ];
        match self.u8() {
            b @ 0..=191 => TABLE[usize::from(b) % TABLE.len()],
            _ => self.f32(),
        }
    }
    fn activation(&mut self) -> Activation {
        [Activation::None, Activation::Relu, Activation::Relu6][usize::from(self.u8() % 3)]
    }
    fn padding(&mut self) -> Padding {
        match self.u8() % 3 {
            0 => Padding::Same,
            1 => Padding::Valid,
            _ => Padding::Explicit {
                h: (usize::from(self.u8() % 3), usize::from(self.u8() % 3)),
                w: (usize::from(self.u8() % 3), usize::from(self.u8() % 3)),
            },
        }
    }
    fn pair(&mut self, max: u8) -> (usize, usize) {
        (self.small(max), self.small(max))
    }
    fn layer(&mut self) -> Layer {
        let kind = match self.u8() % 10 {
            0 | 1 => LayerKind::Dense {
                outputs: self.small(12),
                activation: self.activation(),
            },
            2 | 3 => LayerKind::Conv2d {
                filters: self.small(6),
                kernel: self.pair(4),
                stride: self.pair(3),
                dilation: self.pair(2),
                padding: self.padding(),
                activation: self.activation(),
            },
            4 => LayerKind::DepthwiseConv2d {
                depth_multiplier: self.small(3),
                kernel: self.pair(4),
                stride: self.pair(3),
                dilation: self.pair(2),
                padding: self.padding(),
                activation: self.activation(),
            },
            5 => LayerKind::AveragePool2d {
                size: self.pair(3),
                stride: self.pair(3),
                padding: self.padding(),
            },
            6 => LayerKind::MaxPool2d {
                size: self.pair(3),
                stride: self.pair(3),
                padding: self.padding(),
            },
            7 => LayerKind::GlobalAveragePool,
            8 => [LayerKind::Relu, LayerKind::Relu6][usize::from(self.u8() % 2)],
            _ => LayerKind::Flatten,
        };
        let train =
            [Train::All, Train::All, Train::BiasOnly, Train::Frozen][usize::from(self.u8() % 4)];
        Layer { kind, train }
    }
    fn sgd(&mut self) -> Sgd {
        let mut sgd = Sgd::new(self.value());
        if self.u8().is_multiple_of(2) {
            sgd = sgd.with_momentum(self.value());
        }
        if self.u8().is_multiple_of(3) {
            sgd = sgd.with_weight_decay(self.value());
        }
        if self.u8().is_multiple_of(3) {
            sgd = sgd.with_clip_norm(self.value());
        }
        match self.u8() % 4 {
            0 => sgd.with_schedule(Schedule::Step {
                every: u32::from(self.u8()),
                factor: self.value(),
            }),
            1 => sgd.with_schedule(Schedule::Cosine {
                steps: u32::from(self.u8()),
                min: self.value(),
            }),
            _ => sgd,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let input = Shape4::new(1, b.small(8), b.small(8), b.small(4));
    let layers = [b.layer(), b.layer(), b.layer()];
    let Ok(net) = Network::new(input, layers) else {
        return;
    };
    let sgd = b.sgd();
    let Ok(plan) = TrainingPlan::new(&net, sgd) else {
        return;
    };
    if plan.bytes() > 1 << 20 || net.param_count() > 1 << 16 {
        return;
    }
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, u64::from(b.u8())).unwrap();
    // Some starting weights replaced by fuzzer values (finite: restored or exported weights
    // are), up to the extremes.
    for _ in 0..b.u8() % 8 {
        if params.is_empty() {
            break;
        }
        let i = (usize::from(b.u8()) << 8 | usize::from(b.u8())) % params.len();
        let v = b.value();
        if v.is_finite() {
            params[i] = v;
        }
    }
    let mut arena = vec![0u32; plan.bytes().div_ceil(4)];
    // SAFETY: the u32 buffer's bytes, viewed as u8 (no alignment needed, all bit patterns valid).
    let arena =
        unsafe { std::slice::from_raw_parts_mut(arena.as_mut_ptr().cast::<u8>(), arena.len() * 4) };
    let Some(elements) = net.input_shape().elements() else {
        return;
    };
    let outputs = net.output_shape(2).and_then(|s| s.elements()).unwrap_or(0);
    let samples = usize::from(b.u8() % 3) + 1;
    let mut inputs = Vec::new();
    for _ in 0..samples {
        let x: Vec<f32> = (0..elements).map(|_| b.value()).collect();
        let values: Vec<f32> = (0..outputs).map(|_| b.value()).collect();
        let class = usize::from(b.u8()) % (outputs + 1);
        inputs.push((x, values, class, b.u8() % 2 == 0));
    }
    let before = params.clone();
    let mut trainer = Trainer::new(&plan, &mut params, arena).expect("an arena of plan.bytes()");
    for (x, values, class, by_class) in &inputs {
        let target = if *by_class {
            Target::Class(*class)
        } else {
            Target::Values(values)
        };
        let _ = trainer.accumulate(x, target);
    }
    // Accumulating never touches the weights.
    assert_eq!(
        trainer.params(),
        &before[..],
        "accumulate changed the weights"
    );
    match trainer.step() {
        Ok(()) => assert!(
            trainer.params().iter().all(|p| p.is_finite()),
            "a step returned Ok with a non-finite weight"
        ),
        Err(_) => assert_eq!(
            trainer.params(),
            &before[..],
            "a refused step changed the weights"
        ),
    }
});
