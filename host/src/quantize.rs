//! Post-training quantization: calibrate a [`FloatModel`] on sample inputs, choose int8
//! parameters (per-channel symmetric weights, per-tensor asymmetric activations, int32 biases),
//! and write the int8 graph through the model builder.

use crate::builder::{
    BuiltModel, Data, ModelBuilder, OpDef, Quantization, TensorDef, TensorId, TfOptions,
};
use crate::float_model::{Activations, FloatLayer, FloatModel};
use anyhow::{ensure, Result};
use mote_core::format::{DType, OpCode};
use mote_core::ops::{Activation, Padding, Shape4};

mod lstm;

/// How activation ranges are chosen from the calibration data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The given percentile at each end (e.g. 99.99): ignores rare outliers.
    Percentile(f32),
}

/// An int8 quantization: scale and zero point.
pub type QParams = (f32, i32);

/// The result of quantizing.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The written `.mote` model.
    pub built: BuiltModel,
    /// The model input's quantization (applied to normalized samples).
    pub input: QParams,
    /// The model output's quantization.
    pub output: QParams,
    /// Index of the operator marked trainable on the device (the last dense layer), if any.
    pub trainable_op: Option<usize>,
}

/// TFLite's asymmetric int8 parameters for a real range (which is widened to contain 0).
pub fn qparams_for_range(lo: f32, hi: f32) -> QParams {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    (scale, zero_point)
}

/// Collects per-tensor statistics over the calibration set.
struct Ranges {
    method: RangeMethod,
    values: Vec<Vec<f32>>,
    min_max: Vec<(f32, f32)>,
}

impl Ranges {
    fn observe(&mut self, slot: usize, data: &[f32]) {
        if self.min_max.len() <= slot {
            self.min_max
                .resize(slot + 1, (f32::INFINITY, f32::NEG_INFINITY));
            self.values.resize(slot + 1, Vec::new());
        }
        let (lo, hi) = &mut self.min_max[slot];
        for &v in data {
            *lo = lo.min(v);
            *hi = hi.max(v);
        }
        if let RangeMethod::Percentile(_) = self.method {
            self.values[slot].extend_from_slice(data);
        }
    }

    fn qparams(&mut self, slot: usize) -> QParams {
        let (lo, hi) = self.range(slot);
        qparams_for_range(lo, hi)
    }

    /// The calibrated range of `slot`, by the chosen method.
    fn range(&mut self, slot: usize) -> (f32, f32) {
        match self.method {
            RangeMethod::MinMax => self.min_max[slot],
            RangeMethod::Percentile(p) => {
                let v = &mut self.values[slot];
                v.sort_unstable_by(f32::total_cmp);
                let at = |q: f32| v[((q / 100.0) * (v.len() - 1) as f32).round() as usize];
                (at(100.0 - p), at(p))
            }
        }
    }
}

/// Symmetric int8 weights with one scale per slice along `axis` of `shape`.
fn quantize_weights(w: &[f32], shape: [usize; 4], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut max_abs = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = channel_of(i);
        max_abs[c] = max_abs[c].max(v.abs());
    }
    let scales: Vec<f32> = max_abs
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

struct Emitter<'a> {
    b: ModelBuilder,
    ranges: &'a mut Ranges,
    slot: usize,
    count: usize,
    last_dense: Option<usize>,
}

#[derive(Clone, Copy)]
struct Tx {
    id: TensorId,
    shape: Shape4,
    q: QParams,
    /// Its rank in the graph (TFLite's: 2 for flat vectors, 3 for sequences, 4 for images).
    rank: usize,
}

