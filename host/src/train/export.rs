//! Export: the network as the layers an int8 model will have, with parameters in mote-core's
//! layouts. Batch norm is folded into the conv/depthwise/dense before it, standalone relu and
//! relu6 become that layer's fused activation, dropout disappears, and a separable
//! convolution becomes its depthwise and pointwise convolutions. A batch norm or activation
//! with nothing to fold into becomes a 1x1 depthwise convolution (per-channel scale and
//! shift, or the identity, with the activation fused).

use mote_core::ops::{Activation as CoreAct, Padding, Shape4};

use super::network::Network;
use super::node::Node;
use super::norm::fold_into;
use super::pool::PoolKind;
use super::shapes::infer;
use super::spec::{path_name, LayerSpec};
use super::tensor::SampleShape;
use crate::float_model::{FloatLayer, FloatModel};

/// One layer of the exported network.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportLayer {
    /// What it computes: kind, options and parameters (folded, in mote-core's layouts). A
    /// residual block holds its inner layers' float versions too.
    pub layer: FloatLayer,
    /// Per-sample input shape.
    pub input: SampleShape,
    /// Per-sample output shape.
    pub output: SampleShape,
    /// The paths of the spec layers it stands for (e.g. a conv2d, the batch_norm folded into
    /// it and the relu fused into it). The last one's output in
    /// [`Network::forward_capture`] is this layer's output.
    pub sources: Vec<Vec<usize>>,
    /// `"depthwise"` for the first half of a separable convolution, `""` otherwise (see
    /// [`LayerOutput::part`](super::LayerOutput::part)).
    pub part: &'static str,
    /// A residual block's inner layers (empty for other layers).
    pub inner: Vec<ExportLayer>,
}

impl ExportLayer {
    /// The layer's operator, as `mote inspect` would name it.
    pub fn kind(&self) -> &'static str {
        match self.layer {
            FloatLayer::Conv2d { .. } => "conv2d",
            FloatLayer::DepthwiseConv2d { .. } => "depthwise_conv2d",
            FloatLayer::Dense { .. } => "dense",
            FloatLayer::AvgPool { .. } => "avg_pool",
            FloatLayer::MaxPool { .. } => "max_pool",
            FloatLayer::GlobalAvgPool => "global_avg_pool",
            FloatLayer::Flatten => "flatten",
            FloatLayer::Softmax => "softmax",
            FloatLayer::Residual { .. } => "residual",
            FloatLayer::Lstm { .. } => "lstm",
        }
    }

    /// The capture in [`Network::forward_capture`] that equals this layer's output: the
    /// path of its last source and its [`part`](ExportLayer::part).
    pub fn output_of(&self) -> (&[usize], &'static str) {
        let path = self.sources.last().map_or(&[][..], Vec::as_slice);
        (path, self.part)
    }

    /// What [`FloatLayer::forward`] traces for this layer (a residual block's inner layers
    /// aside), in order, as the captures of [`Network::forward_capture`] that equal them: the
    /// output alone, an LSTM's every-step hidden and cell states before it, or a residual
    /// block's projection shortcut (`"shortcut"`) before it.
    pub fn traced(&self) -> Vec<(&[usize], &'static str)> {
        let (path, part) = self.output_of();
        match self.layer {
            FloatLayer::Lstm { .. } => {
                vec![(path, "hidden_states"), (path, "cell_states"), (path, part)]
            }
            FloatLayer::Residual {
                shortcut: Some(_), ..
            } => vec![(path, "shortcut"), (path, part)],
            _ => vec![(path, part)],
        }
    }

    /// `conv2d (layers 0, 1, 2)`-style description.
    pub fn describe(&self) -> String {
        let from: Vec<String> = self.sources.iter().map(|p| path_name(p)).collect();
        format!("{} (from layer {})", self.kind(), from.join(", "))
    }
}

/// The exported network.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedNetwork {
    /// The model's name.
    pub name: String,
    /// Per-sample input shape.
    pub input: SampleShape,
    /// Number of classes.
    pub classes: usize,
    /// The layers in execution order.
    pub layers: Vec<ExportLayer>,
}

