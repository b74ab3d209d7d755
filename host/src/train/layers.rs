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

/// Softmax over the last axis: mote-core's kernel with beta 1, `exp(x - max) / sum`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Softmax {
    out: Option<Vec<f32>>,
}

impl Softmax {
    pub fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Tensor {
        let mut y = vec![0.0; x.data.len()];
        mote_core::ops::softmax::softmax_f32(1.0, &x.data, &mut y, x.shape[2])
            .expect("softmax rows are whole and non-empty");
        if ctx.train {
            self.out = Some(y.clone());
        }
        Tensor { data: y, ..x }
    }

    /// `dx = y * (dy - sum(dy * y))` per row (mote-core's softmax backward).
    pub fn backward(&mut self, mut dy: Tensor) -> Tensor {
        let y = self
            .out
            .take()
            .expect("softmax backward without a training forward");
        mote_core::train::softmax_backward_f32(&y, &mut dy.data, dy.shape[2])
            .expect("softmax backward on the forward pass's rows");
        dy
    }
}
