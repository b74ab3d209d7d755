//! Gradient checks: every layer type's backward pass (and the loss) against central finite
//! differences of the f32 forward pass.
//!
//! Each case is a small network around the layer under test, a batch of 3 random samples and
//! the mean softmax cross-entropy (computed in f64 from the f32 logits; class-weighted in one
//! case). For sampled
//! coordinates of every trainable parameter and of the input, the analytic derivative `a` is
//! compared with `n = (L(x + h) - L(x - h)) / 2h`, `h = 1e-3`, and must satisfy
//! `|a - n| <= 1e-3 + 1e-2 * max(|a|, |n|)` (measured: at most 0.3 of that bound). A coordinate
//! where the forward pass is not smooth (a relu, relu6 or max-pool switching inside
//! `[x - h, x + h]`, seen as `n` computed with `h` and with `h / 2` disagreeing by more than
//! half the bound) is skipped; at most a quarter may be.

use super::spec::ModelSpec;
use super::tensor::{Ctx, Rng, Tensor};
use super::Network;

const SEED: u64 = 77;
const H: f32 = 1e-3;

fn loss(net: &mut Network, x: &[f32], y: &[u32], weights: &[f32]) -> f64 {
    let batch = net.batch(x).unwrap();
    let mut ctx = Ctx {
        train: true,
        rng: Rng::new(SEED),
    };
    let end = net.logits_end();
    let logits = net.run(batch, &mut ctx, end, &mut None);
    let c = net.classes();
    let weight = |label: u32| f64::from(weights.get(label as usize).copied().unwrap_or(1.0));
    let mut total = 0.0;
    for (row, &label) in logits.data.chunks_exact(c).zip(y) {
        let max = row.iter().fold(f64::MIN, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        total += weight(label) * (sum.ln() + max - f64::from(row[label as usize]));
    }
    total / y.iter().map(|&l| weight(l)).sum::<f64>()
}

/// Analytic gradients: every trainable parameter's, then the input's.
fn analytic(net: &mut Network, x: &[f32], y: &[u32], w: &[f32]) -> (Vec<Vec<f32>>, Vec<f32>) {
    net.visit_params(&mut |p| p.grad.iter_mut().for_each(|g| *g = 0.0));
    let batch = net.batch(x).unwrap();
    let mut ctx = Ctx {
        train: true,
        rng: Rng::new(SEED),
    };
    let end = net.logits_end();
    let logits = net.run(batch, &mut ctx, end, &mut None);
    let (_, grad, _) =
        super::weighted_softmax_cross_entropy(&logits.data, y, net.classes(), w).unwrap();
    let dy = Tensor {
        n: logits.n,
        shape: logits.shape,
        data: grad,
    };
    let dx = net.run_backward(dy, end);
    let mut grads = Vec::new();
    net.visit_params(&mut |p| {
        if p.trainable {
            grads.push(p.grad.clone());
        }
    });
    (grads, dx.data)
}

fn nudge(net: &mut Network, param: usize, elem: usize, delta: f32) {
    let mut i = 0;
    net.visit_params(&mut |p| {
        if p.trainable {
            if i == param {
                p.value[elem] += delta;
            }
            i += 1;
        }
    });
}

fn numeric(f: &mut dyn FnMut(f32) -> f64, h: f32) -> f64 {
    (f(h) - f(-h)) / (2.0 * f64::from(h))
}

/// Checks one network; returns the worst `|a - n| / (1e-3 + 1e-2 * max(|a|, |n|))` (must be
/// at most 1) and the number of coordinates checked.
fn check(text: &str, input_scale: f32, weights: &[f32]) -> (f64, usize) {
    let spec = ModelSpec::parse(text).unwrap();
    let mut net = Network::with_init(&spec, spec.training.init, 5).unwrap();
    let mut rng = Rng::new(11);
    // Non-zero biases and batch norm parameters, so every term matters.
    for p in 0..net.parameters().len() {
        let v = net.parameters()[p].values.to_vec();
        let name = net.parameters()[p].name.clone();
        let new: Vec<f32> = v
            .iter()
            .map(|&w| match name.as_str() {
                "gamma" | "running_var" => rng.range(0.5, 1.5),
                _ if name.ends_with("bias") || name == "beta" => rng.range(-0.3, 0.3),
                _ => w,
            })
            .collect();
        net.set_parameter(p, &new).unwrap();
    }
    let n = 3;
    let x: Vec<f32> = (0..n * net.sample_len())
        .map(|_| rng.range(-input_scale, input_scale))
        .collect();
    let y: Vec<u32> = (0..n).map(|_| rng.below(net.classes()) as u32).collect();
    let (grads, dx) = analytic(&mut net, &x, &y, weights);
    let (mut worst, mut checked, mut skipped) = (0.0f64, 0, 0);
    let mut judge = |a: f32, f: &mut dyn FnMut(f32) -> f64| {
        let n1 = numeric(f, H);
        let n2 = numeric(f, H / 2.0);
        let a = f64::from(a);
        if (n1 - n2).abs() > 5e-4 + 5e-3 * n1.abs().max(n2.abs()) {
            skipped += 1;
            return;
        }
        checked += 1;
        let ratio = (a - n1).abs() / (1e-3 + 1e-2 * a.abs().max(n1.abs()));
        if ratio > 1.0 {
            eprintln!("  analytic {a}, numeric {n1} (h), {n2} (h / 2)");
        }
        worst = worst.max(ratio);
    };
    for (pi, g) in grads.iter().enumerate() {
        for _ in 0..8.min(g.len()) {
            let e = rng.below(g.len());
            judge(g[e], &mut |d| {
                nudge(&mut net, pi, e, d);
                let l = loss(&mut net, &x, &y, weights);
                nudge(&mut net, pi, e, -d);
                l
            });
        }
    }
    for _ in 0..16 {
        let e = rng.below(x.len());
        judge(dx[e], &mut |d| {
            let mut xd = x.clone();
            xd[e] += d;
            loss(&mut net, &xd, &y, weights)
        });
    }
    assert!(
        skipped * 4 <= checked + skipped,
        "{skipped} of {} coordinates were not smooth",
        checked + skipped
    );
    eprintln!("  ({skipped} non-smooth coordinates skipped)");
    (worst, checked)
}

fn spec(input: &str, classes: usize, layers: &str) -> String {
    format!("name = \"g\"\ninput = {input}\nclasses = {classes}\nlayers = [\n{layers}\n]\n")
}

fn assert_ok(name: &str, text: &str, scale: f32) {
    assert_ok_weighted(name, text, scale, &[]);
}

fn assert_ok_weighted(name: &str, text: &str, scale: f32, weights: &[f32]) {
    let (worst, checked) = check(text, scale, weights);
    eprintln!("{name}: {checked} coordinates, worst error ratio {worst:.3}");
    assert!(checked >= 10, "{name}: only {checked} coordinates checked");
    assert!(worst <= 1.0, "{name}: worst error ratio {worst}");
}

const HEAD: &str = "{ type = \"global_avg_pool\" }, { type = \"dense\", units = 3 }";

#[test]
fn conv2d_gradients() {
    for conv in [
        "filters = 4, kernel = 3, padding = \"same\", activation = \"relu\"",
        "filters = 3, kernel = [3, 2], stride = 2, padding = \"same\"",
        "filters = 3, kernel = 3, dilation = 2, padding = \"valid\", activation = \"relu6\"",
        "filters = 3, kernel = 1, use_bias = false",
    ] {
        let layers = format!("{{ type = \"conv2d\", {conv} }}, {HEAD}");
        assert_ok(conv, &spec("[6, 7, 2]", 3, &layers), 3.0);
    }
}

#[test]
fn depthwise_and_separable_gradients() {
    for layer in [
        "type = \"depthwise_conv2d\", kernel = 3, padding = \"same\", activation = \"relu\"",
        "type = \"depthwise_conv2d\", kernel = [2, 3], stride = 2, depth_multiplier = 2",
        "type = \"depthwise_conv2d\", kernel = 3, dilation = 2, padding = \"same\"",
        "type = \"separable_conv2d\", filters = 4, kernel = 3, padding = \"same\"",
    ] {
        let layers = format!("{{ {layer} }}, {HEAD}");
        assert_ok(layer, &spec("[5, 6, 3]", 3, &layers), 2.0);
    }
}

#[test]
fn dense_flatten_dropout_and_softmax_gradients() {
    let layers = "{ type = \"flatten\" }, { type = \"dense\", units = 6, activation = \"relu\" },
        { type = \"dropout\", rate = 0.3 }, { type = \"dense\", units = 5 },
        { type = \"softmax\" }, { type = \"dense\", units = 4 }, { type = \"softmax\" }";
    assert_ok("dense", &spec("[2, 2, 3]", 4, layers), 1.0);
}

#[test]
fn pooling_gradients() {
    for pool in [
        "type = \"max_pool\", size = 2",
        "type = \"max_pool\", size = 3, stride = 2, padding = \"same\"",
        "type = \"avg_pool\", size = 3, stride = 2, padding = \"same\"",
        "type = \"avg_pool\", size = [2, 3], stride = 1",
    ] {
        let layers =
            format!("{{ {pool} }}, {{ type = \"flatten\" }}, {{ type = \"dense\", units = 3 }}");
        assert_ok(pool, &spec("[5, 5, 2]", 3, &layers), 2.0);
    }
}

#[test]
fn batch_norm_activation_and_residual_gradients() {
    let layers = "{ type = \"conv2d\", filters = 4, kernel = 3, padding = \"same\" },
        { type = \"batch_norm\" }, { type = \"relu6\" },
        { type = \"residual\", activation = \"relu\", layers = [
            { type = \"conv2d\", filters = 4, kernel = 3, padding = \"same\" },
            { type = \"batch_norm\", momentum = 0.9 }, { type = \"relu\" },
            { type = \"depthwise_conv2d\", kernel = 3, padding = \"same\" } ] },
        { type = \"flatten\" }, { type = \"dense\", units = 4 }, { type = \"batch_norm\" }";
    assert_ok("bn+residual", &spec("[4, 4, 2]", 4, layers), 2.0);
}

/// Backpropagation through time, for the last step's output and for every step's (through a
/// second LSTM, so each step's gradient flows back through both recurrences): input weights,
/// recurrent weights, biases and the input, all checked.
#[test]
fn lstm_gradients() {
    for layers in [
        "{ type = \"lstm\", units = 4 }, { type = \"dense\", units = 3 }",
        "{ type = \"lstm\", units = 3, return_sequences = true }, { type = \"flatten\" },
         { type = \"dense\", units = 3 }",
        "{ type = \"lstm\", units = 4, return_sequences = true },
         { type = \"lstm\", units = 3, return_sequences = false }, { type = \"dense\", units = 3 }",
    ] {
        assert_ok(layers, &spec("[6, 3]", 3, layers), 1.5);
    }
}

/// The class-weighted loss: every parameter's and the input's gradient under weights that
/// differ per class.
#[test]
fn class_weighted_loss_gradients() {
    let layers = "{ type = \"conv2d\", filters = 3, kernel = 3, padding = \"same\" },
        { type = \"flatten\" }, { type = \"dense\", units = 4 }";
    let text = spec("[4, 4, 2]", 4, layers);
    assert_ok_weighted("class weights", &text, 2.0, &[0.5, 3.0, 1.0, 7.0]);
}

/// Residual blocks with a projection shortcut: stride 2 with more channels (automatic), and an
/// explicit projection that keeps the shape; the projection's filter and bias, the inner
/// layers' and the input's gradients.
#[test]
fn projection_shortcut_gradients() {
    for block in [
        "activation = \"relu\", layers = [
            { type = \"conv2d\", filters = 5, kernel = 3, stride = 2, padding = \"same\" },
            { type = \"batch_norm\" }, { type = \"relu\" },
            { type = \"conv2d\", filters = 5, kernel = 3, padding = \"same\" } ]",
        "shortcut = \"projection\", layers = [
            { type = \"depthwise_conv2d\", kernel = 3, padding = \"same\" } ]",
    ] {
        let layers = format!("{{ type = \"residual\", {block} }}, {HEAD}");
        assert_ok(block, &spec("[5, 6, 2]", 3, &layers), 2.0);
    }
}
