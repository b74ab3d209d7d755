//! Differential tests: each layer of the host's batched engine against mote-core's scalar
//! training code (the specification) on the same weights, inputs and upstream gradients.
//!
//! For every layer type both engines have (dense, conv2d, depthwise conv2d, max and average
//! pooling, global average pooling, relu / relu6 layers and fused activations, softmax) and
//! for random shapes, the host's `forward` + `backward` is compared with mote-core's forward
//! kernel and `*_backward_f32`: outputs, input gradients and parameter gradients. The softmax
//! cross-entropy is compared row by row, and two SGD steps end to end on a small network
//! against mote-core's `Trainer`.
//!
//! # Tolerance
//!
//! Both engines compute the same sums of products in different orders (blocked GEMMs against
//! scalar loops), so they differ by rounding only. An f32 sum of `K` rounded products is within
//! about `K * eps * S` of the exact sum, `S` the sum of the terms' magnitudes and
//! `eps = 2^-24` (Higham's `gamma_K` bound), so two such sums are within `2 * K * eps * S`. `S`
//! is computed per element by running mote-core's own forward or backward pass on the absolute
//! values of every operand. The shapes drawn here keep `K <= 150` (the longest reduction is a
//! filter gradient over 3 samples of 7x7 output pixels), so that bound is below `2e-5 * S`,
//! inside the `1e-4 * S` tolerance; a wrong or missing term is of the order of `S / K >=
//! 6.7e-3 * S`, well outside it.
//!
//! Where a pre-activation value is within that tolerance of a kink (0, or 6 for relu6) the two
//! engines may round it to different sides and take different derivatives; the upstream
//! gradient is zeroed there, so both see the same (measure-zero) choice.

use mote_core::ops::pooling::{self, PoolParams};
use mote_core::ops::{conv2d, depthwise_conv2d, fully_connected, softmax};
use mote_core::ops::{Activation, Padding, Shape4, Tensor as CoreTensor, TensorMut, Window};
use mote_core::train::{self as core_train, Grads, Sgd, Target, Trainer, TrainingPlan};

use super::config::OptimizerSpec;
use super::conv::Conv2d;
use super::dense::Dense;
use super::depthwise::Depthwise;
use super::layers::{ActLayer, Softmax};
use super::optim::Optimizer;
use super::pool::{Pool, PoolKind};
use super::spec::ModelSpec;
use super::tensor::{Ctx, Geom, Rng, SampleShape, Tensor};
use super::Network;

/// See the module documentation.
const TOL: f64 = 1e-4;
const TRIALS: usize = 200;

const ACTS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Relu6];

fn train_ctx() -> Ctx {
    Ctx {
        train: true,
        rng: Rng::new(0),
    }
}

fn uniform(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.range(-scale, scale)).collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

fn shape4(n: usize, s: SampleShape) -> Shape4 {
    Shape4::new(n, s[0], s[1], s[2])
}

fn len(s: Shape4) -> usize {
    s.elements().unwrap()
}

fn t(data: &[f32], shape: Shape4) -> CoreTensor<'_, f32> {
    CoreTensor { data, shape }
}

/// Asserts `|host - core| <= TOL * scale` element by element (`scale`: the magnitude sums).
fn assert_close(what: &str, host: &[f32], core: &[f32], scale: &[f32]) {
    assert_eq!(host.len(), core.len(), "{what}: lengths");
    assert_eq!(host.len(), scale.len(), "{what}: scale length");
    for (i, ((&h, &c), &s)) in host.iter().zip(core).zip(scale).enumerate() {
        let diff = (f64::from(h) - f64::from(c)).abs();
        // The floor covers sums whose terms are all exactly zero.
        let bound = TOL * f64::from(s) + 1e-30;
        assert!(
            diff <= bound,
            "{what}[{i}]: host {h}, core {c}, |diff| {diff:e} > {bound:e}"
        );
    }
}

