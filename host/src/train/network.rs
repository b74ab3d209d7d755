//! A network built from a [`ModelSpec`]: layers with initialized parameters, batched forward
//! and backward passes, and introspection (shapes, parameters, every layer's output).

use anyhow::{bail, ensure, Result};

use super::config::Init;
use super::conv::Conv2d;
use super::dense::Dense;
use super::depthwise::Depthwise;
use super::layers::{ActLayer, Dropout, Softmax};
use super::loss::{argmax, weighted_softmax_cross_entropy};
use super::lstm::{orthogonal, Lstm};
use super::node::{Capture, Node, Residual};
use super::norm::BatchNorm;
use super::pool::{Pool, PoolKind};
use super::shapes::{infer, projection_stride, show, window};
use super::spec::{LayerSpec, ModelSpec, PaddingKind, Pair};
use super::tensor::{volume, CoreAct, Ctx, Param, Rng, SampleShape, Tensor};

/// Draws initial weights.
struct Initializer {
    init: Init,
    rng: Rng,
}

impl Initializer {
    fn draw(&mut self, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        match self.init {
            Init::He => {
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                (0..len).map(|_| (self.rng.normal() * std) as f32).collect()
            }
            Init::Xavier => {
                let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
                (0..len).map(|_| self.rng.range(-limit, limit)).collect()
            }
        }
    }
}

fn geom(
    input: SampleShape,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    padding: PaddingKind,
) -> super::tensor::Geom {
    // The spec's shapes were checked, so the window fits.
    window(input, kernel, stride, dilation, padding).expect("checked by shape inference")
}

