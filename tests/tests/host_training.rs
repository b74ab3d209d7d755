//! The host training engine (`mote_host::train`): forward agreement with mote-core's f32
//! kernels, model-file errors, export (batch norm folded) against the engine, training the
//! examples on the bundled data, determinism and checkpoints.
//!
//! Forward agreement bound: max |engine - mote-core| < 1e-4 on random inputs in [-2, 2] with
//! random weights and biases (the two sum in different orders; the measured worst is printed).

use mote_core::geometry::WindowFit;
use mote_core::ops::{self, pooling::PoolParams, Activation, Padding, Shape4, Tensor, TensorMut};
use mote_core::ops::{pooling, Window};
use mote_core::{Interpreter, Model};
use mote_host::data::{basic_motions, digits_split, Normalization};
use mote_host::quantize::{quantize, quantize_input, RangeMethod};
use mote_host::train::{self, ModelSpec, Network, NoCallbacks, TrainingConfig};
use mote_host::workflow;
use mote_host::AlignedBytes;
use mote_tests::synth::Rng;

const AGREE: f32 = 1e-4;

fn example(name: &str) -> ModelSpec {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    ModelSpec::from_file(path).unwrap()
}

fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.f32(-scale, scale)).collect()
}

/// A one-layer network (plus whatever `extra` layers) on `input`, with random parameters.
fn one_layer(input: [usize; 3], layer: &str, classes: usize, rng: &mut Rng) -> Network {
    let text = format!(
        "name = \"t\"\ninput = {input:?}\nclasses = {classes}\nlayers = [ {{ {layer} }} ]\n"
    );
    let spec = ModelSpec::parse(&text).unwrap_or_else(|e| panic!("{layer}: {e:#}"));
    let mut net = Network::new(&spec).unwrap();
    for i in 0..net.parameters().len() {
        let len = net.parameters()[i].values.len();
        net.set_parameter(i, &random(rng, len, 0.7)).unwrap();
    }
    net
}