/// Zeroes `dy` where the pre-activation `z` is within the tolerance of one of `act`'s kinks.
fn clear_kinks(act: Activation, z: &[f32], scale: &[f32], dy: &mut [f32]) {
    let kinks: &[f32] = match act {
        Activation::None => &[],
        Activation::Relu => &[0.0],
        Activation::Relu6 => &[0.0, 6.0],
    };
    for ((d, &z), &s) in dy.iter_mut().zip(z).zip(scale) {
        if kinks
            .iter()
            .any(|&k| f64::from((z - k).abs()) <= 2.0 * TOL * f64::from(s))
        {
            *d = 0.0;
        }
    }
}

/// A window both engines agree on: the host's geometry and mote-core's `Window`, which must
/// give the same output size.
fn windows(
    input: SampleShape,
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: Padding,
) -> Option<(Geom, Window)> {
    let geom = Geom::new(input, kernel, stride, dilation, padding)?;
    let fit = Window::for_kernel(shape4(1, input), kernel, padding, stride, dilation).unwrap();
    let window = fit.window;
    let output = (geom.rows.output, geom.cols.output);
    assert_eq!((fit.out_h, fit.out_w), output, "output size");
    assert_eq!(
        (window.pad_top, window.pad_left),
        (geom.rows.pad, geom.cols.pad)
    );
    Some((geom, window))
}

/// A random sliding window over a random input, as each engine describes it.
struct RandomWindow {
    input: SampleShape,
    kernel: (usize, usize),
    padding: Padding,
    geom: Geom,
    window: Window,
}

/// A random window over a random input; `None` when the kernel does not fit.
fn random_window(rng: &mut Rng, channels: usize, dilated: bool) -> Option<RandomWindow> {
    let input = [1 + rng.below(7), 1 + rng.below(7), channels];
    let kernel = (1 + rng.below(3), 1 + rng.below(3));
    let stride = (1 + rng.below(2), 1 + rng.below(2));
    let dilation = if dilated {
        (1 + rng.below(2), 1 + rng.below(2))
    } else {
        (1, 1)
    };
    let padding = [Padding::Same, Padding::Valid][rng.below(2)];
    let (geom, window) = windows(input, kernel, stride, dilation, padding)?;
    Some(RandomWindow {
        input,
        kernel,
        padding,
        geom,
        window,
    })
}

/// What a trainable layer's check needs from each engine.
struct LayerCase {
    act: Activation,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Option<Vec<f32>>,
}

/// mote-core's forward pass with a clamp, for operands `(x, w, b)`.
type CoreForward<'a> = dyn Fn(&[f32], &[f32], Option<&[f32]>, (f32, f32), &mut [f32]) + 'a;
/// mote-core's backward pass for operands `(x, w, g)` into `(dx, dw, db)`.
type CoreBackward<'a> =
    dyn Fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32], Option<&mut [f32]>) + 'a;

/// The host layer's output, input gradient, weight gradient and bias gradient.
type HostRun = (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>);

