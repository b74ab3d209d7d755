//! A digits classifier trained with mote-core's own trainer, quantized by mote-host, and laid
//! out as a firmware model directory: the model, its test set, and a "new sensor" set
//! (x' = 0.4 x + 0.5: lower gain, higher offset) to fine-tune on, on the device.

use mote_core::ops::{Activation, Shape4};
use mote_core::train::{Layer, Network, Schedule, Sgd, Target, Trainer, TrainingPlan};
use mote_host::export::{write_model_dir, ExportInfo, LabelledSet};
use mote_host::float_model::{FloatLayer, FloatModel};
use mote_host::quantize::{quantize, Quantized, RangeMethod};
use std::path::Path;

/// The sensor shift the device adapts to.
pub const SHIFT: (f32, f32) = (0.4, 0.5);

/// Pixels scaled to 0..1, labels.
#[derive(Debug, Clone)]
pub struct Samples {
    /// One 64-value image per sample.
    pub x: Vec<Vec<f32>>,
    /// Classes.
    pub y: Vec<u8>,
}

fn samples(d: &mote_host::data::Dataset) -> Samples {
    Samples {
        x: (0..d.len())
            .map(|i| d.sample(i).0.iter().map(|v| v / 16.0).collect())
            .collect(),
        y: d.labels.iter().map(|&l| l as u8).collect(),
    }
}

fn shifted(s: &Samples) -> Samples {
    Samples {
        x: s.x
            .iter()
            .map(|x| {
                x.iter()
                    .map(|v| (SHIFT.0 * v + SHIFT.1).clamp(0.0, 1.0))
                    .collect()
            })
            .collect(),
        y: s.y.clone(),
    }
}

/// What the generator produced.
#[derive(Debug)]
pub struct DigitsDemo {
    /// The quantized model.
    pub quantized: Quantized,
    /// f32 accuracy on the clean test split.
    pub float_accuracy: f32,
    /// The fixed test split, clean.
    pub test: Samples,
    /// A fine-tuning set through the new sensor (from the training split).
    pub finetune: Samples,
    /// The test split through the new sensor.
    pub finetune_test: Samples,
}

/// Trains a 64-32-10 MLP on the fixed digits split (deterministic) and quantizes it.
pub fn build() -> DigitsDemo {
    let (train, test) = mote_host::data::digits_split().expect("bundled digits");
    let (train, test) = (samples(&train), samples(&test));
    let net = Network::new(
        Shape4::new(1, 1, 1, 64),
        [
            Layer::dense(32, Activation::Relu),
            Layer::dense(10, Activation::None),
        ],
    )
    .unwrap();
    let epochs = 20;
    let batch = 16;
    let sgd = Sgd::new(0.1)
        .with_momentum(0.9)
        .with_weight_decay(1e-4)
        .with_schedule(Schedule::Cosine {
            steps: (train.x.len().div_ceil(batch) * epochs) as u32,
            min: 0.001,
        });
    let plan = TrainingPlan::new(&net, sgd).unwrap();
    let mut params = vec![0.0f32; net.param_count()];
    net.init_params(&mut params, 7).unwrap();
    let mut arena = mote_host::AlignedBytes::zeroed(plan.bytes());
    let arena = arena.as_mut_slice();
    {
        let mut t = Trainer::new(&plan, &mut params, arena).unwrap();
        let mut order: Vec<usize> = (0..train.x.len()).collect();
        let mut state = 0x2545_F491u32;
        for _ in 0..epochs {
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                order.swap(i, state as usize % (i + 1));
            }
            for chunk in order.chunks(batch) {
                for &i in chunk {
                    t.accumulate(&train.x[i], Target::Class(train.y[i] as usize))
                        .unwrap();
                }
                t.step().unwrap();
            }
        }
    }
    let layer = |i: usize, outputs: usize, activation| {
        let (w, b) = net.param_ranges(i).unwrap();
        FloatLayer::Dense {
            weights: params[w].to_vec(),
            outputs,
            bias: params[b].to_vec(),
            activation,
        }
    };
    let model = FloatModel {
        input: Shape4::new(1, 1, 1, 64),
        layers: vec![
            layer(0, 32, Activation::Relu),
            layer(1, 10, Activation::None),
        ],
    };
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let hits = test
        .x
        .iter()
        .zip(&test.y)
        .filter(|(x, &y)| argmax(&model.forward(x, &mut |_| {}).unwrap().data) == y as usize)
        .count();
    let calibration: Vec<&[f32]> = train.x.iter().take(300).map(|x| &x[..]).collect();
    let quantized = quantize(&model, &calibration, RangeMethod::MinMax).unwrap();
    let finetune_all = shifted(&train);
    let finetune = Samples {
        x: finetune_all.x[..400].to_vec(),
        y: finetune_all.y[..400].to_vec(),
    };
    DigitsDemo {
        float_accuracy: hits as f32 / test.x.len() as f32,
        quantized,
        finetune_test: shifted(&test),
        finetune,
        test,
    }
}

impl DigitsDemo {
    /// Writes the firmware model directory through `mote export`'s writer.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let labels = |s: &Samples| s.y.iter().map(|&y| u32::from(y)).collect::<Vec<_>>();
        let (test_y, tune_y, tune_test_y) = (
            labels(&self.test),
            labels(&self.finetune),
            labels(&self.finetune_test),
        );
        write_model_dir(
            dir,
            &self.quantized,
            &ExportInfo {
                name: "digits-mlp",
                class_names: &names,
                normalization: None,
            },
            Some(LabelledSet {
                samples: &self.test.x,
                labels: &test_y,
            }),
            Some((
                LabelledSet {
                    samples: &self.finetune.x,
                    labels: &tune_y,
                },
                LabelledSet {
                    samples: &self.finetune_test.x,
                    labels: &tune_test_y,
                },
            )),
        )
    }
}