impl ExportedNetwork {
    /// The top-level layers (a residual block's inner layers are in its
    /// [`ExportLayer::inner`]).
    pub fn iter(&self) -> std::slice::Iter<'_, ExportLayer> {
        self.layers.iter()
    }

    /// The same network as a [`FloatModel`], which runs on mote-core's f32 kernels and which
    /// [`crate::quantize::quantize`] takes.
    pub fn to_float_model(&self) -> FloatModel {
        let [h, w, c] = self.input;
        FloatModel {
            input: Shape4::new(1, h, w, c),
            layers: self.layers.iter().map(|l| l.layer.clone()).collect(),
        }
    }
}

/// `outer` applied after `inner` (both clamps), as one activation.
fn compose(inner: CoreAct, outer: CoreAct) -> CoreAct {
    match (inner, outer) {
        (a, CoreAct::None) => a,
        (CoreAct::None, b) => b,
        (CoreAct::Relu6, _) | (_, CoreAct::Relu6) => CoreAct::Relu6,
        (CoreAct::Relu, CoreAct::Relu) => CoreAct::Relu,
    }
}

/// The fused activation of a layer that has one.
fn activation_mut(layer: &mut FloatLayer) -> Option<&mut CoreAct> {
    match layer {
        FloatLayer::Conv2d { activation, .. }
        | FloatLayer::DepthwiseConv2d { activation, .. }
        | FloatLayer::Dense { activation, .. }
        | FloatLayer::Residual { activation, .. } => Some(activation),
        _ => None,
    }
}

/// A 1x1 depthwise convolution computing `act(scale * x + shift)` per channel.
fn channel_affine(scale: Vec<f32>, shift: Vec<f32>, act: CoreAct) -> FloatLayer {
    FloatLayer::DepthwiseConv2d {
        filter_shape: Shape4::new(1, 1, 1, scale.len()),
        filter: scale,
        bias: shift,
        padding: Padding::Valid,
        stride: (1, 1),
        dilation: (1, 1),
        depth_multiplier: 1,
        activation: act,
    }
}

fn bias_or_zero(bias: &Option<super::tensor::Param>, len: usize) -> Vec<f32> {
    bias.as_ref()
        .map_or_else(|| vec![0.0; len], |b| b.value.clone())
}