/// Runs one trainable layer through both engines and compares everything.
/// `host` runs the host layer's forward on `x` and backward on `dy` and returns
/// `(y, dx, dw, db)`.
fn compare_layer(
    name: &str,
    rng: &mut Rng,
    case: &LayerCase,
    out_len: usize,
    core_forward: &CoreForward,
    core_backward: &CoreBackward,
    host: &mut dyn FnMut(&[f32]) -> HostRun,
) {
    let none = Activation::None.f32_range();
    let (x, w, b) = (&case.x, &case.w, case.b.as_deref());
    // Pre-activation values and the magnitude sums of their terms.
    let mut z = vec![0.0; out_len];
    core_forward(x, w, b, none, &mut z);
    let mut z_scale = vec![0.0; out_len];
    let b_abs = b.map(abs);
    core_forward(&abs(x), &abs(w), b_abs.as_deref(), none, &mut z_scale);
    let mut dy = uniform(rng, out_len, 1.0);
    clear_kinks(case.act, &z, &z_scale, &mut dy);

    let (y_h, dx_h, dw_h, db_h) = host(&dy);

    let mut y_c = vec![0.0; out_len];
    core_forward(x, w, b, case.act.f32_range(), &mut y_c);
    assert_close(&format!("{name} output"), &y_h, &y_c, &z_scale);
    let mut g = dy.clone();
    core_train::activation_backward_f32(case.act, &y_c, &mut g).unwrap();
    let (mut dx_c, mut dw_c) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    let mut db_c = b.map(|b| vec![0.0; b.len()]);
    core_backward(x, w, &g, &mut dx_c, &mut dw_c, db_c.as_deref_mut());
    let (mut dx_s, mut dw_s) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    let mut db_s = b.map(|b| vec![0.0; b.len()]);
    core_backward(
        &abs(x),
        &abs(w),
        &abs(&g),
        &mut dx_s,
        &mut dw_s,
        db_s.as_deref_mut(),
    );
    assert_close(&format!("{name} input gradient"), &dx_h, &dx_c, &dx_s);
    assert_close(&format!("{name} weight gradient"), &dw_h, &dw_c, &dw_s);
    match (&db_h, &db_c, &db_s) {
        (Some(h), Some(c), Some(s)) => assert_close(&format!("{name} bias gradient"), h, c, s),
        (None, None, None) => {}
        _ => panic!("{name}: one engine has a bias, the other not"),
    }
}

fn random_case(
    rng: &mut Rng,
    n: usize,
    in_len: usize,
    w_len: usize,
    bias: Option<usize>,
) -> LayerCase {
    let act = ACTS[rng.below(3)];
    // Relu6 inputs are larger so that outputs cross both kinks.
    let scale = if act == Activation::Relu6 { 3.0 } else { 1.0 };
    LayerCase {
        act,
        x: uniform(rng, n * in_len, scale),
        w: uniform(rng, w_len, 1.0),
        b: bias.map(|len| uniform(rng, len, 1.0)),
    }
}

#[test]
fn dense_matches_core() {
    let mut rng = Rng::new(0xd1ff_0001);
    for trial in 0..TRIALS {
        let (n, i, o) = (1 + rng.below(5), 1 + rng.below(40), 1 + rng.below(12));
        let bias = (rng.below(4) != 0).then_some(o);
        let case = random_case(&mut rng, n, i, o * i, bias);
        let (xs, ws) = (Shape4::new(n, 1, 1, i), Shape4::new(o, 1, 1, i));
        let ys = Shape4::new(n, 1, 1, o);
        let fwd = |x: &[f32], w: &[f32], b: Option<&[f32]>, clamp, y: &mut [f32]| {
            let out = TensorMut { data: y, shape: ys };
            fully_connected::fully_connected_f32(clamp, t(x, xs), t(w, ws), b, out).unwrap();
        };
        let bwd = |x: &[f32],
                   w: &[f32],
                   g: &[f32],
                   dx: &mut [f32],
                   dw: &mut [f32],
                   db: Option<&mut [f32]>| {
            let grads = Grads {
                input: Some(dx),
                weights: Some(dw),
                bias: db,
            };
            core_train::dense_backward_f32(t(x, xs), t(w, ws), t(g, ys), grads).unwrap();
        };
        let mut layer = Dense::new(i, o, case.act, case.w.clone(), case.b.is_some());
        if let (Some(p), Some(b)) = (&mut layer.bias, &case.b) {
            p.value.clone_from(b);
        }
        let mut host = |dy: &[f32]| {
            let x = Tensor {
                n,
                shape: [1, 1, i],
                data: case.x.clone(),
            };
            let y = layer.forward(x, &mut train_ctx());
            let dy = Tensor {
                data: dy.to_vec(),
                ..y.clone()
            };
            let dx = layer.backward(dy);
            let db = layer.bias.as_ref().map(|b| b.grad.clone());
            (y.data, dx.data, layer.weights.grad.clone(), db)
        };
        let name = format!("dense trial {trial} ({n}x{i} -> {o}, {:?})", case.act);
        compare_layer(&name, &mut rng, &case, n * o, &fwd, &bwd, &mut host);
    }
}