impl Emitter<'_> {
    fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{what}{}", self.count)
    }

    fn activation(&mut self, shape: Shape4, q: QParams, rank2: bool) -> Tx {
        self.activation_of_rank(shape, q, if rank2 { 2 } else { 4 })
    }

    /// An int8 activation of `shape` with TFLite's dimensions for `rank`: `[n, c]`,
    /// `[n, w, c]` (a sequence: batch, steps, features) or `[n, h, w, c]`.
    fn activation_of_rank(&mut self, shape: Shape4, q: QParams, rank: usize) -> Tx {
        let name = self.name("t");
        let dims = match rank {
            2 => vec![shape.n, shape.c],
            3 => vec![shape.n, shape.w, shape.c],
            _ => vec![shape.n, shape.h, shape.w, shape.c],
        };
        let rank = dims.len();
        let id = self.b.tensor(TensorDef {
            name,
            shape: dims,
            dtype: DType::I8,
            quant: Some(Quantization::per_tensor(q.0, q.1)),
            data: None,
        });
        Tx { id, shape, q, rank }
    }

    /// The next traced tensor's parameters (graph order matches the trace order).
    fn next_range(&mut self) -> QParams {
        let q = self.ranges.qparams(self.slot);
        self.slot += 1;
        q
    }

    fn weights(
        &mut self,
        w: &[f32],
        shape: [usize; 4],
        axis: usize,
        dims: Vec<usize>,
    ) -> (TensorId, Vec<f32>) {
        let (q, scales) = quantize_weights(w, shape, axis);
        let n = scales.len();
        let name = self.name("w");
        let id = self.b.tensor(TensorDef {
            name,
            shape: dims,
            dtype: DType::I8,
            quant: Some(Quantization {
                scales: scales.clone(),
                zero_points: vec![0; n],
                axis: if axis == 3 && shape[0] == 1 { 3 } else { 0 },
            }),
            data: Some(Data::I8(q)),
        });
        (id, scales)
    }

    fn bias(&mut self, b: &[f32], input_scale: f32, w_scales: &[f32]) -> TensorId {
        let q = b
            .iter()
            .zip(w_scales)
            .map(|(&v, &s)| {
                (v as f64 / (input_scale as f64 * s as f64))
                    .round()
                    .clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect();
        let name = self.name("b");
        self.b.tensor(TensorDef {
            name,
            shape: vec![b.len()],
            dtype: DType::I32,
            quant: None,
            data: Some(Data::I32(q)),
        })
    }

    fn layer(&mut self, layer: &FloatLayer, x: Tx, probe: &Activations) -> Result<Tx> {
        Ok(match layer {
            FloatLayer::Conv2d {
                filter,
                filter_shape: f,
                bias,
                padding,
                stride,
                dilation,
                activation,
            } => {
                let (w, scales) =
                    self.weights(filter, [f.n, f.h, f.w, f.c], 0, vec![f.n, f.h, f.w, f.c]);
                let b = self.bias(bias, x.q.0, &scales);
                let q = self.next_range();
                let out = self.activation(probe.shape, q, false);
                let options = TfOptions::conv(*padding, *stride, *dilation, *activation);
                let op = OpDef::new(OpCode::Conv2d, &[x.id, w, b], out.id, options);
                self.b.op(op);
                out
            }
            FloatLayer::DepthwiseConv2d {
                filter,
                filter_shape: f,
                bias,
                padding,
                stride,
                dilation,
                // The multiplier follows from the filter's and the input's channels.
                depth_multiplier: _,
                activation,
            } => {
                let (w, scales) =
                    self.weights(filter, [f.n, f.h, f.w, f.c], 3, vec![1, f.h, f.w, f.c]);
                let b = self.bias(bias, x.q.0, &scales);
                let q = self.next_range();
                let out = self.activation(probe.shape, q, false);
                let options = TfOptions::conv(*padding, *stride, *dilation, *activation);
                let op = OpDef::new(OpCode::DepthwiseConv2d, &[x.id, w, b], out.id, options);
                self.b.op(op);
                out
            }
            FloatLayer::Dense {
                weights,
                outputs,
                bias,
                activation,
            } => {
                let inputs = weights.len() / outputs;
                let (w, scales) =
                    self.weights(weights, [*outputs, 1, 1, inputs], 0, vec![*outputs, inputs]);
                let b = self.bias(bias, x.q.0, &scales);
                let q = self.next_range();
                let out = self.activation(probe.shape, q, true);
                let options = TfOptions::fused(*activation);
                let op = OpDef::new(OpCode::FullyConnected, &[x.id, w, b], out.id, options);
                let op = self.b.op(op);
                self.last_dense = Some(op);
                out
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
                self.next_range(); // pooling keeps its input's parameters, as TFLite requires
                let out = self.activation(probe.shape, x.q, false);
                let options = TfOptions::pool(*padding, *filter, *stride, Activation::None);
                let op = match layer {
                    FloatLayer::AvgPool { .. } => OpCode::AveragePool2d,
                    _ => OpCode::MaxPool2d,
                };
                self.b.op(OpDef::new(op, &[x.id], out.id, options));
                out
            }
            FloatLayer::GlobalAvgPool => {
                self.next_range();
                let out = self.activation(probe.shape, x.q, false);
                let hw = (x.shape.h, x.shape.w);
                let options = TfOptions::pool(Padding::Valid, hw, hw, Activation::None);
                self.b
                    .op(OpDef::new(OpCode::AveragePool2d, &[x.id], out.id, options));
                out
            }
            FloatLayer::Flatten => {
                self.next_range();
                let out = self.activation(probe.shape, x.q, true);
                let options = TfOptions::default();
                self.b
                    .op(OpDef::new(OpCode::Reshape, &[x.id], out.id, options));
                out
            }
            FloatLayer::Softmax => {
                self.next_range();
                let out = self.activation(probe.shape, (1.0 / 256.0, -128), true);
                let options = TfOptions::default();
                self.b
                    .op(OpDef::new(OpCode::Softmax, &[x.id], out.id, options));
                out
            }
            FloatLayer::Lstm {
                units,
                weights,
                recurrent,
                bias,
                return_sequences,
            } => {
                let layer = lstm::LstmLayer {
                    units: *units,
                    weights,
                    recurrent,
                    bias,
                    return_sequences: *return_sequences,
                };
                self.lstm(&layer, x)?
            }
            FloatLayer::Residual {
                layers,
                shortcut,
                activation,
            } => {
                // Inner shapes are recomputed from a zero probe of the right shape.
                let probe = |l: &FloatLayer, shape: Shape4| {
                    let zero = Activations {
                        data: vec![0.0; shape.elements().unwrap_or(0)],
                        shape,
                    };
                    l.forward(&zero, &mut |_| {})
                };
                let mut y = x;
                for l in layers {
                    y = self.layer(l, y, &probe(l, y.shape)?)?;
                }
                // The projection is traced after the inner layers, so it takes the next range.
                let s = match shortcut {
                    Some(p) => self.layer(p, x, &probe(p, x.shape)?)?,
                    None => x,
                };
                ensure!(
                    y.shape == s.shape,
                    "residual block: the inner layers give {:?} but the shortcut {:?}",
                    y.shape,
                    s.shape
                );
                let q = self.next_range();
                let out = self.activation(s.shape, q, false);
                let options = TfOptions::fused(*activation);
                self.b
                    .op(OpDef::new(OpCode::Add, &[s.id, y.id], out.id, options));
                out
            }
        })
    }
}

/// Quantizes `model` using `calibration` samples (each a normalized per-sample input).
pub fn quantize(
    model: &FloatModel,
    calibration: &[&[f32]],
    method: RangeMethod,
) -> Result<Quantized> {
    ensure!(
        !calibration.is_empty(),
        "quantization needs at least one calibration sample"
    );
    let mut ranges = Ranges {
        method,
        values: Vec::new(),
        min_max: Vec::new(),
    };
    let mut shapes = Vec::new();
    for (i, sample) in calibration.iter().enumerate() {
        ranges.observe(0, sample);
        let mut slot = 1;
        let mut record = |a: &Activations| {
            ranges.observe(slot, &a.data);
            if i == 0 {
                shapes.push(a.clone());
            }
            slot += 1;
        };
        model.forward(sample, &mut record)?;
    }
    let input_q = ranges.qparams(0);
    let mut e = Emitter {
        b: ModelBuilder::new(),
        ranges: &mut ranges,
        slot: 1,
        count: 0,
        last_dense: None,
    };
    // A model that starts with an LSTM takes sequences `[1, steps, features]`, as the TFLite
    // converter's does.
    let input = match model.layers.first() {
        Some(FloatLayer::Lstm { .. }) => e.activation_of_rank(model.input, input_q, 3),
        _ => e.activation(model.input, input_q, false),
    };
    let mut x = input;
    // Walk the layers with a zero probe for shapes (the trace above fixed the ranges).
    let mut probe = Activations {
        data: vec![0.0; model.input.elements().unwrap_or(0)],
        shape: model.input,
    };
    for layer in &model.layers {
        probe = layer.forward(&probe, &mut |_| {})?;
        x = e.layer(layer, x, &probe)?;
    }
    let trainable_op = e.last_dense;
    let mut b = e.b;
    if let Some(op) = trainable_op {
        b.set_trainable(op, true)?;
    }
    b.inputs(&[input.id]);
    b.outputs(&[x.id]);
    let built = b.build()?;
    Ok(Quantized {
        built,
        input: input_q,
        output: x.q,
        trainable_op,
    })
}

/// Quantizes one normalized float sample for the model's input.
pub fn quantize_input(sample: &[f32], q: QParams) -> Vec<i8> {
    sample
        .iter()
        .map(|&v| mote_core::ops::quantize::quantize_one(q.0, q.1, v))
        .collect()
}
