//! The engine's layers as one enum: forward and backward dispatch, residual blocks, and each
//! layer's parameters in checkpoint order.

use super::conv::Conv2d;
use super::dense::Dense;
use super::depthwise::Depthwise;
use super::layers::{ActLayer, Dropout, Softmax};
use super::lstm::Lstm;
use super::norm::BatchNorm;
use super::pool::Pool;
use super::tensor::{act_backward, apply_act, CoreAct, Ctx, Param, SampleShape, Tensor};

/// One engine layer (a spec layer; `separable_conv2d` holds its two convolutions).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a few per network, built once, never moved in loops
pub(crate) enum Node {
    Conv(Conv2d),
    Depthwise(Depthwise),
    Separable(Depthwise, Conv2d),
    Dense(Dense),
    Pool(Pool),
    BatchNorm(BatchNorm),
    Dropout(Dropout),
    Act(ActLayer),
    Flatten(SampleShape),
    Softmax(Softmax),
    Residual(Residual),
    Lstm(Lstm),
}

/// `act(shortcut(x) + f(x))`: `shortcut` is a 1x1 projection, or the identity when `None`.
#[derive(Debug, Clone)]
pub(crate) struct Residual {
    pub nodes: Vec<Node>,
    pub shortcut: Option<Conv2d>,
    pub act: CoreAct,
    pub out: Option<Vec<f32>>,
}