#[test]
fn conv2d_matches_core() {
    let mut rng = Rng::new(0xd1ff_0002);
    let mut trial = 0;
    while trial < TRIALS {
        let (ic, oc, n) = (1 + rng.below(4), 1 + rng.below(5), 1 + rng.below(3));
        let Some(RandomWindow {
            input,
            kernel,
            padding,
            geom,
            window,
        }) = random_window(&mut rng, ic, true)
        else {
            continue;
        };
        trial += 1;
        let taps = kernel.0 * kernel.1;
        let bias = (rng.below(4) != 0).then_some(oc);
        let case = random_case(&mut rng, n, input[0] * input[1] * ic, oc * taps * ic, bias);
        let xs = shape4(n, input);
        let fs = Shape4::new(oc, kernel.0, kernel.1, ic);
        let ys = Shape4::new(n, geom.rows.output, geom.cols.output, oc);
        let fwd = |x: &[f32], w: &[f32], b: Option<&[f32]>, clamp, y: &mut [f32]| {
            let out = TensorMut { data: y, shape: ys };
            conv2d::conv2d_f32(&window, clamp, t(x, xs), t(w, fs), b, out).unwrap();
        };
        let bwd = |x: &[f32],
                   w: &[f32],
                   g: &[f32],
                   dx: &mut [f32],
                   dw: &mut [f32],
                   db: Option<&mut [f32]>| {
            let grads = Grads {
                input: Some(dx),
                weights: Some(dw),
                bias: db,
            };
            core_train::conv2d_backward_f32(&window, t(x, xs), t(w, fs), t(g, ys), grads).unwrap();
        };
        let mut layer = Conv2d::new(
            geom,
            padding,
            ic,
            oc,
            case.act,
            case.w.clone(),
            bias.is_some(),
        );
        if let (Some(p), Some(b)) = (&mut layer.bias, &case.b) {
            p.value.clone_from(b);
        }
        let mut host = |dy: &[f32]| {
            let x = Tensor {
                n,
                shape: input,
                data: case.x.clone(),
            };
            let y = layer.forward(x, &mut train_ctx());
            let dy = Tensor {
                data: dy.to_vec(),
                ..y.clone()
            };
            let dx = layer.backward(dy);
            let db = layer.bias.as_ref().map(|b| b.grad.clone());
            (y.data, dx.data, layer.filter.grad.clone(), db)
        };
        let name = format!(
            "conv2d trial {trial} ({input:?} {kernel:?} {window:?}, {oc} filters, {:?})",
            case.act
        );
        compare_layer(&name, &mut rng, &case, len(ys), &fwd, &bwd, &mut host);
    }
}