fn lower(
    specs: &[LayerSpec],
    nodes: &[Node],
    input: SampleShape,
    prefix: &[usize],
) -> Vec<ExportLayer> {
    let mut out: Vec<ExportLayer> = Vec::new();
    // Whether out.last() produces the previous spec layer's output and may absorb a
    // following batch norm or activation.
    let mut fusable = false;
    let mut s = input;
    for (i, (spec, node)) in specs.iter().zip(nodes).enumerate() {
        let path = [prefix, &[i]].concat();
        let o = infer(spec, s, &path).expect("the layers of a built network connect");
        let entry = |layer: FloatLayer, inner: Vec<ExportLayer>, (a, b)| ExportLayer {
            layer,
            input: a,
            output: b,
            sources: vec![path.clone()],
            part: "",
            inner,
        };
        let mut now_fusable = true;
        match node {
            Node::Conv(l) => {
                let layer = conv_layer(l);
                out.push(entry(layer, Vec::new(), (s, o)));
            }
            Node::Depthwise(l) => out.push(entry(depthwise_layer(l), Vec::new(), (s, o))),
            Node::Separable(d, p) => {
                let mid = d.out_shape();
                let mut first = entry(depthwise_layer(d), Vec::new(), (s, mid));
                first.part = "depthwise";
                out.push(first);
                out.push(entry(conv_layer(p), Vec::new(), (mid, o)));
            }
            Node::Dense(l) => out.push(entry(
                FloatLayer::Dense {
                    weights: l.weights.value.clone(),
                    outputs: l.outputs,
                    bias: bias_or_zero(&l.bias, l.outputs),
                    activation: l.act,
                },
                Vec::new(),
                (s, o),
            )),
            Node::Lstm(l) => out.push(entry(
                FloatLayer::Lstm {
                    units: l.units,
                    weights: l.weights.value.clone(),
                    recurrent: l.recurrent.value.clone(),
                    bias: l.bias.value.clone(),
                    return_sequences: l.return_sequences,
                },
                Vec::new(),
                (s, o),
            )),
            Node::Pool(p) => {
                let g = p.geom;
                let filter = (g.rows.kernel, g.cols.kernel);
                let stride = (g.rows.stride, g.cols.stride);
                let padding = match spec {
                    LayerSpec::MaxPool(ps) | LayerSpec::AvgPool(ps) => ps.padding.to_core(),
                    _ => Padding::Valid,
                };
                let layer = match (spec, p.kind) {
                    (LayerSpec::GlobalAvgPool, _) => FloatLayer::GlobalAvgPool,
                    (_, PoolKind::Max) => FloatLayer::MaxPool {
                        filter,
                        stride,
                        padding,
                    },
                    (_, PoolKind::Avg) => FloatLayer::AvgPool {
                        filter,
                        stride,
                        padding,
                    },
                };
                out.push(entry(layer, Vec::new(), (s, o)));
                now_fusable = false;
            }
            Node::BatchNorm(bn) => {
                let (scale, shift) = bn.affine();
                let last = out.last_mut().filter(|_| fusable);
                let folded = last.is_some_and(|l| {
                    let ok = fold_bn(&mut l.layer, &scale, &shift);
                    if ok {
                        l.sources.push(path.clone());
                    }
                    ok
                });
                if !folded {
                    out.push(entry(
                        channel_affine(scale, shift, CoreAct::None),
                        Vec::new(),
                        (s, o),
                    ));
                }
            }
            Node::Dropout(_) => {
                // The identity in evaluation: nothing to export, fusion state unchanged.
                s = o;
                continue;
            }
            Node::Act(a) => {
                let last = out.last_mut().filter(|_| fusable);
                let fused = last.is_some_and(|l| match activation_mut(&mut l.layer) {
                    Some(act) => {
                        *act = compose(*act, a.act);
                        l.sources.push(path.clone());
                        true
                    }
                    None => false,
                });
                if !fused {
                    let c = s[2];
                    out.push(entry(
                        channel_affine(vec![1.0; c], vec![0.0; c], a.act),
                        Vec::new(),
                        (s, o),
                    ));
                }
            }
            Node::Flatten(_) => {
                out.push(entry(FloatLayer::Flatten, Vec::new(), (s, o)));
                now_fusable = false;
            }
            Node::Softmax(_) => {
                out.push(entry(FloatLayer::Softmax, Vec::new(), (s, o)));
                now_fusable = false;
            }
            Node::Residual(r) => {
                let LayerSpec::Residual(rs) = spec else {
                    unreachable!("a residual node comes from a residual spec")
                };
                let inner = lower(&rs.layers, &r.nodes, s, &path);
                let layer = FloatLayer::Residual {
                    layers: inner.iter().map(|l| l.layer.clone()).collect(),
                    shortcut: r.shortcut.as_ref().map(|p| Box::new(conv_layer(p))),
                    activation: r.act,
                };
                out.push(entry(layer, inner, (s, o)));
            }
        }
        fusable = now_fusable;
        s = o;
    }
    out
}

fn conv_layer(l: &super::conv::Conv2d) -> FloatLayer {
    let g = l.geom;
    FloatLayer::Conv2d {
        filter: l.filter.value.clone(),
        filter_shape: Shape4::new(l.out_c, g.rows.kernel, g.cols.kernel, l.in_c),
        bias: bias_or_zero(&l.bias, l.out_c),
        padding: l.padding,
        stride: (g.rows.stride, g.cols.stride),
        dilation: (g.rows.dilation, g.cols.dilation),
        activation: l.act,
    }
}

fn depthwise_layer(l: &super::depthwise::Depthwise) -> FloatLayer {
    let g = l.geom;
    let oc = l.out_c();
    FloatLayer::DepthwiseConv2d {
        filter: l.filter.value.clone(),
        filter_shape: Shape4::new(1, g.rows.kernel, g.cols.kernel, oc),
        bias: bias_or_zero(&l.bias, oc),
        padding: l.padding,
        stride: (g.rows.stride, g.cols.stride),
        dilation: (g.rows.dilation, g.cols.dilation),
        depth_multiplier: l.multiplier,
        activation: l.act,
    }
}

/// Folds a batch norm into a conv/depthwise/dense without activation; false otherwise.
fn fold_bn(layer: &mut FloatLayer, scale: &[f32], shift: &[f32]) -> bool {
    match layer {
        FloatLayer::Conv2d {
            filter,
            bias,
            activation: CoreAct::None,
            ..
        }
        | FloatLayer::Dense {
            weights: filter,
            bias,
            activation: CoreAct::None,
            ..
        } => fold_into(filter, bias, scale, shift, true),
        FloatLayer::DepthwiseConv2d {
            filter,
            bias,
            activation: CoreAct::None,
            ..
        } => fold_into(filter, bias, scale, shift, false),
        _ => return false,
    }
    true
}