fn window(
    input: [usize; 3],
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: Padding,
) -> WindowFit {
    let shape = Shape4::new(1, input[0], input[1], input[2]);
    Window::for_kernel(shape, kernel, padding, stride, dilation).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn act(name: &str) -> Activation {
    match name {
        "relu" => Activation::Relu,
        "relu6" => Activation::Relu6,
        _ => Activation::None,
    }
}

fn pad(name: &str) -> Padding {
    if name == "same" {
        Padding::Same
    } else {
        Padding::Valid
    }
}

#[test]
fn conv2d_and_depthwise_agree_with_mote_core() {
    let mut rng = Rng::new(1);
    let n = 3;
    let mut worst = 0f32;
    // (input, filters, kernel, stride, dilation, padding, activation)
    let convs = [
        ([8, 8, 3], 5, (3, 3), (1, 1), (1, 1), "same", "relu"),
        ([9, 7, 2], 4, (3, 3), (2, 2), (1, 1), "same", "none"),
        ([8, 8, 2], 3, (4, 4), (2, 2), (1, 1), "same", "relu6"),
        ([7, 9, 3], 4, (5, 3), (2, 1), (1, 1), "valid", "none"),
        ([9, 9, 2], 3, (3, 3), (1, 1), (2, 2), "same", "relu"),
        ([9, 9, 2], 3, (3, 3), (1, 1), (2, 2), "valid", "none"),
        ([6, 6, 4], 6, (1, 1), (1, 1), (1, 1), "valid", "none"),
        ([6, 6, 4], 6, (1, 1), (2, 2), (1, 1), "same", "relu"),
        ([1, 100, 6], 8, (1, 5), (1, 2), (1, 1), "same", "relu"),
    ];
    for (input, filters, k, s, d, p, a) in convs {
        let WindowFit {
            window: w,
            out_h: oh,
            out_w: ow,
        } = window(input, k, s, d, pad(p));
        let layer = format!(
            "type = \"conv2d\", filters = {filters}, kernel = [{}, {}], stride = [{}, {}], \
             dilation = [{}, {}], padding = \"{p}\", activation = \"{a}\"",
            k.0, k.1, s.0, s.1, d.0, d.1
        );
        let mut net = one_layer(input, &layer, oh * ow * filters, &mut rng);
        let x = random(&mut rng, n * input.iter().product::<usize>(), 2.0);
        let got = net.forward(&x).unwrap().data;
        let params = net.parameters();
        let mut want = vec![0.0; got.len()];
        ops::conv2d::conv2d_f32(
            &w,
            act(a).f32_range(),
            Tensor {
                data: &x,
                shape: Shape4::new(n, input[0], input[1], input[2]),
            },
            Tensor {
                data: params[0].values,
                shape: Shape4::new(filters, k.0, k.1, input[2]),
            },
            Some(params[1].values),
            TensorMut {
                data: &mut want,
                shape: Shape4::new(n, oh, ow, filters),
            },
        )
        .unwrap();
        let diff = max_diff(&got, &want);
        assert!(diff < AGREE, "{layer}: {diff}");
        worst = worst.max(diff);
    }
    // (input, multiplier, kernel, stride, dilation, padding, activation)
    let depthwise = [
        ([8, 8, 4], 1, (3, 3), (1, 1), (1, 1), "same", "relu"),
        ([8, 8, 3], 2, (3, 3), (2, 2), (1, 1), "same", "none"),
        ([9, 7, 2], 2, (3, 2), (1, 2), (1, 1), "valid", "relu6"),
        ([9, 9, 3], 1, (3, 3), (1, 1), (2, 2), "same", "none"),
        ([5, 5, 1], 3, (5, 5), (2, 2), (1, 1), "same", "relu"),
        ([1, 50, 8], 1, (1, 5), (1, 1), (1, 1), "same", "relu"),
    ];
    for (input, m, k, s, d, p, a) in depthwise {
        let WindowFit {
            window: w,
            out_h: oh,
            out_w: ow,
        } = window(input, k, s, d, pad(p));
        let oc = input[2] * m;
        let layer = format!(
            "type = \"depthwise_conv2d\", depth_multiplier = {m}, kernel = [{}, {}], \
             stride = [{}, {}], dilation = [{}, {}], padding = \"{p}\", activation = \"{a}\"",
            k.0, k.1, s.0, s.1, d.0, d.1
        );
        let mut net = one_layer(input, &layer, oh * ow * oc, &mut rng);
        let x = random(&mut rng, n * input.iter().product::<usize>(), 2.0);
        let got = net.forward(&x).unwrap().data;
        let params = net.parameters();
        let mut want = vec![0.0; got.len()];
        ops::depthwise_conv2d::depthwise_conv2d_f32(
            &w,
            m,
            act(a).f32_range(),
            Tensor {
                data: &x,
                shape: Shape4::new(n, input[0], input[1], input[2]),
            },
            Tensor {
                data: params[0].values,
                shape: Shape4::new(1, k.0, k.1, oc),
            },
            Some(params[1].values),
            TensorMut {
                data: &mut want,
                shape: Shape4::new(n, oh, ow, oc),
            },
        )
        .unwrap();
        let diff = max_diff(&got, &want);
        assert!(diff < AGREE, "{layer}: {diff}");
        worst = worst.max(diff);
    }
    eprintln!("conv2d/depthwise: worst |engine - core| = {worst:e}");
}

#[test]
fn dense_pooling_and_softmax_agree_with_mote_core() {
    let mut rng = Rng::new(2);
    let n = 4;
    let mut worst = 0f32;
    for (inputs, units, a) in [(64, 10, "none"), (37, 13, "relu"), (5, 3, "relu6")] {
        let layer = format!("type = \"dense\", units = {units}, activation = \"{a}\"");
        let mut net = one_layer([1, 1, inputs], &layer, units, &mut rng);
        let x = random(&mut rng, n * inputs, 2.0);
        let got = net.forward(&x).unwrap().data;
        let params = net.parameters();
        let mut want = vec![0.0; got.len()];
        ops::fully_connected::fully_connected_f32(
            act(a).f32_range(),
            Tensor {
                data: &x,
                shape: Shape4::new(n, 1, 1, inputs),
            },
            Tensor {
                data: params[0].values,
                shape: Shape4::new(units, 1, 1, inputs),
            },
            Some(params[1].values),
            TensorMut {
                data: &mut want,
                shape: Shape4::new(n, 1, 1, units),
            },
        )
        .unwrap();
        let diff = max_diff(&got, &want);
        assert!(diff < AGREE, "{layer}: {diff}");
        worst = worst.max(diff);
    }
    // (input, kind, size, stride, padding)
    let pools = [
        ([8, 8, 3], "max_pool", (2, 2), (2, 2), "valid"),
        ([7, 7, 2], "max_pool", (3, 3), (2, 2), "same"),
        ([7, 8, 2], "avg_pool", (3, 3), (2, 2), "same"),
        ([6, 9, 3], "avg_pool", (2, 3), (1, 2), "valid"),
        ([5, 5, 2], "avg_pool", (4, 4), (3, 3), "same"),
        ([5, 7, 3], "global_avg_pool", (5, 7), (1, 1), "valid"),
    ];
    for (input, kind, k, s, p) in pools {
        let WindowFit {
            window: w,
            out_h: oh,
            out_w: ow,
        } = window(input, k, s, (1, 1), pad(p));
        let layer = if kind == "global_avg_pool" {
            format!("type = \"{kind}\"")
        } else {
            format!(
                "type = \"{kind}\", size = [{}, {}], stride = [{}, {}], padding = \"{p}\"",
                k.0, k.1, s.0, s.1
            )
        };
        let mut net = one_layer(input, &layer, oh * ow * input[2], &mut rng);
        let x = random(&mut rng, n * input.iter().product::<usize>(), 2.0);
        let got = net.forward(&x).unwrap().data;
        let mut want = vec![0.0; got.len()];
        let params = PoolParams {
            window: w,
            filter_h: k.0,
            filter_w: k.1,
        };
        let full = (f32::NEG_INFINITY, f32::INFINITY);
        let t = Tensor {
            data: &x,
            shape: Shape4::new(n, input[0], input[1], input[2]),
        };
        let out = TensorMut {
            data: &mut want,
            shape: Shape4::new(n, oh, ow, input[2]),
        };
        if kind == "max_pool" {
            pooling::max_pool2d_f32(&params, full, t, out).unwrap();
        } else {
            pooling::average_pool2d_f32(&params, full, t, out).unwrap();
        }
        let diff = max_diff(&got, &want);
        assert!(diff < AGREE, "{layer}: {diff}");
        worst = worst.max(diff);
    }
    let mut net = one_layer([1, 1, 10], "type = \"softmax\"", 10, &mut rng);
    let x = random(&mut rng, n * 10, 8.0);
    let got = net.forward(&x).unwrap().data;
    let mut want = vec![0.0; got.len()];
    ops::softmax::softmax_f32(1.0, &x, &mut want, 10).unwrap();
    let diff = max_diff(&got, &want);
    assert!(diff < AGREE, "softmax: {diff}");
    worst = worst.max(diff);
    eprintln!("dense/pool/softmax: worst |engine - core| = {worst:e}");
}

#[test]
fn model_file_errors_name_the_layer_and_the_shapes() {
    let head = "name = \"t\"\ninput = [8, 8, 1]\nclasses = 10\n";
    let err = |body: &str| {
        format!(
            "{:#}",
            ModelSpec::parse(&format!("{head}{body}")).unwrap_err()
        )
    };

    let e = err("[[layers]]\ntype = \"conv3d\"\nfilters = 4\n");
    assert!(
        e.contains("layer 0") && e.contains("unknown layer type `conv3d`"),
        "{e}"
    );
    assert!(e.contains("depthwise_conv2d"), "lists the known types: {e}");

    let e = err("[[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\nfilterz = 2\n");
    assert!(
        e.contains("layer 0 (conv2d)") && e.contains("filterz"),
        "{e}"
    );

    let e = err("surprise = 1\n[[layers]]\ntype = \"flatten\"\n");
    assert!(e.contains("surprise"), "{e}");

    let e = err(
        "[[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = 3\npadding = \"same\"\n\
         [[layers]]\ntype = \"max_pool\"\nsize = 2\n\
         [[layers]]\ntype = \"relu\"\n\
         [[layers]]\ntype = \"dense\"\nunits = 10\n",
    );
    assert!(e.contains("layer 3 (dense)"), "{e}");
    assert!(e.contains("[4, 4, 8]") && e.contains("[1, 1, 128]"), "{e}");
    assert!(
        e.contains("flatten") && e.contains("global_avg_pool"),
        "{e}"
    );

    // A block that changes the shape gets a projection shortcut, unless told otherwise.
    let e = err("[[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = 3\n\
         [[layers]]\ntype = \"residual\"\nshortcut = \"identity\"\nlayers = [\n\
         { type = \"conv2d\", filters = 8, kernel = 3, padding = \"same\" },\n\
         { type = \"conv2d\", filters = 8, kernel = 3, stride = 2, padding = \"same\" } ]\n");
    assert!(
        e.contains("layer 1 (residual)") && e.contains("shortcut = \"identity\""),
        "{e}"
    );
    assert!(e.contains("[6, 6, 8]") && e.contains("[3, 3, 8]"), "{e}");

    let e = err(
        "[[layers]]\ntype = \"residual\"\nlayers = [ { type = \"conv2d\", filters = 1, \
         kernel = 3, padding = \"same\" }, { type = \"pool\" } ]\n",
    );
    assert!(
        e.contains("layer 0.1") && e.contains("unknown layer type `pool`"),
        "{e}"
    );

    let e = err("[[layers]]\ntype = \"flatten\"\n[training]\noptimizer = { type = \"adamw\" }\n");
    assert!(e.contains("adamw"), "{e}");
}

/// The digits' fixed split (`mote_host::data::digits_split`: stratified, 1,438 training and
/// 359 held-out images), pixels scaled by 1/16.
struct Digits {
    train_x: Vec<f32>,
    train_y: Vec<u32>,
    test_x: Vec<f32>,
    test_y: Vec<u32>,
}

fn digits() -> Digits {
    let (train, test) = digits_split().unwrap();
    let scale = |v: Vec<f32>| v.into_iter().map(|p| p / 16.0).collect();
    Digits {
        train_x: scale(train.features),
        train_y: train.labels,
        test_x: scale(test.features),
        test_y: test.labels,
    }
}

fn fit(net: &mut Network, d: &Digits, config: &TrainingConfig) -> train::History {
    train::train(
        net,
        &d.train_x,
        &d.train_y,
        &d.test_x,
        &d.test_y,
        config,
        &mut NoCallbacks,
    )
    .unwrap()
}

/// The engine's outputs and every layer's capture agree with the exported float model run by
/// mote-core's kernels, batch norm folded.
fn assert_export_matches(net: &mut Network, samples: &[f32]) {
    let model = net.to_float_model();
    let exported = net.export();
    let len = net.sample_len();
    let mut captures = Vec::new();
    let out = net
        .forward_capture(samples, &mut |c| {
            captures.push((c.path.to_vec(), c.part, c.output.clone()))
        })
        .unwrap();
    // Export layers in the order FloatModel::forward traces them: inner layers, then the block.
    fn flatten(layers: &[train::ExportLayer], out: &mut Vec<(Vec<usize>, &'static str)>) {
        for l in layers {
            flatten(&l.inner, out);
            out.extend(l.traced().into_iter().map(|(p, part)| (p.to_vec(), part)));
        }
    }
    let mut order = Vec::new();
    flatten(&exported.layers, &mut order);
    let mut worst = 0f32;
    for (i, sample) in samples.chunks(len).enumerate() {
        let mut trace = Vec::new();
        let y = model
            .forward(sample, &mut |a| trace.push(a.data.clone()))
            .unwrap();
        worst = worst.max(max_diff(&y.data, out.sample(i)));
        assert_eq!(trace.len(), order.len());
        for (t, (path, part)) in trace.iter().zip(&order) {
            let (_, _, c) = captures
                .iter()
                .find(|(p, q, _)| p == path && q == part)
                .unwrap_or_else(|| panic!("no capture for {path:?} {part}"));
            worst = worst.max(max_diff(t, c.sample(i)));
        }
    }
    eprintln!(
        "export ({} layers): worst |engine - exported| = {worst:e}",
        exported.layers.len()
    );
    assert!(worst < 1e-4, "{worst}");
}

/// Accuracy of the int8 model the quantizer makes from the trained network, on the interpreter.
fn int8_accuracy(net: &Network, calibration: &[f32], x: &[f32], y: &[u32]) -> f32 {
    let model = net.to_float_model();
    let len = net.sample_len();
    let calib: Vec<&[f32]> = calibration.chunks(len).take(200).collect();
    let q = quantize(&model, &calib, RangeMethod::MinMax).unwrap();
    let blob = AlignedBytes::new(&q.built.bytes);
    let parsed = Model::parse(blob.as_slice()).unwrap();
    let mut arena = vec![0u8; parsed.arena_size() + 4];
    let offset = arena.as_ptr().align_offset(4);
    let mut interpreter = Interpreter::new(parsed, &mut arena[offset..]).unwrap();
    let mut correct = 0;
    for (sample, &label) in x.chunks(len).zip(y) {
        let input = quantize_input(sample, q.input);
        interpreter.input_i8(0).unwrap().copy_from_slice(&input);
        interpreter.invoke().unwrap();
        let out = interpreter.output_i8(0).unwrap();
        let best = (0..out.len())
            .max_by_key(|&i| (out[i], usize::MAX - i))
            .unwrap();
        correct += usize::from(best == label as usize);
    }
    correct as f32 / y.len() as f32
}

/// The DS-CNN example on the digits: held-out accuracy (target >= 98%), export agreement, the
/// int8 model's accuracy, and a checkpoint round trip of the trained network.
#[test]
fn digits_dscnn_example_reaches_98_percent() {
    let spec = example("digits_dscnn.toml");
    let d = digits();
    let mut net = Network::new(&spec).unwrap();
    let start = std::time::Instant::now();
    let history = fit(&mut net, &d, &spec.training);
    let seconds = start.elapsed().as_secs_f64();
    let eval = train::evaluate(&mut net, &d.test_x, &d.test_y, 256).unwrap();
    let rate: f64 = history
        .epochs
        .iter()
        .map(|e| e.samples_per_second)
        .sum::<f64>()
        / history.epochs.len() as f64;
    eprintln!(
        "digits DS-CNN: {} parameters, {} epochs in {seconds:.1} s ({rate:.0} samples/s), \
         held-out accuracy {:.4} ({}/{}), loss {:.4}",
        net.parameter_count(),
        history.epochs.len(),
        eval.accuracy,
        eval.correct,
        eval.total,
        eval.loss
    );
    assert!(eval.accuracy >= 0.98, "held-out accuracy {}", eval.accuracy);
    assert_eq!(
        history.epochs.last().unwrap().val_accuracy,
        Some(eval.accuracy)
    );

    assert_export_matches(&mut net, &d.test_x[..16 * 64]);
    let exported = net.export();
    let kinds: Vec<&str> = exported.iter().map(|l| l.kind()).collect();
    // conv+bn+relu, dw+bn+relu, pw+bn+relu, pool, separable (dw, pw+bn+relu), gap, dense,
    // softmax: batch norm and relu folded, dropout gone.
    assert_eq!(
        kinds,
        [
            "conv2d",
            "depthwise_conv2d",
            "conv2d",
            "max_pool",
            "depthwise_conv2d",
            "conv2d",
            "global_avg_pool",
            "dense",
            "softmax"
        ]
    );
    assert_eq!(exported.layers[0].sources, [vec![0], vec![1], vec![2]]);

    let int8 = int8_accuracy(&net, &d.train_x, &d.test_x, &d.test_y);
    eprintln!("digits DS-CNN int8 (min/max calibration on 200 training images): {int8:.4}");
    assert!(int8 >= 0.97, "int8 accuracy {int8}");

    let path = std::env::temp_dir().join(format!("mote-dscnn-{}.ckpt", std::process::id()));
    net.save(&path).unwrap();
    let mut back = Network::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(back.spec(), net.spec());
    for (a, b) in net.parameters().iter().zip(back.parameters()) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!((&a.name, bits(a.values)), (&b.name, bits(b.values)));
    }
    assert_eq!(back.to_checkpoint().unwrap(), net.to_checkpoint().unwrap());
    let (x, y) = (&d.test_x[..64 * 32], &d.test_x[..64 * 32]);
    assert_eq!(back.forward(x).unwrap(), net.forward(y).unwrap());
}

#[test]
fn digits_mlp_example_reaches_96_percent() {
    let spec = example("digits_mlp.toml");
    let d = digits();
    let mut net = Network::new(&spec).unwrap();
    let start = std::time::Instant::now();
    let history = fit(&mut net, &d, &spec.training);
    let eval = train::evaluate(&mut net, &d.test_x, &d.test_y, 256).unwrap();
    eprintln!(
        "digits MLP: {} epochs in {:.1} s, held-out accuracy {:.4} ({}/{})",
        history.epochs.len(),
        start.elapsed().as_secs_f64(),
        eval.accuracy,
        eval.correct,
        eval.total
    );
    assert!(eval.accuracy >= 0.96, "held-out accuracy {}", eval.accuracy);
    assert_export_matches(&mut net, &d.test_x[..8 * 64]);
}

/// `[training.augment]` on the digits DS-CNN (one-pixel shifts, a little gain and noise):
/// still learns, to within a few percent of the same run without it.
#[test]
fn digits_dscnn_with_augmentation_still_learns() {
    let plain = example("digits_dscnn.toml");
    let mut augmented = plain.clone();
    augmented.training.augment = Some(train::AugmentSpec {
        shift: train::Shift { dy: 1, dx: 1 },
        scale: 0.1,
        noise: 0.05,
        ..Default::default()
    });
    let d = digits();
    let accuracy = |spec: &ModelSpec| {
        let mut net = Network::new(spec).unwrap();
        let start = std::time::Instant::now();
        fit(&mut net, &d, &spec.training);
        let eval = train::evaluate(&mut net, &d.test_x, &d.test_y, 256).unwrap();
        (eval.accuracy, start.elapsed().as_secs_f64())
    };
    let (without, s1) = accuracy(&plain);
    let (with, s2) = accuracy(&augmented);
    eprintln!(
        "digits DS-CNN held-out accuracy: {without:.4} without augmentation ({s1:.1} s), \
         {with:.4} with ({s2:.1} s)"
    );
    assert!(with >= without - 0.03, "{with} vs {without}");
}

#[test]
fn same_seed_gives_identical_weights_and_early_stopping_restores_the_best() {
    let mut spec = example("digits_dscnn.toml");
    spec.training.epochs = 2;
    let d = digits();
    let run = |spec: &ModelSpec| {
        let mut net = Network::new(spec).unwrap();
        fit(&mut net, &d, &spec.training);
        net.to_checkpoint().unwrap()
    };
    let first = run(&spec);
    assert_eq!(first, run(&spec), "same seed, different weights");
    spec.training.seed = 2;
    assert_ne!(first, run(&spec), "the seed has no effect");

    let mut spec = example("digits_mlp.toml");
    spec.training.epochs = 12;
    spec.training.optimizer = train::OptimizerSpec::Sgd {
        learning_rate: 0.5,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    spec.training.early_stopping = Some(train::EarlyStoppingSpec {
        patience: 3,
        metric: train::Metric::ValLoss,
        min_delta: 0.0,
    });
    let mut net = Network::new(&spec).unwrap();
    let history = fit(&mut net, &d, &spec.training);
    let best = history.best_epoch.unwrap();
    let best_loss = history.epochs[best].val_loss.unwrap();
    assert!(history
        .epochs
        .iter()
        .all(|e| e.val_loss.unwrap() >= best_loss));
    let eval = train::evaluate(&mut net, &d.test_x, &d.test_y, 256).unwrap();
    assert_eq!(
        eval.loss, best_loss,
        "the best epoch's weights were not restored"
    );
}

/// examples/resnet8.toml on the digits: a few epochs of training, the exported float model
/// against the engine (projection shortcuts included), the int8 model (CONV_2D + ADD for each
/// projected block) on mote-core's interpreter close to f32 and well above chance, and a
/// checkpoint round trip.
#[test]
fn resnet8_example_with_projection_shortcuts_exports_to_int8() {
    let mut spec = example("resnet8.toml");
    spec.training.epochs = 6;
    let d = digits();
    let mut net = Network::new(&spec).unwrap();
    let start = std::time::Instant::now();
    let history = fit(&mut net, &d, &spec.training);
    let seconds = start.elapsed().as_secs_f64();
    let eval = train::evaluate(&mut net, &d.test_x, &d.test_y, 256).unwrap();
    let int8 = int8_accuracy(&net, &d.train_x, &d.test_x, &d.test_y);
    eprintln!(
        "ResNet-8 on digits: {} parameters, {} epochs in {seconds:.1} s, held-out accuracy \
         f32 {:.4} ({}/{}), int8 {int8:.4}",
        net.parameter_count(),
        history.epochs.len(),
        eval.accuracy,
        eval.correct,
        eval.total
    );
    assert!(eval.accuracy >= 0.9, "f32 accuracy {}", eval.accuracy);
    assert!(int8 >= 0.5, "int8 accuracy {int8}, chance is 0.1");
    assert!(
        (int8 - eval.accuracy).abs() <= 0.02,
        "int8 {int8} vs f32 {}",
        eval.accuracy
    );

    assert_export_matches(&mut net, &d.test_x[..16 * 64]);
    let exported = net.export();
    let kinds: Vec<&str> = exported.iter().map(|l| l.kind()).collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "residual",
            "residual",
            "residual",
            "global_avg_pool",
            "dense",
            "softmax"
        ]
    );
    let calib: Vec<&[f32]> = d.train_x.chunks(64).take(50).collect();
    let q = quantize(&net.to_float_model(), &calib, RangeMethod::MinMax).unwrap();
    let blob = AlignedBytes::new(&q.built.bytes);
    let model = Model::parse(blob.as_slice()).unwrap();
    let ops: Vec<_> = (0..model.op_count())
        .map(|i| model.op(i).unwrap().opcode)
        .collect();
    let count = |op| ops.iter().filter(|&&o| o == op).count();
    // The stem, two per block and the two projections; one ADD per block.
    assert_eq!(count(mote_core::format::OpCode::Conv2d), 1 + 2 * 3 + 2);
    assert_eq!(count(mote_core::format::OpCode::Add), 3);

    let back = Network::from_checkpoint(&net.to_checkpoint().unwrap()).unwrap();
    assert_eq!(back.to_checkpoint().unwrap(), net.to_checkpoint().unwrap());
}