#[test]
fn depthwise_conv2d_matches_core() {
    let mut rng = Rng::new(0xd1ff_0003);
    let mut trial = 0;
    while trial < TRIALS {
        let (ic, dm, n) = (1 + rng.below(5), 1 + rng.below(3), 1 + rng.below(3));
        let Some(RandomWindow {
            input,
            kernel,
            padding,
            geom,
            window,
        }) = random_window(&mut rng, ic, true)
        else {
            continue;
        };
        trial += 1;
        let oc = ic * dm;
        let taps = kernel.0 * kernel.1;
        let bias = (rng.below(4) != 0).then_some(oc);
        let case = random_case(&mut rng, n, input[0] * input[1] * ic, taps * oc, bias);
        let xs = shape4(n, input);
        let fs = Shape4::new(1, kernel.0, kernel.1, oc);
        let ys = Shape4::new(n, geom.rows.output, geom.cols.output, oc);
        let fwd = |x: &[f32], w: &[f32], b: Option<&[f32]>, clamp, y: &mut [f32]| {
            let out = TensorMut { data: y, shape: ys };
            depthwise_conv2d::depthwise_conv2d_f32(&window, dm, clamp, t(x, xs), t(w, fs), b, out)
                .unwrap();
        };
        let bwd = |x: &[f32],
                   w: &[f32],
                   g: &[f32],
                   dx: &mut [f32],
                   dw: &mut [f32],
                   db: Option<&mut [f32]>| {
            let grads = Grads {
                input: Some(dx),
                weights: Some(dw),
                bias: db,
            };
            core_train::depthwise_conv2d_backward_f32(
                &window,
                dm,
                t(x, xs),
                t(w, fs),
                t(g, ys),
                grads,
            )
            .unwrap();
        };
        let mut layer = Depthwise::new(
            geom,
            padding,
            ic,
            dm,
            case.act,
            case.w.clone(),
            bias.is_some(),
        );
        if let (Some(p), Some(b)) = (&mut layer.bias, &case.b) {
            p.value.clone_from(b);
        }
        let mut host = |dy: &[f32]| {
            let x = Tensor {
                n,
                shape: input,
                data: case.x.clone(),
            };
            let y = layer.forward(x, &mut train_ctx());
            let dy = Tensor {
                data: dy.to_vec(),
                ..y.clone()
            };
            let dx = layer.backward(dy);
            let db = layer.bias.as_ref().map(|b| b.grad.clone());
            (y.data, dx.data, layer.filter.grad.clone(), db)
        };
        let name = format!(
            "depthwise trial {trial} ({input:?} {kernel:?} {window:?}, x{dm}, {:?})",
            case.act
        );
        compare_layer(&name, &mut rng, &case, len(ys), &fwd, &bwd, &mut host);
    }
}

/// Runs a host pooling layer forward on `x` and backward on `dy`.
fn host_pool(
    layer: &mut Pool,
    n: usize,
    input: SampleShape,
    x: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor {
        n,
        shape: input,
        data: x.to_vec(),
    };
    let y = layer.forward(x, &mut train_ctx());
    let dy = Tensor {
        data: dy.to_vec(),
        ..y.clone()
    };
    (y.data, layer.backward(dy).data)
}

