//! The parameter-free layers: relu, relu6, dropout, flatten and softmax.

use super::tensor::{act_backward, apply_act, CoreAct, Ctx, Tensor};

/// A standalone relu or relu6.
#[derive(Debug, Clone)]
pub(crate) struct ActLayer {
    pub act: CoreAct,
    out: Option<Vec<f32>>,
}

impl ActLayer {
    pub fn new(act: CoreAct) -> Self {
        Self { act, out: None }
    }

    pub fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Tensor {
        apply_act(self.act, &mut x.data);
        if ctx.train {
            self.out = Some(x.data.clone());
        }
        x
    }

    pub fn backward(&mut self, mut dy: Tensor) -> Tensor {
        let out = self
            .out
            .take()
            .expect("activation backward without a training forward");
        act_backward(self.act, &out, &mut dy.data);
        dy
    }
}

/// Inverted dropout: in training each value is zeroed with probability `rate` and the rest
/// scaled by `1 / (1 - rate)`; in evaluation it is the identity.
#[derive(Debug, Clone)]
pub(crate) struct Dropout {
    pub rate: f32,
    mask: Option<Vec<f32>>,
}

impl Dropout {
    pub fn new(rate: f32) -> Self {
        Self { rate, mask: None }
    }

    pub fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Tensor {
        if !ctx.train || self.rate == 0.0 {
            self.mask = None;
            return x;
        }
        let keep = 1.0 - self.rate;
        let scale = 1.0 / keep;
        let mask: Vec<f32> = (0..x.data.len())
            .map(|_| {
                if ctx.rng.uniform() < f64::from(keep) {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        x.data.iter_mut().zip(&mask).for_each(|(v, m)| *v *= m);
        self.mask = Some(mask);
        x
    }

    pub fn backward(&mut self, mut dy: Tensor) -> Tensor {
        if let Some(mask) = self.mask.take() {
            dy.data.iter_mut().zip(&mask).for_each(|(d, m)| *d *= m);
        }
        dy
    }
}

/// Softmax over the last axis: `exp(x - max) / sum`, as mote-core's kernel with beta 1.
#[derive(Debug, Clone, Default)]
pub(crate) struct Softmax {
    out: Option<Vec<f32>>,
}

/// Softmax of each row of `depth` values, in place.
pub(crate) fn softmax_rows(data: &mut [f32], depth: usize) {
    for row in data.chunks_exact_mut(depth) {
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

impl Softmax {
    pub fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Tensor {
        softmax_rows(&mut x.data, x.shape[2]);
        if ctx.train {
            self.out = Some(x.data.clone());
        }
        x
    }

    /// `dx = y * (dy - sum(dy * y))` per row.
    pub fn backward(&mut self, mut dy: Tensor) -> Tensor {
        let y = self
            .out
            .take()
            .expect("softmax backward without a training forward");
        let depth = dy.shape[2];
        for (d, y) in dy.data.chunks_exact_mut(depth).zip(y.chunks_exact(depth)) {
            let dot: f32 = d.iter().zip(y).map(|(d, y)| d * y).sum();
            d.iter_mut().zip(y).for_each(|(d, y)| *d = y * (*d - dot));
        }
        dy
    }
}