/// A checkpoint written before projection shortcuts existed (`tests/checkpoints/`, an identity
/// residual block, from the model file beside it) loads, and saves back byte for byte.
#[test]
fn checkpoints_from_before_projection_shortcuts_still_load() {
    let dir = format!("{}/checkpoints", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(format!("{dir}/identity_residual_v1.ckpt")).unwrap();
    let mut net = Network::from_checkpoint(&bytes).unwrap();
    let spec = ModelSpec::from_file(format!("{dir}/identity_residual_v1.toml")).unwrap();
    assert_eq!(net.spec().layers, spec.layers);
    assert_eq!(net.to_checkpoint().unwrap(), bytes);
    let d = digits();
    assert_eq!(net.predict(&d.test_x[..4 * 64]).unwrap().len(), 4);
}

/// The 1-D CNN example on BasicMotions (40 training and 40 test recordings, standardized per
/// channel with statistics from the training set).
#[test]
fn motion_cnn1d_example_learns_basic_motions() {
    let spec = example("motion_cnn1d.toml");
    let (mut train_set, mut test_set) = basic_motions().unwrap();
    let norm = Normalization::fit(&train_set);
    norm.apply(&mut train_set).unwrap();
    norm.apply(&mut test_set).unwrap();
    let mut net = Network::new(&spec).unwrap();
    net.check_sample_shape(&train_set.feature_shape).unwrap();
    let start = std::time::Instant::now();
    train::train(
        &mut net,
        &train_set.features,
        &train_set.labels,
        &[],
        &[],
        &spec.training,
        &mut NoCallbacks,
    )
    .unwrap();
    let eval = train::evaluate(&mut net, &test_set.features, &test_set.labels, 64).unwrap();
    eprintln!(
        "BasicMotions 1-D CNN: {:.1} s, test accuracy {:.3} ({}/{})",
        start.elapsed().as_secs_f64(),
        eval.accuracy,
        eval.correct,
        eval.total
    );
    assert!(eval.accuracy >= 0.9, "test accuracy {}", eval.accuracy);
    assert_export_matches(&mut net, &test_set.features[..4 * 600]);
}

/// An LSTM example through the workflow behind `mote train` and `mote export` (the data's
/// normalization, training, quantization with 200 calibration samples and min/max ranges,
/// the model directory): held-out f32 and int8 accuracy, the int8 graph the converter would
/// emit, export agreement and a checkpoint round trip. Returns (f32, int8) accuracy.
fn lstm_example(file: &str, data: &str, sample_len: usize) -> (f64, f64) {
    let spec = example(file);
    let data = workflow::load_data(data, None, &Default::default()).unwrap();
    let start = std::time::Instant::now();
    let (mut net, history) = workflow::train(&spec, &data, &mut NoCallbacks).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let dir = std::env::temp_dir().join(format!("mote-{}-{}", spec.name, std::process::id()));
    let report = workflow::export(&net, &data, 200, RangeMethod::MinMax, None, &dir).unwrap();
    let (float, int8) = (report.float.accuracy, report.int8.accuracy);
    eprintln!(
        "{file}: {} parameters, {} epochs in {seconds:.1} s, held-out accuracy f32 {float:.4}, \
         int8 {int8:.4} ({} samples)",
        net.parameter_count(),
        history.epochs.len(),
        data.test.len()
    );
    let blob = std::fs::read(dir.join("model.mote")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let aligned = AlignedBytes::new(&blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let ops: Vec<&str> = (0..model.op_count())
        .map(|k| model.op(k).unwrap().opcode.name())
        .collect();
    assert_eq!(
        ops,
        [
            "UNIDIRECTIONAL_SEQUENCE_LSTM",
            "STRIDED_SLICE",
            "FULLY_CONNECTED",
            "SOFTMAX"
        ]
    );

    assert_export_matches(&mut net, &data.test.features[..4 * sample_len]);
    let path = std::env::temp_dir().join(format!("mote-{}-{}.ckpt", spec.name, std::process::id()));
    net.save(&path).unwrap();
    let mut back = Network::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let x = &data.test.features[..8 * sample_len];
    assert_eq!(back.forward(x).unwrap(), net.forward(x).unwrap());
    (float, int8)
}

/// examples/motion_lstm.toml on BasicMotions' official split (40 training and 40 test
/// recordings of 100 steps x 6 channels): the targets, >= 97.5% f32 and int8 within
/// a point of it (measured: 100% and 100%).
#[test]
fn motion_lstm_example_reaches_97_5_percent() {
    let (float, int8) = lstm_example("motion_lstm.toml", "motion", 600);
    assert!(float >= 0.975, "held-out f32 accuracy {float}");
    assert!(int8 >= float - 0.01, "int8 {int8} vs f32 {float}");
}

/// examples/digits_lstm.toml on the digits read row by row (the data's [8, 8, 1] images as
/// the model's 8 steps of 8 features; 359 held-out images): >= 97% f32 and int8 within a
/// point of it (measured: 98.89% and 98.89%).
#[test]
fn digits_lstm_example_reaches_97_percent() {
    let (float, int8) = lstm_example("digits_lstm.toml", "digits", 64);
    assert!(float >= 0.97, "held-out f32 accuracy {float}");
    assert!(int8 >= float - 0.01, "int8 {int8} vs f32 {float}");
}