#[test]
fn pooling_matches_core() {
    let mut rng = Rng::new(0xd1ff_0004);
    let none = Activation::None.f32_range();
    let mut trial = 0;
    while trial < TRIALS {
        let (c, n) = (1 + rng.below(4), 1 + rng.below(3));
        let Some(RandomWindow {
            input,
            kernel,
            geom,
            window,
            ..
        }) = random_window(&mut rng, c, false)
        else {
            continue;
        };
        trial += 1;
        let p = PoolParams {
            window,
            filter_h: kernel.0,
            filter_w: kernel.1,
        };
        let (xs, ys) = (
            shape4(n, input),
            Shape4::new(n, geom.rows.output, geom.cols.output, c),
        );
        // Every other trial draws from five values, so windows hold ties: both engines must
        // route the gradient to the first maximum.
        let x: Vec<f32> = if trial % 2 == 0 {
            (0..len(xs)).map(|_| rng.below(5) as f32 - 2.0).collect()
        } else {
            uniform(&mut rng, len(xs), 1.0)
        };
        let dy = uniform(&mut rng, len(ys), 1.0);
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let name = format!("{kind:?} pool trial {trial} ({input:?} {kernel:?} {window:?})");
            let (y_h, dx_h) = host_pool(&mut Pool::new(kind, geom, c), n, input, &x, &dy);
            let (mut y_c, mut y_s) = (vec![0.0; len(ys)], vec![0.0; len(ys)]);
            let (mut dx_c, mut dx_s) = (vec![0.0; len(xs)], vec![0.0; len(xs)]);
            let out = |y| TensorMut { data: y, shape: ys };
            match kind {
                PoolKind::Max => {
                    pooling::max_pool2d_f32(&p, none, t(&x, xs), out(&mut y_c)).unwrap();
                    core_train::max_pool2d_backward_f32(&p, t(&x, xs), t(&dy, ys), &mut dx_c)
                        .unwrap();
                    // A maximum is exact in both; each input's gradient sums the outputs that
                    // chose it.
                    y_s = abs(&y_c);
                    core_train::max_pool2d_backward_f32(&p, t(&x, xs), t(&abs(&dy), ys), &mut dx_s)
                        .unwrap();
                }
                PoolKind::Avg => {
                    pooling::average_pool2d_f32(&p, none, t(&x, xs), out(&mut y_c)).unwrap();
                    pooling::average_pool2d_f32(&p, none, t(&abs(&x), xs), out(&mut y_s)).unwrap();
                    core_train::average_pool2d_backward_f32(&p, xs, t(&dy, ys), &mut dx_c).unwrap();
                    core_train::average_pool2d_backward_f32(&p, xs, t(&abs(&dy), ys), &mut dx_s)
                        .unwrap();
                }
            }
            assert_close(&format!("{name} output"), &y_h, &y_c, &y_s);
            assert_close(&format!("{name} input gradient"), &dx_h, &dx_c, &dx_s);
        }
        // Global average pooling: the host's is an average pool over the whole input.
        let whole = (input[0], input[1]);
        let (geom, _) = windows(input, whole, (1, 1), (1, 1), Padding::Valid).unwrap();
        let gs = Shape4::new(n, 1, 1, c);
        let dg = uniform(&mut rng, len(gs), 1.0);
        let (y_h, dx_h) = host_pool(&mut Pool::new(PoolKind::Avg, geom, c), n, input, &x, &dg);
        let gp = pooling::global_average_pool_params(xs);
        let (mut y_c, mut y_s) = (vec![0.0; len(gs)], vec![0.0; len(gs)]);
        pooling::average_pool2d_f32(
            &gp,
            none,
            t(&x, xs),
            TensorMut {
                data: &mut y_c,
                shape: gs,
            },
        )
        .unwrap();
        pooling::average_pool2d_f32(
            &gp,
            none,
            t(&abs(&x), xs),
            TensorMut {
                data: &mut y_s,
                shape: gs,
            },
        )
        .unwrap();
        let (mut dx_c, mut dx_s) = (vec![0.0; len(xs)], vec![0.0; len(xs)]);
        core_train::global_average_pool_backward_f32(xs, &dg, &mut dx_c).unwrap();
        core_train::global_average_pool_backward_f32(xs, &abs(&dg), &mut dx_s).unwrap();
        let name = format!("global average pool trial {trial} ({input:?})");
        assert_close(&format!("{name} output"), &y_h, &y_c, &y_s);
        assert_close(&format!("{name} input gradient"), &dx_h, &dx_c, &dx_s);
    }
}

/// The standalone activation layers and softmax compute exactly what mote-core does, NaN,
/// infinities and the kinks included: they are the same element-wise functions, so the
/// comparison is bit for bit.
#[test]
fn activation_and_softmax_layers_match_core_bit_for_bit() {
    let mut rng = Rng::new(0xd1ff_0005);
    let special = [
        f32::NAN,
        0.0,
        -0.0,
        6.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
    ];
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for trial in 0..TRIALS {
        let (n, depth) = (1 + rng.below(4), 1 + rng.below(10));
        let mut x = uniform(&mut rng, n * depth, 8.0);
        let finite = x.clone();
        for _ in 0..rng.below(3) {
            let i = rng.below(x.len());
            x[i] = special[rng.below(special.len())];
        }
        let dy = uniform(&mut rng, x.len(), 1.0);
        let batch = |data: &[f32]| Tensor {
            n,
            shape: [1, 1, depth],
            data: data.to_vec(),
        };
        for act in [Activation::Relu, Activation::Relu6] {
            let mut layer = ActLayer::new(act);
            let y_h = layer.forward(batch(&x), &mut train_ctx());
            let dx_h = layer.backward(batch(&dy));
            let mut y_c = x.clone();
            core_train::activation_f32(act, &mut y_c);
            let mut dx_c = dy.clone();
            core_train::activation_backward_f32(act, &y_c, &mut dx_c).unwrap();
            assert_eq!(bits(&y_h.data), bits(&y_c), "{act:?} trial {trial}: {x:?}");
            assert_eq!(
                bits(&dx_h.data),
                bits(&dx_c),
                "{act:?} trial {trial}: {x:?}"
            );
            assert_eq!(
                y_c.iter().filter(|v| v.is_nan()).count(),
                x.iter().filter(|v| v.is_nan()).count(),
                "NaN must propagate"
            );
        }
        let mut layer = Softmax::default();
        let y_h = layer.forward(batch(&finite), &mut train_ctx());
        let dx_h = layer.backward(batch(&dy));
        let mut y_c = vec![0.0; finite.len()];
        softmax::softmax_f32(1.0, &finite, &mut y_c, depth).unwrap();
        let mut dx_c = dy.clone();
        core_train::softmax_backward_f32(&y_c, &mut dx_c, depth).unwrap();
        assert_eq!(bits(&y_h.data), bits(&y_c), "softmax trial {trial}");
        assert_eq!(bits(&dx_h.data), bits(&dx_c), "softmax trial {trial}");
    }
}