fn build(
    spec: &LayerSpec,
    input: SampleShape,
    path: &[usize],
    init: &mut Initializer,
) -> Result<Node> {
    infer(spec, input, path)?;
    let c = input[2];
    let one = Pair::square(1);
    Ok(match spec {
        LayerSpec::Conv2d(s) => {
            let g = geom(input, s.kernel, s.stride, s.dilation, s.padding);
            let taps = s.kernel.h * s.kernel.w;
            let w = init.draw(s.filters * taps * c, taps * c, taps * s.filters);
            let act = s.activation.to_core();
            Node::Conv(Conv2d::new(
                g,
                s.padding.to_core(),
                c,
                s.filters,
                act,
                w,
                s.use_bias,
            ))
        }
        LayerSpec::DepthwiseConv2d(s) => {
            let g = geom(input, s.kernel, s.stride, s.dilation, s.padding);
            let taps = s.kernel.h * s.kernel.w;
            let dm = s.depth_multiplier;
            let w = init.draw(taps * c * dm, taps, taps * dm);
            let act = s.activation.to_core();
            Node::Depthwise(Depthwise::new(
                g,
                s.padding.to_core(),
                c,
                dm,
                act,
                w,
                s.use_bias,
            ))
        }
        LayerSpec::SeparableConv2d(s) => {
            let g = geom(input, s.kernel, s.stride, s.dilation, s.padding);
            let taps = s.kernel.h * s.kernel.w;
            let dm = s.depth_multiplier;
            let w = init.draw(taps * c * dm, taps, taps * dm);
            let d = Depthwise::new(g, s.padding.to_core(), c, dm, CoreAct::None, w, false);
            let mid = d.out_shape();
            let pg = geom(mid, one, one, one, PaddingKind::Valid);
            let w = init.draw(s.filters * mid[2], mid[2], s.filters);
            let act = s.activation.to_core();
            let valid = mote_core::ops::Padding::Valid;
            let p = Conv2d::new(pg, valid, mid[2], s.filters, act, w, s.use_bias);
            Node::Separable(d, p)
        }
        LayerSpec::Dense(s) => {
            let w = init.draw(s.units * c, c, s.units);
            Node::Dense(Dense::new(
                c,
                s.units,
                s.activation.to_core(),
                w,
                s.use_bias,
            ))
        }
        LayerSpec::Lstm(s) => {
            // Keras' defaults whatever `init` says: Glorot-uniform input weights (fans of
            // its [features, 4 * units] kernel), orthogonal recurrent weights.
            let u = s.units;
            let limit = (6.0 / (c + 4 * u) as f64).sqrt() as f32;
            let w = (0..4 * u * c)
                .map(|_| init.rng.range(-limit, limit))
                .collect();
            let r = orthogonal(4 * u, u, &mut init.rng);
            Node::Lstm(Lstm::new(input, u, s.return_sequences, w, r))
        }
        LayerSpec::MaxPool(s) | LayerSpec::AvgPool(s) => {
            let g = geom(input, s.size, s.stride(), one, s.padding);
            let kind = if matches!(spec, LayerSpec::MaxPool(_)) {
                PoolKind::Max
            } else {
                PoolKind::Avg
            };
            Node::Pool(Pool::new(kind, g, c))
        }
        LayerSpec::GlobalAvgPool => {
            let size = Pair {
                h: input[0],
                w: input[1],
            };
            Node::Pool(Pool::new(
                PoolKind::Avg,
                geom(input, size, one, one, PaddingKind::Valid),
                c,
            ))
        }
        LayerSpec::BatchNorm(s) => Node::BatchNorm(BatchNorm::new(c, s.momentum, s.epsilon)),
        LayerSpec::Dropout(s) => Node::Dropout(Dropout::new(s.rate)),
        LayerSpec::Relu => Node::Act(ActLayer::new(CoreAct::Relu)),
        LayerSpec::Relu6 => Node::Act(ActLayer::new(CoreAct::Relu6)),
        LayerSpec::Flatten => Node::Flatten(input),
        LayerSpec::Softmax => Node::Softmax(Softmax::default()),
        LayerSpec::Residual(r) => {
            let mut nodes = Vec::with_capacity(r.layers.len());
            let mut s = input;
            for (i, layer) in r.layers.iter().enumerate() {
                let p = [path, &[i]].concat();
                nodes.push(build(layer, s, &p, init)?);
                s = infer(layer, s, &p)?;
            }
            // Drawn after the inner layers, so blocks without a projection initialize as before.
            let shortcut = projection_stride(r, input, s)
                .map_err(anyhow::Error::msg)?
                .map(|stride| {
                    let g = geom(input, one, stride, one, PaddingKind::Valid);
                    let w = init.draw(s[2] * c, c, s[2]);
                    let valid = mote_core::ops::Padding::Valid;
                    Conv2d::new(g, valid, c, s[2], CoreAct::None, w, true)
                });
            Node::Residual(Residual {
                nodes,
                shortcut,
                act: r.activation.to_core(),
                out: None,
            })
        }
    })
}

/// A trainable network.
#[derive(Debug, Clone)]
pub struct Network {
    pub(crate) spec: ModelSpec,
    pub(crate) input: SampleShape,
    pub(crate) nodes: Vec<Node>,
}

/// One layer's place in the network, for summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Its position: `[3]` at the top level, `[3, 1]` for the second layer inside layer 3.
    pub path: Vec<usize>,
    /// Its `type` in the model file.
    pub layer_type: &'static str,
    /// Per-sample input shape.
    pub input: SampleShape,
    /// Per-sample output shape.
    pub output: SampleShape,
    /// Number of trainable values it holds (a residual block counts its inner layers').
    pub parameters: usize,
}

/// A parameter tensor, for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamView<'a> {
    /// The layer it belongs to (see [`LayerInfo::path`]).
    pub path: Vec<usize>,
    /// What it is: `filter`, `weights`, `recurrent_weights` (LSTM), `bias`, `gamma`, `beta`,
    /// `running_mean`, `running_var`; a separable convolution's are prefixed `depthwise_` or
    /// `pointwise_`, a residual block's projection shortcut's `shortcut_`.
    pub name: String,
    /// Its dimensions, in mote-core's layout.
    pub shape: Vec<usize>,
    /// Its values.
    pub values: &'a [f32],
    /// Its gradient from the last [`Network::compute_gradients`] (empty when not trainable).
    pub grad: &'a [f32],
    /// Whether the optimizer updates it (batch norm's running statistics are not).
    pub trainable: bool,
}