/// Receives `(layer path, part, output)` for every layer, inner layers of a residual block
/// first; `part` is `""` for a layer's output, `"depthwise"` for the intermediate output of
/// a separable convolution, `"shortcut"` for a residual block's projection (after its inner
/// layers), and `"hidden_states"` and `"cell_states"` for an LSTM's states at
/// every step (`[1, steps, units]`, reported before its output).
pub(crate) type Capture<'a> = Option<&'a mut dyn FnMut(&[usize], &'static str, &Tensor)>;

impl Node {
    pub(crate) fn forward(
        &mut self,
        x: Tensor,
        ctx: &mut Ctx,
        path: &[usize],
        cap: &mut Capture,
    ) -> Tensor {
        let y = match self {
            Node::Conv(l) => l.forward(x, ctx),
            Node::Depthwise(l) => l.forward(x, ctx),
            Node::Separable(d, p) => {
                let mid = d.forward(x, ctx);
                if let Some(f) = cap {
                    f(path, "depthwise", &mid);
                }
                p.forward(mid, ctx)
            }
            Node::Dense(l) => l.forward(x, ctx),
            Node::Lstm(l) => {
                let (y, states) = l.forward(x, ctx, cap.is_some());
                if let (Some(f), Some(st)) = (cap.as_mut(), states) {
                    f(path, "hidden_states", &st.hidden);
                    f(path, "cell_states", &st.cells);
                }
                y
            }
            Node::Pool(l) => l.forward(x, ctx),
            Node::BatchNorm(l) => l.forward(x, ctx),
            Node::Dropout(l) => l.forward(x, ctx),
            Node::Act(l) => l.forward(x, ctx),
            Node::Flatten(_) => Tensor {
                n: x.n,
                shape: [1, 1, x.sample_len()],
                data: x.data,
            },
            Node::Softmax(l) => l.forward(x, ctx),
            Node::Residual(r) => {
                let mut y = x.clone();
                for (i, node) in r.nodes.iter_mut().enumerate() {
                    y = node.forward(y, ctx, &[path, &[i]].concat(), cap);
                }
                let x = match &mut r.shortcut {
                    Some(p) => {
                        let s = p.forward(x, ctx);
                        if let Some(f) = cap {
                            f(path, "shortcut", &s);
                        }
                        s
                    }
                    None => x,
                };
                y.data.iter_mut().zip(&x.data).for_each(|(y, x)| *y += x);
                apply_act(r.act, &mut y.data);
                r.out = (ctx.train && r.act != CoreAct::None).then(|| y.data.clone());
                y
            }
        };
        if let Some(f) = cap {
            f(path, "", &y);
        }
        y
    }

    pub(crate) fn backward(&mut self, dy: Tensor) -> Tensor {
        match self {
            Node::Conv(l) => l.backward(dy),
            Node::Depthwise(l) => l.backward(dy),
            Node::Separable(d, p) => d.backward(p.backward(dy)),
            Node::Dense(l) => l.backward(dy),
            Node::Lstm(l) => l.backward(dy),
            Node::Pool(l) => l.backward(dy),
            Node::BatchNorm(l) => l.backward(dy),
            Node::Dropout(l) => l.backward(dy),
            Node::Act(l) => l.backward(dy),
            Node::Flatten(shape) => Tensor {
                n: dy.n,
                shape: *shape,
                data: dy.data,
            },
            Node::Softmax(l) => l.backward(dy),
            Node::Residual(r) => {
                let mut dz = dy;
                if let Some(out) = r.out.take() {
                    act_backward(r.act, &out, &mut dz.data);
                }
                let mut d = dz.clone();
                for node in r.nodes.iter_mut().rev() {
                    d = node.backward(d);
                }
                let mut dx = match &mut r.shortcut {
                    Some(p) => p.backward(dz),
                    None => dz,
                };
                dx.data.iter_mut().zip(&d.data).for_each(|(a, b)| *a += b);
                dx
            }
        }
    }

    /// The node's parameters in a fixed order (the checkpoint order).
    pub(crate) fn params(&self) -> Vec<(&'static str, &Param)> {
        let mut v = Vec::new();
        match self {
            Node::Conv(l) => {
                v.push(("", &l.filter));
                v.extend(l.bias.iter().map(|b| ("", b)));
            }
            Node::Depthwise(l) => {
                v.push(("", &l.filter));
                v.extend(l.bias.iter().map(|b| ("", b)));
            }
            Node::Separable(d, p) => {
                v.push(("depthwise_", &d.filter));
                v.extend(d.bias.iter().map(|b| ("depthwise_", b)));
                v.push(("pointwise_", &p.filter));
                v.extend(p.bias.iter().map(|b| ("pointwise_", b)));
            }
            Node::Dense(l) => {
                v.push(("", &l.weights));
                v.extend(l.bias.iter().map(|b| ("", b)));
            }
            Node::Lstm(l) => v.extend([&l.weights, &l.recurrent, &l.bias].map(|p| ("", p))),
            Node::BatchNorm(l) => {
                v.extend([&l.gamma, &l.beta, &l.running_mean, &l.running_var].map(|p| ("", p)));
            }
            // The block's own (before its inner layers'); an identity shortcut has none, so
            // checkpoints of such blocks are unchanged.
            Node::Residual(r) => {
                if let Some(p) = &r.shortcut {
                    v.push(("shortcut_", &p.filter));
                    v.extend(p.bias.iter().map(|b| ("shortcut_", b)));
                }
            }
            _ => {}
        }
        v
    }

    /// Same order as [`Node::params`].
    pub(crate) fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut v: Vec<&mut Param> = Vec::new();
        match self {
            Node::Conv(l) => {
                v.push(&mut l.filter);
                v.extend(l.bias.as_mut());
            }
            Node::Depthwise(l) => {
                v.push(&mut l.filter);
                v.extend(l.bias.as_mut());
            }
            Node::Separable(d, p) => {
                v.push(&mut d.filter);
                v.extend(d.bias.as_mut());
                v.push(&mut p.filter);
                v.extend(p.bias.as_mut());
            }
            Node::Dense(l) => {
                v.push(&mut l.weights);
                v.extend(l.bias.as_mut());
            }
            Node::Lstm(l) => v.extend([&mut l.weights, &mut l.recurrent, &mut l.bias]),
            Node::Residual(r) => {
                if let Some(p) = &mut r.shortcut {
                    v.push(&mut p.filter);
                    v.extend(p.bias.as_mut());
                }
            }
            Node::BatchNorm(l) => {
                v.extend([
                    &mut l.gamma,
                    &mut l.beta,
                    &mut l.running_mean,
                    &mut l.running_var,
                ]);
            }
            _ => {}
        }
        v
    }
}
