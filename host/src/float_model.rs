//! A trained float network in the form export needs: layers in execution order with their
//! parameters already in mote-core's layouts (conv OHWI, depthwise 1HW(C*M), dense [out, in]),
//! batch norm folded and dropout gone. Its forward pass runs mote-core's own f32 kernels, so
//! what is calibrated is exactly what core computes.

use anyhow::{anyhow, bail, ensure, Result};
use mote_core::geometry::WindowFit;
use mote_core::ops::pooling::{self, PoolParams};
use mote_core::ops::{self, Activation, Padding, Shape4, Tensor, TensorMut, Window};

/// One float layer.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // parameters are the usual ones
pub enum FloatLayer {
    Conv2d {
        filter: Vec<f32>,
        /// OHWI.
        filter_shape: Shape4,
        bias: Vec<f32>,
        padding: Padding,
        stride: (usize, usize),
        dilation: (usize, usize),
        activation: Activation,
    },
    DepthwiseConv2d {
        filter: Vec<f32>,
        /// 1 x H x W x (C*M).
        filter_shape: Shape4,
        bias: Vec<f32>,
        padding: Padding,
        stride: (usize, usize),
        dilation: (usize, usize),
        depth_multiplier: usize,
        activation: Activation,
    },
    Dense {
        /// [outputs, inputs].
        weights: Vec<f32>,
        outputs: usize,
        bias: Vec<f32>,
        activation: Activation,
    },
    AvgPool {
        filter: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    },
    MaxPool {
        filter: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    },
    GlobalAvgPool,
    Flatten,
    Softmax,
    /// `activation(shortcut(x) + f(x))`, `f` being `layers`.
    Residual {
        layers: Vec<FloatLayer>,
        /// A projection of `x` to `f(x)`'s shape (a 1x1 [`FloatLayer::Conv2d`]), traced after
        /// the inner layers; `None` for the identity.
        shortcut: Option<Box<FloatLayer>>,
        activation: Activation,
    },
    /// A Keras LSTM on `[1, steps, features]` (zero initial state): every matrix in four
    /// blocks of `units` rows for the gates i, f, c, o, as TFLite's per-gate tensors.
    Lstm {
        units: usize,
        /// `[4 * units, features]`.
        weights: Vec<f32>,
        /// `[4 * units, units]`.
        recurrent: Vec<f32>,
        /// `[4 * units]`.
        bias: Vec<f32>,
        /// Output every step's hidden state, or only the last one's (`[1, 1, units]`).
        return_sequences: bool,
    },
}

/// The logistic function, as the LSTM's gates use it.
#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One LSTM step for one sample, in place: `z` holds the gate pre-activations
/// `W x_t + R h_{t-1} + b` (i, f, c, o blocks of `units`) and gets their activations; `c` and
/// `h` get `c_t = f * c_{t-1} + i * g` and `h_t = o * tanh(c_t)`. The training engine and the
/// float model both step with it, so they compute the same thing.
#[inline]
pub(crate) fn lstm_cell(z: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
    let u = c.len();
    let (i, rest) = z.split_at_mut(u);
    let (f, rest) = rest.split_at_mut(u);
    let (g, o) = rest.split_at_mut(u);
    for k in 0..u {
        i[k] = sigmoid(i[k]);
        f[k] = sigmoid(f[k]);
        g[k] = g[k].tanh();
        o[k] = sigmoid(o[k]);
        c[k] = f[k] * c_prev[k] + i[k] * g[k];
        h[k] = o[k] * c[k].tanh();
    }
}

/// One sample's LSTM states: hidden and cell state at every step, `[steps, units]` each.
fn lstm_states(
    x: &[f32],
    units: usize,
    (weights, recurrent, bias): (&[f32], &[f32], &[f32]),
) -> (Vec<f32>, Vec<f32>) {
    let features = weights.len() / (4 * units);
    let steps = x.len() / features;
    let mut hidden = vec![0.0; steps * units];
    let mut cells = vec![0.0; steps * units];
    let (mut h, mut c, mut c_prev) = (vec![0.0; units], vec![0.0; units], vec![0.0; units]);
    let mut z = vec![0.0; 4 * units];
    for (s, x_t) in x.chunks_exact(features).enumerate() {
        for (r, zr) in z.iter_mut().enumerate() {
            let w = &weights[r * features..][..features];
            let rw = &recurrent[r * units..][..units];
            *zr = bias[r]
                + w.iter().zip(x_t).map(|(a, b)| a * b).sum::<f32>()
                + rw.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>();
        }
        std::mem::swap(&mut c, &mut c_prev);
        lstm_cell(&mut z, &c_prev, &mut c, &mut h);
        hidden[s * units..][..units].copy_from_slice(&h);
        cells[s * units..][..units].copy_from_slice(&c);
    }
    (hidden, cells)
}