impl Network {
    /// The network as the layers an int8 model will have (see the module documentation).
    pub fn export(&self) -> ExportedNetwork {
        ExportedNetwork {
            name: self.spec.name.clone(),
            input: self.input,
            classes: self.spec.classes,
            layers: lower(&self.spec.layers, &self.nodes, self.input, &[]),
        }
    }

    /// [`Network::export`] as a [`FloatModel`], ready for [`crate::quantize::quantize`].
    pub fn to_float_model(&self) -> FloatModel {
        self.export().to_float_model()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{ModelSpec, Rng};

    /// Batch norms and activations with nothing to fold into, a batch norm after a fused
    /// activation, dropout between a conv and its batch norm, and a relu6 after a residual
    /// block: the exported model (mote-core's kernels) computes what the engine computes.
    #[test]
    fn every_folding_case_and_fallback_matches_the_engine() {
        let text = r#"
            name = "fold"
            input = [6, 6, 2]
            classes = 5
            layers = [
                { type = "conv2d", filters = 4, kernel = 3, padding = "same" },
                { type = "dropout", rate = 0.5 },
                { type = "batch_norm" },
                { type = "relu" },
                { type = "max_pool", size = 2 },
                { type = "batch_norm" },
                { type = "relu6" },
                { type = "conv2d", filters = 4, kernel = 1, activation = "relu" },
                { type = "batch_norm" },
                { type = "residual", layers = [
                    { type = "depthwise_conv2d", kernel = 3, padding = "same", depth_multiplier = 2 },
                    { type = "batch_norm" },
                    { type = "conv2d", filters = 4, kernel = 1 } ] },
                { type = "relu6" },
                { type = "avg_pool", size = 3, stride = 2, padding = "same" },
                { type = "relu" },
                { type = "flatten" },
                { type = "dense", units = 5 },
                { type = "batch_norm" },
                { type = "softmax" },
            ]
        "#;
        let spec = ModelSpec::parse(text).unwrap();
        let mut net = Network::new(&spec).unwrap();
        let mut rng = Rng::new(4);
        randomize(&mut net, &mut rng);
        let exported = net.export();
        let kinds: Vec<&str> = exported.iter().map(ExportLayer::kind).collect();
        assert_eq!(
            kinds,
            [
                "conv2d", // conv + dropout + bn + relu
                "max_pool",
                "depthwise_conv2d", // bn after a pool: a 1x1 depthwise scale and shift, + relu6
                "conv2d",           // conv with relu: the next bn cannot fold into it
                "depthwise_conv2d", // so it becomes a 1x1 depthwise too
                "residual",         // + relu6 fused as the block's activation
                "avg_pool",
                "depthwise_conv2d", // relu after a pool: an identity 1x1 depthwise with relu
                "flatten",
                "dense", // + bn
                "softmax",
            ]
        );
        assert_eq!(exported.layers[0].sources, [vec![0], vec![2], vec![3]]);
        assert_eq!(
            exported.layers[5].inner.len(),
            2,
            "dw + bn folded, pointwise"
        );
        let model = exported.to_float_model();
        let x: Vec<f32> = (0..5 * 72).map(|_| rng.range(-2.0, 2.0)).collect();
        let want = net.forward(&x).unwrap();
        for (i, sample) in x.chunks(72).enumerate() {
            let got = model.forward(sample, &mut |_| {}).unwrap();
            for (a, b) in got.data.iter().zip(want.sample(i)) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    /// A residual block with a projection shortcut (stride 2, more channels; batch norm and
    /// relu folded inside): its float layer computes what the engine computes, and the traced
    /// projection is the engine's `"shortcut"` capture.
    #[test]
    fn projection_shortcuts_export_what_the_engine_computes() {
        let text = r#"
            name = "proj"
            input = [7, 6, 3]
            classes = 4
            layers = [
                { type = "residual", activation = "relu", layers = [
                    { type = "conv2d", filters = 5, kernel = 3, stride = 2, padding = "same" },
                    { type = "batch_norm" }, { type = "relu" },
                    { type = "conv2d", filters = 5, kernel = 3, padding = "same" } ] },
                { type = "global_avg_pool" }, { type = "dense", units = 4 },
            ]
        "#;
        let mut net = Network::new(&ModelSpec::parse(text).unwrap()).unwrap();
        let mut rng = Rng::new(3);
        randomize(&mut net, &mut rng);
        let names: Vec<String> = net.parameters().iter().map(|p| p.name.clone()).collect();
        assert_eq!(names[..2], ["shortcut_filter", "shortcut_bias"]);
        assert_eq!(net.parameters()[0].shape, [5, 1, 1, 3]);
        let exported = net.export();
        let block = &exported.layers[0];
        let FloatLayer::Residual {
            shortcut: Some(p), ..
        } = &block.layer
        else {
            panic!("{:?}", block.layer)
        };
        assert!(matches!(**p, FloatLayer::Conv2d { stride: (2, 2), .. }));
        assert_eq!((block.input, block.output), ([7, 6, 3], [4, 3, 5]));
        assert_eq!(block.inner.len(), 2, "conv + bn + relu, conv");
        let x: Vec<f32> = (0..3 * 126).map(|_| rng.range(-2.0, 2.0)).collect();
        let mut traced: Vec<_> = block.inner.iter().flat_map(ExportLayer::traced).collect();
        traced.extend(exported.iter().flat_map(ExportLayer::traced));
        assert_eq!(traced[2], (&[0][..], "shortcut"));
        assert_float_model_computes_the_engine(&mut net, &exported, &traced, &x, 126);
    }

    /// Stacked LSTMs (every step's states, then the last step's) exported as float layers
    /// compute what the engine computes, and each traced tensor is the capture it names.
    #[test]
    fn lstm_layers_export_what_the_engine_computes() {
        let text = r#"
            name = "seq"
            input = [7, 3]
            classes = 4
            layers = [
                { type = "lstm", units = 5, return_sequences = true },
                { type = "lstm", units = 6 },
                { type = "dense", units = 4 },
            ]
        "#;
        let mut net = Network::new(&ModelSpec::parse(text).unwrap()).unwrap();
        let mut rng = Rng::new(8);
        let exported = net.export();
        let kinds: Vec<&str> = exported.iter().map(ExportLayer::kind).collect();
        assert_eq!(kinds, ["lstm", "lstm", "dense"]);
        let x: Vec<f32> = (0..3 * 21).map(|_| rng.range(-2.0, 2.0)).collect();
        let traced: Vec<_> = exported.iter().flat_map(ExportLayer::traced).collect();
        assert_float_model_computes_the_engine(&mut net, &exported, &traced, &x, 21);
    }

    /// `exported`'s float model, run on each `len`-value sample of `x`, gives the engine's
    /// output, and each traced tensor equals the engine's capture it names.
    fn assert_float_model_computes_the_engine(
        net: &mut Network,
        exported: &ExportedNetwork,
        traced: &[(&[usize], &str)],
        x: &[f32],
        len: usize,
    ) {
        let model = exported.to_float_model();
        let mut captures = Vec::new();
        let want = net
            .forward_capture(x, &mut |c| {
                captures.push((c.path.to_vec(), c.part, c.output.clone()))
            })
            .unwrap();
        for (i, sample) in x.chunks(len).enumerate() {
            let mut trace = Vec::new();
            let got = model
                .forward(sample, &mut |a| trace.push(a.clone()))
                .unwrap();
            assert_eq!(trace.len(), traced.len());
            for (t, (path, part)) in trace.iter().zip(traced) {
                let (_, _, c) = captures
                    .iter()
                    .find(|(p, q, _)| p == path && q == part)
                    .unwrap_or_else(|| panic!("no capture {path:?} {part}"));
                assert_eq!(t.data.len(), c.sample_len(), "{path:?} {part}");
                for (a, b) in t.data.iter().zip(c.sample(i)) {
                    assert!((a - b).abs() < 1e-5, "{path:?} {part}: {a} vs {b}");
                }
            }
            for (a, b) in got.data.iter().zip(want.sample(i)) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    /// Random parameters: batch norm's scales and variances in 0.5..2, the rest in -0.8..0.8.
    fn randomize(net: &mut Network, rng: &mut Rng) {
        for i in 0..net.parameters().len() {
            let p = &net.parameters()[i];
            let (lo, hi) = match p.name.as_str() {
                "gamma" | "running_var" => (0.5, 2.0),
                _ => (-0.8, 0.8),
            };
            let v: Vec<f32> = (0..p.values.len()).map(|_| rng.range(lo, hi)).collect();
            net.set_parameter(i, &v).unwrap();
        }
    }
}