/// The host's batch loss is the mean of mote-core's per-sample losses and its gradient their
/// gradients over the batch size; both against an f64 reference (the per-row error of the f32
/// log-sum-exp is a few ulps of the row's largest `|logit - max|` plus `ln(classes)`).
#[test]
fn softmax_cross_entropy_matches_core() {
    let mut rng = Rng::new(0xd1ff_0006);
    for trial in 0..TRIALS {
        let (n, classes) = (1 + rng.below(6), 1 + rng.below(12));
        let scale = [1.0, 10.0, 50.0][rng.below(3)];
        let logits = uniform(&mut rng, n * classes, scale);
        let labels: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
        let (loss, grad, _) = super::softmax_cross_entropy(&logits, &labels, classes).unwrap();
        let mut want = 0.0f64;
        for (r, (row, &label)) in logits.chunks(classes).zip(&labels).enumerate() {
            let mut g = vec![0.0; classes];
            let l = core_train::softmax_cross_entropy_f32(row, label as usize, &mut g).unwrap();
            want += f64::from(l);
            let host_row = &grad[r * classes..][..classes];
            let core_row: Vec<f32> = g.iter().map(|g| g / n as f32).collect();
            assert_eq!(host_row, &core_row[..], "trial {trial} row {r}");
            // f64 reference.
            let max = row.iter().fold(f64::MIN, |m, &v| m.max(f64::from(v)));
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            let exact = sum.ln() + max - f64::from(row[label as usize]);
            assert!((f64::from(l) - exact).abs() <= 1e-5 * (exact.abs() + f64::from(scale)));
            for (j, &gj) in host_row.iter().enumerate() {
                let p = (f64::from(row[j]) - max).exp() / sum;
                let e = (p - f64::from(u8::from(j == label as usize))) / n as f64;
                assert!(
                    (f64::from(gj) - e).abs() <= 1e-6,
                    "trial {trial}: {gj} vs {e}"
                );
            }
        }
        let want = want / n as f64;
        assert!(
            (f64::from(loss) - want).abs() <= 1e-6 * want.abs().max(1.0),
            "trial {trial}"
        );
    }
    // A non-finite logit is not hidden: the loss and the row's gradient become NaN.
    let (loss, grad, _) =
        super::softmax_cross_entropy(&[f32::NAN, 0.0, 1.0, 2.0], &[0, 1], 2).unwrap();
    assert!(loss.is_nan());
    assert!(grad[..2].iter().all(|g| g.is_nan()));
    assert!(grad[2..].iter().all(|g| g.is_finite()));
}