/// A float network: input shape (batch 1, NHWC) and layers.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatModel {
    /// Per-sample input shape with `n = 1`.
    pub input: Shape4,
    /// Layers in order.
    pub layers: Vec<FloatLayer>,
}

/// A layer's output and the shape it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    /// Values, NHWC.
    pub data: Vec<f32>,
    /// Shape.
    pub shape: Shape4,
}

/// The window TFLite places for `kernel` on `input`, and the output size; an error in words
/// if it does not fit. The builder shares it, so both describe a layer identically.
pub(crate) fn fit_window(
    input: Shape4,
    kernel: (usize, usize),
    padding: Padding,
    stride: (usize, usize),
    dilation: (usize, usize),
) -> Result<WindowFit> {
    Window::for_kernel(input, kernel, padding, stride, dilation).ok_or_else(|| {
        anyhow!(
            "a {}x{} window does not fit a {}x{} input",
            kernel.0,
            kernel.1,
            input.h,
            input.w
        )
    })
}

/// An LSTM layer on a batch of `[1, steps, features]` sequences: traces every step's hidden
/// states, then every step's cell states (`[n, 1, steps, units]` each), and returns them or
/// the last step's (`[n, 1, 1, units]`).
fn lstm_forward(
    x: &Activations,
    units: usize,
    params: (&[f32], &[f32], &[f32]),
    return_sequences: bool,
    trace: &mut dyn FnMut(&Activations),
) -> Result<Activations> {
    let (s, u) = (x.shape, units);
    let (weights, recurrent, bias) = params;
    ensure!(
        s.h == 1
            && weights.len() == 4 * u * s.c
            && recurrent.len() == 4 * u * u
            && bias.len() == 4 * u,
        "lstm: {} weights, {} recurrent weights and {} biases for {u} units on a {s:?} input",
        weights.len(),
        recurrent.len(),
        bias.len()
    );
    let (mut hidden, mut cells) = (Vec::new(), Vec::new());
    for sample in x.data.chunks_exact(s.w * s.c) {
        let (h, c) = lstm_states(sample, u, params);
        hidden.extend(h);
        cells.extend(c);
    }
    let seq = Shape4::new(s.n, 1, s.w, u);
    let hidden = Activations {
        data: hidden,
        shape: seq,
    };
    trace(&hidden);
    trace(&Activations {
        data: cells,
        shape: seq,
    });
    if return_sequences {
        return Ok(hidden);
    }
    let data = hidden
        .data
        .chunks_exact(s.w * u)
        .flat_map(|h| h[(s.w - 1) * u..].iter().copied())
        .collect();
    Ok(Activations {
        data,
        shape: Shape4::new(s.n, 1, 1, u),
    })
}

fn core_err(e: mote_core::Error) -> anyhow::Error {
    anyhow!("{e}")
}