/// One layer's output during [`Network::forward_capture`].
#[derive(Debug, Clone, Copy)]
pub struct LayerOutput<'a> {
    /// The layer (see [`LayerInfo::path`]).
    pub path: &'a [usize],
    /// Its `type`.
    pub layer_type: &'static str,
    /// `""` for the layer's output; `"depthwise"` for a separable convolution's intermediate
    /// output (reported just before the layer's output); `"hidden_states"` and
    /// `"cell_states"` for an LSTM's states at every step, `[1, steps, units]` (reported in
    /// that order before its output).
    pub part: &'static str,
    /// Its output for the batch.
    pub output: &'a Tensor,
}

fn walk_nodes<'a>(nodes: &'a [Node], path: &mut Vec<usize>, f: &mut dyn FnMut(&[usize], &'a Node)) {
    for (i, node) in nodes.iter().enumerate() {
        path.push(i);
        f(path, node);
        if let Node::Residual(r) = node {
            walk_nodes(&r.nodes, path, f);
        }
        path.pop();
    }
}

impl Network {
    /// Builds a network from a spec, initialized with its `[training]` init and seed.
    pub fn new(spec: &ModelSpec) -> Result<Self> {
        Self::with_init(spec, spec.training.init, spec.training.seed)
    }

    /// Builds a network with the given initialization and seed.
    pub fn with_init(spec: &ModelSpec, init: Init, seed: u64) -> Result<Self> {
        spec.shapes()?;
        super::memory::check(spec)?;
        let input = spec.input_shape()?;
        let mut initializer = Initializer {
            init,
            rng: Rng::derive(seed, 1),
        };
        let mut nodes = Vec::with_capacity(spec.layers.len());
        let mut s = input;
        for (i, layer) in spec.layers.iter().enumerate() {
            nodes.push(build(layer, s, &[i], &mut initializer)?);
            s = infer(layer, s, &[i])?;
        }
        Ok(Self {
            spec: spec.clone(),
            input,
            nodes,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Per-sample input shape `[h, w, c]`.
    pub fn input_shape(&self) -> SampleShape {
        self.input
    }

    /// Values per input sample.
    pub fn sample_len(&self) -> usize {
        volume(self.input)
    }

    /// Number of classes (values per output sample).
    pub fn classes(&self) -> usize {
        self.spec.classes
    }

    /// Checks a dataset's per-sample shape against the network's input: equal after
    /// right-aligning both to `[h, w, c]`, or the same number of values read in another shape
    /// (samples are row-major, so the digits' `[8, 8, 1]` images read as `[1, 8, 8]` are 8
    /// steps of 8 features: the rows, top to bottom). Returns whether the model reads the
    /// samples in another shape than the data's.
    pub fn check_sample_shape(&self, shape: &[usize]) -> Result<bool> {
        let mut s = [1usize; 3];
        ensure!(
            !shape.is_empty() && shape.len() <= 3,
            "a sample shape must have 1 to 3 dimensions, got {shape:?}"
        );
        s[3 - shape.len()..].copy_from_slice(shape);
        ensure!(
            volume(s) == volume(self.input),
            "the data's samples are {} ({} values), but the model `{}` takes {} ({} values)",
            show(s),
            volume(s),
            self.spec.name,
            show(self.input),
            volume(self.input)
        );
        Ok(s != self.input)
    }

    /// Every layer, depth first (a residual block before its inner layers).
    pub fn layers(&self) -> Vec<LayerInfo> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        layer_infos(
            &self.spec.layers,
            &self.nodes,
            self.input,
            &mut path,
            &mut out,
        );
        out
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.parameters()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.values.len())
            .sum()
    }

    /// Every parameter tensor (including batch norm's running statistics), in checkpoint
    /// order.
    pub fn parameters(&self) -> Vec<ParamView<'_>> {
        let mut out = Vec::new();
        walk_nodes(&self.nodes, &mut Vec::new(), &mut |path, node| {
            for (prefix, p) in node.params() {
                out.push(ParamView {
                    path: path.to_vec(),
                    name: format!("{prefix}{}", p.name),
                    shape: p.shape.clone(),
                    values: &p.value,
                    grad: &p.grad,
                    trainable: p.trainable,
                });
            }
        });
        out
    }

