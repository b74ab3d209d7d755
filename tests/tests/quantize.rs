//! Post-training quantization: an int8 model written by the quantizer computes what its float
//! original computes, within the rounding that int8 implies.

use mote_core::format::DType;
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
                shortcut: None,
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

/// Two stacked LSTMs (every step, then the last step) with random weights, as the converter
/// emits them: one UNIDIRECTIONAL_SEQUENCE_LSTM each with int8 weights and an int16 cell state,
/// a STRIDED_SLICE of the last step, and the model's input a `[1, steps, features]` sequence.
/// Run on the interpreter (state reset between sequences),
/// the int8 model's outputs follow the float model's within a few output steps, and running a
/// sequence twice without a reset shows the states are kept across invokes.
#[test]
fn int8_lstm_tracks_the_float_lstm() {
    let mut rng = Rng::new(9);
    let (steps, features, u1, u2) = (12, 5, 8, 6);
    let lstm = |rng: &mut Rng, inputs: usize, units: usize, return_sequences: bool| {
        let mut bias = random(rng, 4 * units, 0.3);
        bias[units..2 * units].iter_mut().for_each(|b| *b += 1.0);
        FloatLayer::Lstm {
            units,
            weights: random(rng, 4 * units * inputs, 0.6),
            recurrent: random(rng, 4 * units * units, 0.4),
            bias,
            return_sequences,
        }
    };
    let model = FloatModel {
        input: Shape4::new(1, 1, steps, features),
        layers: vec![
            lstm(&mut rng, features, u1, true),
            lstm(&mut rng, u1, u2, false),
        ],
    };
    let samples: Vec<Vec<f32>> = (0..48)
        .map(|_| random(&mut rng, steps * features, 1.5))
        .collect();
    let calibration: Vec<&[f32]> = samples[..32].iter().map(|s| &s[..]).collect();
    let q = quantize(&model, &calibration, RangeMethod::MinMax).unwrap();
    let blob = AlignedBytes::new(&q.built.bytes);
    let parsed = Model::parse(blob.as_slice()).unwrap();
    let ops: Vec<&str> = (0..parsed.op_count())
        .map(|k| parsed.op(k).unwrap().opcode.name())
        .collect();
    assert_eq!(
        ops,
        [
            "UNIDIRECTIONAL_SEQUENCE_LSTM",
            "UNIDIRECTIONAL_SEQUENCE_LSTM",
            "STRIDED_SLICE"
        ]
    );
    // The last LSTM's states: int8 hidden state with the output's parameters, int16 cell
    // state symmetric at a power of two / 32768 covering the calibrated |c| (the record's
    // inputs are input, effective biases, hidden state, cell state).
    let record = parsed.op(1).unwrap();
    let hidden = parsed.tensor(record.inputs[2]).unwrap();
    let cell = parsed.tensor(record.inputs[3]).unwrap();
    assert!(hidden.record.variable && cell.record.variable);
    assert_eq!(
        (hidden.dtype(), hidden.scale(), hidden.zero_point()),
        (DType::I8, q.output.0, q.output.1)
    );
    assert_eq!((cell.dtype(), cell.zero_point()), (DType::I16, 0));
    let cell_range = cell.scale() * 32768.0;
    assert_eq!(cell_range.log2().fract(), 0.0, "{cell_range}");
    let mut c_max = 0f32;
    for s in &calibration {
        let mut traced = 0;
        model
            .forward(s, &mut |a| {
                // Traces: hidden, cell, output of the first LSTM, then the second's.
                if traced == 4 {
                    c_max = a.data.iter().fold(c_max, |m, v| m.max(v.abs()));
                }
                traced += 1;
            })
            .unwrap();
    }
    assert!(
        cell_range >= c_max && (cell_range / 2.0 < c_max || cell_range == 1.0),
        "cell state range {cell_range} for |c| up to {c_max}"
    );
    let mut arena = vec![0u8; parsed.arena_size() + 4];
    let offset = arena.as_ptr().align_offset(4);
    let mut interpreter = Interpreter::new(parsed, &mut arena[offset..]).unwrap();
    let (scale, zero_point) = q.output;
    let run = |interpreter: &mut Interpreter, s: &[f32]| -> Vec<f32> {
        interpreter
            .input_i8(0)
            .unwrap()
            .copy_from_slice(&quantize_input(s, q.input));
        interpreter.invoke().unwrap();
        let out = interpreter.output_i8(0).unwrap();
        out.iter()
            .map(|&v| scale * (i32::from(v) - zero_point) as f32)
            .collect()
    };
    let mut worst = 0f32;
    for s in &samples[32..] {
        interpreter.reset_state().unwrap();
        let want = model.forward(s, &mut |_| {}).unwrap().data;
        let got = run(&mut interpreter, s);
        assert_eq!(got.len(), u2);
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max((g - w).abs());
        }
    }
    eprintln!("int8 LSTM: worst |int8 - f32| = {worst:.4} (output step {scale:.4})");
    // Measured: 3.1 output steps (two LSTMs' rounding, accumulated over 12 steps).
    assert!(
        worst < 6.0 * scale,
        "worst error {worst}, output step {scale}"
    );
    // Without a reset the second sequence starts from the first one's final state.
    let s = &samples[40];
    interpreter.reset_state().unwrap();
    let fresh = run(&mut interpreter, s);
    let continued = run(&mut interpreter, s);
    assert_ne!(fresh, continued, "the states were not kept across invokes");
    interpreter.reset_state().unwrap();
    assert_eq!(run(&mut interpreter, s), fresh);
}
