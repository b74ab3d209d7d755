//! batch_norm over the channel axis: batch statistics and running averages in training, the
//! running averages in evaluation, and folding into the preceding conv/depthwise/dense for
//! export.

use super::tensor::{Ctx, Param, Tensor};

/// Batch normalization of the last axis.
#[derive(Debug, Clone)]
pub(crate) struct BatchNorm {
    pub channels: usize,
    pub momentum: f32,
    pub epsilon: f32,
    pub gamma: Param,
    pub beta: Param,
    pub running_mean: Param,
    pub running_var: Param,
    /// Training forward: normalized input and `1 / sqrt(var + eps)` per channel.
    cache: Option<(Vec<f32>, Vec<f32>)>,
}

impl BatchNorm {
    pub fn new(channels: usize, momentum: f32, epsilon: f32) -> Self {
        Self {
            channels,
            momentum,
            epsilon,
            gamma: Param::trainable("gamma", vec![channels], vec![1.0; channels], false),
            beta: Param::trainable("beta", vec![channels], vec![0.0; channels], false),
            running_mean: Param::state("running_mean", vec![0.0; channels]),
            running_var: Param::state("running_var", vec![1.0; channels]),
            cache: None,
        }
    }

    /// The evaluation-mode affine map per channel: `y = scale * x + shift`.
    pub fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let mut scale = Vec::with_capacity(self.channels);
        let mut shift = Vec::with_capacity(self.channels);
        for c in 0..self.channels {
            let s = self.gamma.value[c] / (self.running_var.value[c] + self.epsilon).sqrt();
            scale.push(s);
            shift.push(self.beta.value[c] - self.running_mean.value[c] * s);
        }
        (scale, shift)
    }

    pub fn forward(&mut self, mut x: Tensor, ctx: &mut Ctx) -> Tensor {
        let c = self.channels;
        if !ctx.train {
            let (scale, shift) = self.affine();
            let (scale, shift) = (&scale[..c], &shift[..c]);
            for px in x.data.chunks_exact_mut(c) {
                let px = &mut px[..c];
                for ch in 0..c {
                    px[ch] = px[ch] * scale[ch] + shift[ch];
                }
            }
            return x;
        }
        let count = (x.data.len() / c).max(1) as f64;
        // Two passes in f64: the mean, then the (biased) variance.
        // (Indexed loops over slices of exactly `c`: the bounds checks go away even at the
        // test profile's opt-level 1, where iterator chains stay slow.)
        let mut mean = vec![0.0f64; c];
        for px in x.data.chunks_exact(c) {
            let (m, px) = (&mut mean[..c], &px[..c]);
            for ch in 0..c {
                m[ch] += f64::from(px[ch]);
            }
        }
        mean.iter_mut().for_each(|m| *m /= count);
        let mut var = vec![0.0f64; c];
        for px in x.data.chunks_exact(c) {
            let (s, m, px) = (&mut var[..c], &mean[..c], &px[..c]);
            for ch in 0..c {
                let d = f64::from(px[ch]) - m[ch];
                s[ch] += d * d;
            }
        }
        var.iter_mut().for_each(|v| *v /= count);
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v + f64::from(self.epsilon)).sqrt()) as f32)
            .collect();
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let mut xhat = x.data;
        let mut y = vec![0.0; xhat.len()];
        let (gamma, beta) = (&self.gamma.value[..c], &self.beta.value[..c]);
        let (mean32, inv_std) = (&mean32[..c], &inv_std[..c]);
        for (px, out) in xhat.chunks_exact_mut(c).zip(y.chunks_exact_mut(c)) {
            let (px, out) = (&mut px[..c], &mut out[..c]);
            for ch in 0..c {
                let v = (px[ch] - mean32[ch]) * inv_std[ch];
                px[ch] = v;
                out[ch] = v * gamma[ch] + beta[ch];
            }
        }
        let mom = self.momentum;
        for ch in 0..c {
            let rm = &mut self.running_mean.value[ch];
            *rm = mom * *rm + (1.0 - mom) * mean32[ch];
            let rv = &mut self.running_var.value[ch];
            *rv = mom * *rv + (1.0 - mom) * var[ch] as f32;
        }
        self.cache = Some((xhat, inv_std.to_vec()));
        Tensor {
            n: x.n,
            shape: x.shape,
            data: y,
        }
    }

    pub fn backward(&mut self, dy: Tensor) -> Tensor {
        let (xhat, inv_std) = self
            .cache
            .take()
            .expect("batch_norm backward without a training forward");
        let c = self.channels;
        let count = (xhat.len() / c).max(1) as f32;
        let mut sum_dy = vec![0.0f32; c];
        let mut sum_dy_xhat = vec![0.0f32; c];
        for (d, xh) in dy.data.chunks_exact(c).zip(xhat.chunks_exact(c)) {
            let (s, t) = (&mut sum_dy[..c], &mut sum_dy_xhat[..c]);
            let (d, xh) = (&d[..c], &xh[..c]);
            for ch in 0..c {
                s[ch] += d[ch];
                t[ch] += d[ch] * xh[ch];
            }
        }
        for ch in 0..c {
            self.beta.grad[ch] += sum_dy[ch];
            self.gamma.grad[ch] += sum_dy_xhat[ch];
        }
        // dx = gamma * inv_std / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)), per channel
        // `a * dy - b - e * xhat`.
        let a: Vec<f32> = (0..c)
            .map(|ch| self.gamma.value[ch] * inv_std[ch])
            .collect();
        let b: Vec<f32> = (0..c).map(|ch| a[ch] / count * sum_dy[ch]).collect();
        let e: Vec<f32> = (0..c).map(|ch| a[ch] / count * sum_dy_xhat[ch]).collect();
        let mut dx = dy.data;
        let (a, b, e) = (&a[..c], &b[..c], &e[..c]);
        for (d, xh) in dx.chunks_exact_mut(c).zip(xhat.chunks_exact(c)) {
            let (d, xh) = (&mut d[..c], &xh[..c]);
            for ch in 0..c {
                d[ch] = a[ch] * d[ch] - b[ch] - e[ch] * xh[ch];
            }
        }
        Tensor {
            n: dy.n,
            shape: dy.shape,
            data: dx,
        }
    }
}

/// Folds an evaluation-mode batch norm (`scale`, `shift` per output channel) into the weights
/// and bias of the layer before it: `weights` holds `channels` output channels, either as
/// contiguous rows (`rows = true`: OHWI filters, `[out, in]` dense weights) or as the fastest
/// axis (`rows = false`: depthwise `[1, kh, kw, out]`).
pub(crate) fn fold_into(
    weights: &mut [f32],
    bias: &mut Vec<f32>,
    scale: &[f32],
    shift: &[f32],
    rows: bool,
) {
    let channels = scale.len();
    if rows {
        let per = weights.len() / channels;
        for (row, s) in weights.chunks_exact_mut(per).zip(scale) {
            row.iter_mut().for_each(|w| *w *= s);
        }
    } else {
        for tap in weights.chunks_exact_mut(channels) {
            tap.iter_mut().zip(scale).for_each(|(w, s)| *w *= s);
        }
    }
    bias.resize(channels, 0.0);
    for ((b, s), t) in bias.iter_mut().zip(scale).zip(shift) {
        *b = *b * s + t;
    }
}
