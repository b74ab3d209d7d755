//! Small synthetic int8 models with seeded random weights, for tests that need a valid model
//! of a given architecture rather than a trained one.

use mote_core::format::{DType, OpCode};
use mote_core::ops::{Activation, Padding};
use mote_host::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef, TensorId, TfOptions};

/// A xorshift32 generator: deterministic, dependency-free; the one the tests in `tests/` share.
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    /// A generator from a nonzero seed.
    pub fn new(seed: u32) -> Self {
        Self(seed.max(1))
    }
    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// The next 64 random bits (two draws).
    pub fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }
    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
    /// Uniform in `lo..=hi`.
    pub fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.int(lo as i64, hi as i64) as usize
    }
    /// One of `items`, uniformly.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.size(0, items.len() - 1)]
    }
    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.size(0, i));
        }
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }
    /// Uniform int8.
    pub fn i8(&mut self) -> i8 {
        self.next_u32() as u8 as i8
    }
    /// Uniform in `[lo, hi)`.
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

struct Synth<'a> {
    b: &'a mut ModelBuilder,
    rng: Rng,
    count: usize,
}

impl Synth<'_> {
    fn activation(&mut self, shape: &[usize], scale: f32, zero_point: i32) -> TensorId {
        self.count += 1;
        self.b.tensor(TensorDef {
            name: format!("act{}", self.count),
            shape: shape.to_vec(),
            dtype: DType::I8,
            quant: Some(Quantization::per_tensor(scale, zero_point)),
            data: None,
        })
    }

    fn weights(&mut self, shape: &[usize], axis: usize) -> TensorId {
        let n: usize = shape.iter().product();
        let channels = shape[axis];
        let scales = (0..channels).map(|_| self.rng.f32(0.002, 0.02)).collect();
        let data = (0..n).map(|_| self.rng.i8()).collect();
        self.count += 1;
        self.b.tensor(TensorDef {
            name: format!("w{}", self.count),
            shape: shape.to_vec(),
            dtype: DType::I8,
            quant: Some(Quantization {
                scales,
                zero_points: vec![0; channels],
                axis,
            }),
            data: Some(Data::I8(data)),
        })
    }

    fn bias(&mut self, n: usize) -> TensorId {
        let data = (0..n).map(|_| self.rng.below(2001) as i32 - 1000).collect();
        self.count += 1;
        self.b.tensor(TensorDef {
            name: format!("b{}", self.count),
            shape: vec![n],
            dtype: DType::I32,
            quant: None,
            data: Some(Data::I32(data)),
        })
    }
}

/// A depthwise-separable CNN on an `h x w x 1` input: conv 3x3 (stride 2, SAME, ReLU) ->
/// `blocks` x [depthwise 3x3 (ReLU) -> pointwise 1x1 (ReLU)] -> global average pool ->
/// reshape -> fully connected -> softmax over `classes`.
pub fn ds_cnn(
    seed: u32,
    h: usize,
    w: usize,
    channels: usize,
    blocks: usize,
    classes: usize,
) -> ModelBuilder {
    ds_cnn_pooled(OpCode::AveragePool2d, seed, h, w, channels, blocks, classes)
}

/// [`ds_cnn`] with `pool` (AVERAGE_POOL_2D or MAX_POOL_2D) as its global pool.
pub fn ds_cnn_pooled(
    pool: OpCode,
    seed: u32,
    h: usize,
    w: usize,
    channels: usize,
    blocks: usize,
    classes: usize,
) -> ModelBuilder {
    let mut b = ModelBuilder::new();
    let mut s = Synth {
        b: &mut b,
        rng: Rng::new(seed),
        count: 0,
    };
    let input = s.activation(&[1, h, w, 1], 0.05, -10);
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let filter = s.weights(&[channels, 3, 3, 1], 0);
    let bias = s.bias(channels);
    let mut x = s.activation(&[1, oh, ow, channels], 0.04, -128);
    let options = TfOptions::conv(Padding::Same, (2, 2), (1, 1), Activation::Relu);
    s.b.op(OpDef::new(
        OpCode::Conv2d,
        &[input, filter, bias],
        x,
        options,
    ));
    for _ in 0..blocks {
        let filter = s.weights(&[1, 3, 3, channels], 3);
        let bias = s.bias(channels);
        let y = s.activation(&[1, oh, ow, channels], 0.03, -128);
        let options = TfOptions::conv(Padding::Same, (1, 1), (1, 1), Activation::Relu);
        let op = OpDef::new(OpCode::DepthwiseConv2d, &[x, filter, bias], y, options);
        s.b.op(op);
        let filter = s.weights(&[channels, 1, 1, channels], 0);
        let bias = s.bias(channels);
        let z = s.activation(&[1, oh, ow, channels], 0.03, -128);
        let options = TfOptions::conv(Padding::Valid, (1, 1), (1, 1), Activation::Relu);
        s.b.op(OpDef::new(OpCode::Conv2d, &[y, filter, bias], z, options));
        x = z;
    }
    let pooled = s.activation(&[1, 1, 1, channels], 0.03, -128);
    let options = TfOptions::pool(Padding::Valid, (oh, ow), (oh, ow), Activation::None);
    s.b.op(OpDef::new(pool, &[x], pooled, options));
    let flat = s.activation(&[1, channels], 0.03, -128);
    let options = TfOptions::default();
    s.b.op(OpDef::new(OpCode::Reshape, &[pooled], flat, options));
    let weights = s.weights(&[classes, channels], 0);
    // Fully connected weights are per-tensor in TFLite's int8 scheme.
    if let Some(q) = &mut s.b.tensors_mut()[weights].quant {
        q.scales.truncate(1);
        q.zero_points.truncate(1);
    }
    let bias = s.bias(classes);
    let logits = s.activation(&[1, classes], 0.1, 5);
    let options = TfOptions::fused(Activation::None);
    let op = OpDef::new(
        OpCode::FullyConnected,
        &[flat, weights, bias],
        logits,
        options,
    );
    s.b.op(op);
    let probs = s.activation(&[1, classes], 1.0 / 256.0, -128);
    let options = TfOptions::default();
    s.b.op(OpDef::new(OpCode::Softmax, &[logits], probs, options));
    b.inputs(&[input]);
    b.outputs(&[probs]);
    b
}

/// A long chain of `ops` cheap operators on a 1x2x2x4 input (`ops + 1` tensors): MAX_POOL_2D
/// 1x1 steps with, every third step, a RESHAPE (its output planned onto its input), for tests
/// and measurements of how parsing scales with the tensor count.
pub fn long_chain(ops: usize) -> ModelBuilder {
    let mut b = ModelBuilder::new();
    let act = |b: &mut ModelBuilder, i: usize| {
        b.tensor(TensorDef {
            name: format!("t{i}"),
            shape: vec![1, 2, 2, 4],
            dtype: DType::I8,
            quant: Some(Quantization::per_tensor(0.05, -3)),
            data: None,
        })
    };
    let mut x = act(&mut b, 0);
    b.inputs(&[x]);
    for i in 1..=ops {
        let y = act(&mut b, i);
        b.op(match i % 3 {
            0 => OpDef::new(OpCode::Reshape, &[x], y, TfOptions::default()),
            _ => {
                let options = TfOptions::pool(Padding::Valid, (1, 1), (1, 1), Activation::None);
                OpDef::new(OpCode::MaxPool2d, &[x], y, options)
            }
        });
        x = y;
    }
    b.outputs(&[x]);
    b
}