    /// Replaces the values of parameter `index` (a position in [`Network::parameters`]), e.g.
    /// to load weights trained elsewhere; `values` must have the same length.
    pub fn set_parameter(&mut self, index: usize, values: &[f32]) -> Result<()> {
        let (mut i, mut result) = (0, None);
        self.visit_params(&mut |p| {
            if i == index {
                result = Some(if p.value.len() == values.len() {
                    p.value.copy_from_slice(values);
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "parameter {index} ({}) has {} values, not {}",
                        p.name,
                        p.value.len(),
                        values.len()
                    ))
                });
            }
            i += 1;
        });
        result.unwrap_or_else(|| bail!("there is no parameter {index} (the network has {i})"))
    }

    /// Calls `f` with every parameter, in checkpoint order.
    pub(crate) fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        fn go(nodes: &mut [Node], f: &mut dyn FnMut(&mut Param)) {
            for node in nodes {
                for p in node.params_mut() {
                    f(p);
                }
                if let Node::Residual(r) = node {
                    go(&mut r.nodes, f);
                }
            }
        }
        go(&mut self.nodes, f);
    }

    pub(crate) fn batch(&self, x: &[f32]) -> Result<Tensor> {
        let len = self.sample_len();
        if x.len() % len != 0 {
            bail!(
                "{} values are not a whole number of samples of {} ({} values each)",
                x.len(),
                show(self.input),
                len
            );
        }
        Ok(Tensor {
            n: x.len() / len,
            shape: self.input,
            data: x.to_vec(),
        })
    }

    /// Nodes that produce the logits: all but a trailing softmax (the loss applies its own).
    pub(crate) fn logits_end(&self) -> usize {
        match self.nodes.last() {
            Some(Node::Softmax(_)) => self.nodes.len() - 1,
            _ => self.nodes.len(),
        }
    }

    pub(crate) fn run(
        &mut self,
        mut x: Tensor,
        ctx: &mut Ctx,
        end: usize,
        cap: &mut Capture,
    ) -> Tensor {
        for (i, node) in self.nodes[..end].iter_mut().enumerate() {
            x = node.forward(x, ctx, &[i], cap);
        }
        x
    }

    pub(crate) fn run_backward(&mut self, mut dy: Tensor, end: usize) -> Tensor {
        for node in self.nodes[..end].iter_mut().rev() {
            dy = node.backward(dy);
        }
        dy
    }

    /// The network's outputs for a batch (`n * sample_len` values), in evaluation mode
    /// (dropout off, batch norm on its running statistics): probabilities when the model ends
    /// with `softmax`, logits otherwise.
    pub fn forward(&mut self, x: &[f32]) -> Result<Tensor> {
        let x = self.batch(x)?;
        let end = self.nodes.len();
        Ok(self.run(x, &mut eval_ctx(), end, &mut None))
    }

    /// [`Network::forward`], calling `f` with every layer's output (inner layers of a residual
    /// block before the block's sum): what calibration needs for activation ranges. Each
    /// [`ExportLayer`](super::ExportLayer)'s output is the capture its
    /// [`output_of`](super::ExportLayer::output_of) names.
    pub fn forward_capture(
        &mut self,
        x: &[f32],
        f: &mut dyn FnMut(&LayerOutput),
    ) -> Result<Tensor> {
        let x = self.batch(x)?;
        let end = self.nodes.len();
        let types = self.layers();
        let mut cap = |path: &[usize], part: &'static str, t: &Tensor| {
            let layer_type = types
                .iter()
                .find(|l| l.path == path)
                .map_or("", |l| l.layer_type);
            f(&LayerOutput {
                path,
                layer_type,
                part,
                output: t,
            });
        };
        let mut cap: Capture = Some(&mut cap);
        Ok(self.run(x, &mut eval_ctx(), end, &mut cap))
    }

    /// The predicted class of each sample.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<usize>> {
        let out = self.forward(x)?;
        Ok(out.data.chunks_exact(self.classes()).map(argmax).collect())
    }

    /// One training pass over a batch: zeroes the gradients, runs forward in training mode
    /// (dropout drawn from `seed`), and back-propagates the mean softmax cross-entropy of the
    /// logits (a trailing softmax layer is skipped: the loss includes it). Returns the loss and
    /// the number of correct predictions; the gradients are in [`Network::parameters`].
    pub fn compute_gradients(
        &mut self,
        x: &[f32],
        labels: &[u32],
        seed: u64,
    ) -> Result<(f32, usize)> {
        self.compute_weighted_gradients(x, labels, &[], seed)
    }

    /// [`Network::compute_gradients`] for the class-weighted mean loss (see
    /// [`weighted_softmax_cross_entropy`](super::weighted_softmax_cross_entropy); empty
    /// `class_weights` weigh every sample the same).
    pub fn compute_weighted_gradients(
        &mut self,
        x: &[f32],
        labels: &[u32],
        class_weights: &[f32],
        seed: u64,
    ) -> Result<(f32, usize)> {
        let x = self.batch(x)?;
        ensure!(
            x.n == labels.len(),
            "{} samples but {} labels",
            x.n,
            labels.len()
        );
        self.visit_params(&mut |p| p.grad.iter_mut().for_each(|g| *g = 0.0));
        let mut ctx = Ctx {
            train: true,
            rng: Rng::new(seed),
        };
        let end = self.logits_end();
        let logits = self.run(x, &mut ctx, end, &mut None);
        let (loss, grad, correct) =
            weighted_softmax_cross_entropy(&logits.data, labels, self.classes(), class_weights)?;
        let dy = Tensor {
            n: logits.n,
            shape: logits.shape,
            data: grad,
        };
        self.run_backward(dy, end);
        Ok((loss, correct))
    }
}