impl FloatLayer {
    /// The layer's output for one sample, computed with mote-core's f32 kernels. `trace`
    /// receives every intermediate tensor a quantizer needs a range for, in graph order
    /// (inside a residual block: each inner output, then the sum; an LSTM's every-step hidden
    /// states, then its every-step cell states, then its output).
    pub fn forward(
        &self,
        x: &Activations,
        trace: &mut dyn FnMut(&Activations),
    ) -> Result<Activations> {
        let s = x.shape;
        let input = Tensor {
            data: &x.data[..],
            shape: s,
        };
        let out = match self {
            FloatLayer::Conv2d {
                filter,
                filter_shape,
                bias,
                padding,
                stride,
                dilation,
                activation,
            } => {
                let fit = fit_window(
                    s,
                    (filter_shape.h, filter_shape.w),
                    *padding,
                    *stride,
                    *dilation,
                )?;
                let shape = Shape4::new(s.n, fit.out_h, fit.out_w, filter_shape.n);
                let mut data = vec![0.0; shape.elements().unwrap_or(0)];
                ops::conv2d::conv2d_f32(
                    &fit.window,
                    activation.f32_range(),
                    input,
                    Tensor {
                        data: filter,
                        shape: *filter_shape,
                    },
                    Some(bias),
                    TensorMut {
                        data: &mut data,
                        shape,
                    },
                )
                .map_err(core_err)?;
                Activations { data, shape }
            }
            FloatLayer::DepthwiseConv2d {
                filter,
                filter_shape,
                bias,
                padding,
                stride,
                dilation,
                depth_multiplier,
                activation,
            } => {
                let fit = fit_window(
                    s,
                    (filter_shape.h, filter_shape.w),
                    *padding,
                    *stride,
                    *dilation,
                )?;
                let shape = Shape4::new(s.n, fit.out_h, fit.out_w, filter_shape.c);
                let mut data = vec![0.0; shape.elements().unwrap_or(0)];
                ops::depthwise_conv2d::depthwise_conv2d_f32(
                    &fit.window,
                    *depth_multiplier,
                    activation.f32_range(),
                    input,
                    Tensor {
                        data: filter,
                        shape: *filter_shape,
                    },
                    Some(bias),
                    TensorMut {
                        data: &mut data,
                        shape,
                    },
                )
                .map_err(core_err)?;
                Activations { data, shape }
            }
            FloatLayer::Dense {
                weights,
                outputs,
                bias,
                activation,
            } => {
                let inputs = s.elements().unwrap_or(0) / s.n.max(1);
                ensure!(
                    weights.len() == inputs * outputs,
                    "dense: {} weights for {inputs} inputs x {outputs} outputs",
                    weights.len()
                );
                let shape = Shape4::new(s.n, 1, 1, *outputs);
                let mut data = vec![0.0; s.n * outputs];
                ops::fully_connected::fully_connected_f32(
                    activation.f32_range(),
                    input,
                    Tensor {
                        data: weights,
                        shape: Shape4::new(*outputs, 1, 1, inputs),
                    },
                    Some(bias),
                    TensorMut {
                        data: &mut data,
                        shape,
                    },
                )
                .map_err(core_err)?;
                Activations { data, shape }
            }
            FloatLayer::AvgPool {
                filter,
                stride,
                padding,
            }
            | FloatLayer::MaxPool {
                filter,
                stride,
                padding,
            } => {
                let fit = fit_window(s, *filter, *padding, *stride, (1, 1))?;
                let p = PoolParams {
                    window: fit.window,
                    filter_h: filter.0,
                    filter_w: filter.1,
                };
                let shape = Shape4::new(s.n, fit.out_h, fit.out_w, s.c);
                let mut data = vec![0.0; shape.elements().unwrap_or(0)];
                let out = TensorMut {
                    data: &mut data,
                    shape,
                };
                let full = (f32::NEG_INFINITY, f32::INFINITY);
                if matches!(self, FloatLayer::AvgPool { .. }) {
                    pooling::average_pool2d_f32(&p, full, input, out)
                } else {
                    pooling::max_pool2d_f32(&p, full, input, out)
                }
                .map_err(core_err)?;
                Activations { data, shape }
            }
            FloatLayer::GlobalAvgPool => {
                let p = pooling::global_average_pool_params(s);
                let shape = Shape4::new(s.n, 1, 1, s.c);
                let mut data = vec![0.0; s.n * s.c];
                pooling::average_pool2d_f32(
                    &p,
                    (f32::NEG_INFINITY, f32::INFINITY),
                    input,
                    TensorMut {
                        data: &mut data,
                        shape,
                    },
                )
                .map_err(core_err)?;
                Activations { data, shape }
            }
            FloatLayer::Flatten => Activations {
                data: x.data.clone(),
                shape: Shape4::new(s.n, 1, 1, s.h * s.w * s.c),
            },
            FloatLayer::Softmax => {
                let mut data = vec![0.0; x.data.len()];
                ops::softmax::softmax_f32(1.0, &x.data, &mut data, s.c).map_err(core_err)?;
                Activations { data, shape: s }
            }
            FloatLayer::Residual {
                layers,
                shortcut,
                activation,
            } => {
                let mut y = x.clone();
                for layer in layers {
                    y = layer.forward(&y, trace)?;
                }
                let projected;
                let x = match shortcut {
                    Some(p) => {
                        projected = p.forward(x, trace)?;
                        &projected
                    }
                    None => x,
                };
                ensure!(
                    y.shape == x.shape,
                    "residual block: the inner layers give {:?} but the shortcut {:?}",
                    y.shape,
                    x.shape
                );
                let mut data = vec![0.0; x.data.len()];
                ops::add::add_f32(activation.f32_range(), &x.data, &y.data, &mut data)
                    .map_err(core_err)?;
                Activations {
                    data,
                    shape: x.shape,
                }
            }
            FloatLayer::Lstm {
                units,
                weights,
                recurrent,
                bias,
                return_sequences,
            } => {
                let params = (&weights[..], &recurrent[..], &bias[..]);
                lstm_forward(x, *units, params, *return_sequences, trace)?
            }
        };
        trace(&out);
        Ok(out)
    }
}

impl FloatModel {
    /// Runs one sample (per-sample NHWC values) through the network.
    pub fn forward(
        &self,
        sample: &[f32],
        trace: &mut dyn FnMut(&Activations),
    ) -> Result<Activations> {
        if sample.len() != self.input.elements().unwrap_or(0) {
            bail!(
                "a sample has {} values; the model takes {:?}",
                sample.len(),
                self.input
            );
        }
        let mut x = Activations {
            data: sample.to_vec(),
            shape: self.input,
        };
        for layer in &self.layers {
            x = layer.forward(&x, trace)?;
        }
        Ok(x)
    }
}
