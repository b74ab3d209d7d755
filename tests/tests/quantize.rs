//! Post-training quantization: an int8 model written by the quantizer computes what its float
//! original computes, within the rounding that int8 implies.

use mote_core::ops::{Activation, Padding, Shape4};
use mote_core::{Interpreter, Model};
use mote_host::float_model::{FloatLayer, FloatModel};
use mote_host::quantize::{qparams_for_range, quantize, quantize_input, RangeMethod};
use mote_host::AlignedBytes;
use mote_tests::synth::Rng;

fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.f32(-scale, scale)).collect()
}

/// conv 3x3 (ReLU) -> depthwise 3x3 (ReLU6) -> residual [pointwise] -> max pool -> global
/// average pool -> dense -> softmax, with random weights.
fn float_model(rng: &mut Rng) -> FloatModel {
    let c = 6;
    FloatModel {
        input: Shape4::new(1, 8, 8, 2),
        layers: vec![
            FloatLayer::Conv2d {
                filter: random(rng, c * 3 * 3 * 2, 0.5),
                filter_shape: Shape4::new(c, 3, 3, 2),
                bias: random(rng, c, 0.1),
                padding: Padding::Same,
                stride: (1, 1),
                dilation: (1, 1),
                activation: Activation::Relu,
            },
            FloatLayer::DepthwiseConv2d {
                filter: random(rng, 3 * 3 * c, 0.5),
                filter_shape: Shape4::new(1, 3, 3, c),
                bias: random(rng, c, 0.1),
                padding: Padding::Same,
                stride: (2, 2),
                dilation: (1, 1),
                depth_multiplier: 1,
                activation: Activation::Relu6,
            },
            FloatLayer::Residual {
                layers: vec![FloatLayer::Conv2d {
                    filter: random(rng, c * c, 0.4),
                    filter_shape: Shape4::new(c, 1, 1, c),
                    bias: random(rng, c, 0.1),
                    padding: Padding::Valid,
                    stride: (1, 1),
                    dilation: (1, 1),
                    activation: Activation::None,
                }],
                activation: Activation::Relu,
            },
            FloatLayer::MaxPool {
                filter: (2, 2),
                stride: (2, 2),
                padding: Padding::Valid,
            },
            FloatLayer::GlobalAvgPool,
            FloatLayer::Flatten,
            FloatLayer::Dense {
                weights: random(rng, 4 * c, 1.0),
                outputs: 4,
                bias: random(rng, 4, 0.2),
                activation: Activation::None,
            },
            FloatLayer::Softmax,
        ],
    }
}

#[test]
fn qparams_cover_the_range_and_zero_exactly() {
    assert_eq!(qparams_for_range(0.0, 2.55), (0.01, -128));
    let (s, z) = qparams_for_range(-1.0, 1.0);
    assert!((s - 2.0 / 255.0).abs() < 1e-9);
    // The zero point is -128 - (-1 / s) = -0.5, rounded away from zero; real 0 is then q = -1.
    assert_eq!(z, -1);
    // A range entirely above zero is widened to start at zero.
    assert_eq!(qparams_for_range(1.0, 2.55).1, -128);
}

#[test]
fn int8_model_tracks_the_float_model() {
    let mut rng = Rng::new(7);
    let model = float_model(&mut rng);
    let samples: Vec<Vec<f32>> = (0..64).map(|_| random(&mut rng, 128, 1.0)).collect();
    let calibration: Vec<&[f32]> = samples[..48].iter().map(|s| &s[..]).collect();
    for method in [RangeMethod::MinMax, RangeMethod::Percentile(99.9)] {
        let q = quantize(&model, &calibration, method).unwrap();
        assert_eq!(q.output, (1.0 / 256.0, -128));
        assert!(q.trainable_op.is_some());
        let blob = AlignedBytes::new(&q.built.bytes);
        let parsed = Model::parse(blob.as_slice()).unwrap();
        let mut arena = vec![0u8; parsed.arena_size() + 4];
        let offset = arena.as_ptr().align_offset(4);
        let mut interpreter = Interpreter::new(parsed, &mut arena[offset..]).unwrap();
        let mut worst = 0f32;
        for s in &samples[48..] {
            let want = model.forward(s, &mut |_| {}).unwrap().data;
            interpreter
                .input_i8(0)
                .unwrap()
                .copy_from_slice(&quantize_input(s, q.input));
            interpreter.invoke().unwrap();
            let got: Vec<f32> = interpreter
                .output_i8(0)
                .unwrap()
                .iter()
                .map(|&v| (v as f32 + 128.0) / 256.0)
                .collect();
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs());
            }
        }
        // Probabilities from held-out samples agree within a few output steps (1/256 each).
        assert!(worst < 0.04, "{method:?}: worst probability error {worst}");
    }
}