pub(crate) fn eval_ctx() -> Ctx {
    Ctx {
        train: false,
        rng: Rng::new(0),
    }
}

fn layer_infos(
    specs: &[LayerSpec],
    nodes: &[Node],
    input: SampleShape,
    path: &mut Vec<usize>,
    out: &mut Vec<LayerInfo>,
) {
    let mut s = input;
    for (i, (spec, node)) in specs.iter().zip(nodes).enumerate() {
        path.push(i);
        let output = infer(spec, s, path).unwrap_or(s);
        let mut parameters = 0;
        walk_nodes(std::slice::from_ref(node), &mut Vec::new(), &mut |_, n| {
            parameters += n
                .params()
                .iter()
                .filter(|(_, p)| p.trainable)
                .map(|(_, p)| p.value.len())
                .sum::<usize>();
        });
        out.push(LayerInfo {
            path: path.clone(),
            layer_type: spec.type_name(),
            input: s,
            output,
            parameters,
        });
        if let (LayerSpec::Residual(r), Node::Residual(rn)) = (spec, node) {
            layer_infos(&r.layers, &rn.nodes, s, path, out);
        }
        path.pop();
        s = output;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_the_same_size_are_read_in_the_models_shape() {
        let text = "name = \"rows\"\ninput = [8, 8]\nclasses = 10\n\
                    [[layers]]\ntype = \"lstm\"\nunits = 10\n";
        let net = Network::new(&ModelSpec::parse(text).unwrap()).unwrap();
        assert!(!net.check_sample_shape(&[1, 8, 8]).unwrap());
        assert!(!net.check_sample_shape(&[8, 8]).unwrap());
        assert!(
            net.check_sample_shape(&[8, 8, 1]).unwrap(),
            "digits, row by row"
        );
        let e = format!("{:#}", net.check_sample_shape(&[100, 6]).unwrap_err());
        assert!(e.contains("[1, 100, 6] (600 values)"), "{e}");
        assert!(e.contains("`rows` takes [1, 8, 8] (64 values)"), "{e}");
    }
}