/// Two SGD steps (momentum, weight decay, biases not decayed, clipping) of the host's engine and of
/// mote-core's `Trainer` on the same two-layer network and batch give the same weights: the
/// host's mean gradient against mote-core's per-sample sum scaled by `1 / batch`.
#[test]
fn sgd_steps_match_core_trainer() {
    let mut rng = Rng::new(0xd1ff_0007);
    for trial in 0..40 {
        let (inputs, hidden, classes, batch) = (
            2 + rng.below(10),
            2 + rng.below(8),
            2 + rng.below(4),
            1 + rng.below(8),
        );
        let (lr, momentum, decay) = (
            rng.range(0.01, 0.5),
            rng.range(0.0, 0.95),
            rng.range(0.0, 0.1),
        );
        // Clipping on in half the trials, at norms the gradients exceed about half the time.
        let clip = (trial % 2 == 1).then(|| rng.range(0.2, 1.5));
        let clip_line = clip.map_or(String::new(), |c| format!("clip_norm = {c:?}\n"));
        let text = format!(
            "name = \"d\"\ninput = [{inputs}]\nclasses = {classes}\nlayers = [\n\
             {{ type = \"dense\", units = {hidden}, activation = \"relu\" }},\n\
             {{ type = \"dense\", units = {classes} }} ]\n[training]\n\
             optimizer = {{ type = \"sgd\", learning_rate = {lr:?}, momentum = {momentum:?}, \
             weight_decay = {decay:?} }}\n{clip_line}"
        );
        let spec = ModelSpec::parse(&text).unwrap();
        let mut host = Network::new(&spec).unwrap();
        let core_net = core_train::Network::new(
            Shape4::new(1, 1, 1, inputs),
            [
                core_train::Layer::dense(hidden, Activation::Relu),
                core_train::Layer::dense(classes, Activation::None),
            ],
        )
        .unwrap();
        // Both engines hold weights then bias per layer, in mote-core's layouts.
        let mut params = uniform(&mut rng, core_net.param_count(), 1.0);
        for layer in 0..2 {
            let (w, b) = core_net.param_ranges(layer).unwrap();
            host.set_parameter(2 * layer, &params[w]).unwrap();
            host.set_parameter(2 * layer + 1, &params[b]).unwrap();
        }
        let mut sgd = Sgd::new(lr)
            .with_momentum(momentum)
            .with_weight_decay(decay);
        if let Some(c) = clip {
            sgd = sgd.with_clip_norm(c);
        }
        let plan = TrainingPlan::new(&core_net, sgd).unwrap();
        let mut arena = vec![0u8; plan.bytes() + 3];
        let start = arena.as_ptr().align_offset(4);
        let arena = &mut arena[start..][..plan.bytes()];
        let mut trainer = Trainer::new(&plan, &mut params, arena).unwrap();
        let mut optimizer =
            Optimizer::new(&spec.training.optimizer).with_clip_norm(spec.training.clip_norm);
        assert!(matches!(spec.training.optimizer, OptimizerSpec::Sgd { .. }));
        for step in 0..2 {
            let x = uniform(&mut rng, batch * inputs, 2.0);
            let y: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
            host.compute_gradients(&x, &y, 0).unwrap();
            optimizer.step(&mut host, lr).unwrap();
            for (xs, &label) in x.chunks(inputs).zip(&y) {
                trainer
                    .accumulate(xs, Target::Class(label as usize))
                    .unwrap();
            }
            trainer.step().unwrap();
            let core_params = trainer.params();
            for (i, p) in host.parameters().iter().enumerate() {
                let (w, b) = core_net.param_ranges(i / 2).unwrap();
                let want = &core_params[if i % 2 == 0 { w } else { b }];
                // Weights are O(1) and move by lr < 1 times gradients that agree to rounding
                // (the bound above, relative to magnitude sums of O(1) mean terms), twice.
                for (j, (&h, &c)) in p.values.iter().zip(want).enumerate() {
                    assert!(
                        (h - c).abs() <= 1e-5 * (1.0 + c.abs()),
                        "trial {trial} step {step} {}[{j}]: host {h}, core {c}",
                        p.name
                    );
                }
            }
        }
    }
}
