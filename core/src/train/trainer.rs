//! The [`Trainer`]: forward, backward and optimizer steps of a [`Network`] over the caller's
//! parameter buffer and working memory, laid out by a [`TrainingPlan`].
//!
//! [`Network`]: super::Network

use core::ops::Range;

use super::network::{LayerKind, Resolved, Train};
use super::optim::{sgd_update_f32, sgd_update_is_finite, squared_norm_f32, Sgd, Update};
use super::plan::{Loc, TrainingPlan};
use super::{activation, conv, dense, depthwise, loss, plan_bug, pool, Grads};
use crate::ops::{conv2d, depthwise_conv2d, fully_connected, pooling};
use crate::ops::{Activation, Tensor, TensorMut};
use crate::Error;

/// What a sample's output should have been, which also picks the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'t> {
    /// A class index: softmax cross-entropy on the output logits.
    Class(usize),
    /// Target values, one per output: mean squared error.
    Values(&'t [f32]),
}

/// Trains a network: [`accumulate`](Self::accumulate) one sample at a time, then
/// [`step`](Self::step) once per mini-batch.
///
/// A non-finite loss refuses the sample before any gradient is touched; a non-finite
/// gradient, or an update that would make any weight or velocity non-finite, refuses the step
/// before any weight or velocity is touched (the batch's gradients are dropped). Either way the
/// error is [`Error::NonFinite`] and the weights are unchanged.
#[derive(Debug)]
pub struct Trainer<'a, const N: usize> {
    plan: TrainingPlan<N>,
    params: &'a mut [f32],
    arena: &'a mut [f32],
    steps: u32,
    pending: u32,
}

impl<'a, const N: usize> Trainer<'a, N> {
    /// A trainer over `params` (the network's [`param_count`] values, frozen layers' included)
    /// and `arena`, which must start on a 4-byte boundary and hold at least
    /// [`plan.bytes()`](TrainingPlan::bytes) bytes; only that many are ever touched. Zeroes
    /// the gradient and velocity buffers.
    ///
    /// [`param_count`]: super::Network::param_count
    pub fn new(
        plan: &TrainingPlan<N>,
        params: &'a mut [f32],
        arena: &'a mut [u8],
    ) -> Result<Self, Error> {
        let expected = plan.net.param_count();
        if params.len() != expected {
            return Err(Error::LengthMismatch {
                expected,
                actual: params.len(),
            });
        }
        let (needed, actual) = (plan.bytes(), arena.len());
        let bytes = arena
            .get_mut(..needed)
            .ok_or(Error::BufferTooSmall { needed, actual })?;
        let arena = crate::cast::slice_mut::<f32>(bytes).ok_or(Error::InvalidParameter {
            what: why!("training arena must start on a 4-byte boundary"),
        })?;
        if arena.len() != plan.floats() {
            return Err(plan_bug());
        }
        let mut t = Self {
            plan: *plan,
            params,
            arena,
            steps: 0,
            pending: 0,
        };
        t.zero_grad();
        let velocity = t.plan.keep + t.plan.scratch + t.plan.grad_total;
        if let Some(v) = t.arena.get_mut(velocity..) {
            v.fill(0.0);
        }
        Ok(t)
    }

    /// The plan this trainer follows.
    pub fn plan(&self) -> &TrainingPlan<N> {
        &self.plan
    }

    /// The parameters, as trained so far.
    pub fn params(&self) -> &[f32] {
        self.params
    }

    /// The parameters, to change between steps (e.g. [`Head::start_class`]).
    ///
    /// [`Head::start_class`]: super::Head::start_class
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.params
    }

    /// Optimizer steps taken (what the learning-rate schedule sees).
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Sets the step count, e.g. to resume a schedule.
    pub fn set_steps(&mut self, steps: u32) {
        self.steps = steps;
    }

    /// Samples accumulated since the last step.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// Layer `i`'s accumulated gradient (weights then bias, or the bias alone), or `None` for
    /// a frozen layer.
    pub fn gradient(&self, i: usize) -> Option<&[f32]> {
        let &(offset, len) = self.plan.grads.get(i)?;
        let start = self.plan.keep + self.plan.scratch + offset;
        (len > 0)
            .then(|| self.arena.get(start..start + len))
            .flatten()
    }

    /// Drops the accumulated gradients.
    pub fn zero_grad(&mut self) {
        let start = self.plan.keep + self.plan.scratch;
        if let Some(g) = self.arena.get_mut(start..start + self.plan.grad_total) {
            g.fill(0.0);
        }
        self.pending = 0;
    }

    /// Runs the network on `input` (the network's input shape) and returns its output.
    pub fn forward<'s>(&'s mut self, input: &'s [f32]) -> Result<&'s [f32], Error> {
        self.plan.net.input_shape().check_len(input.len())?;
        let (keep, rest) = self.arena.split_at_mut(self.plan.keep);
        let scratch = rest.get_mut(..self.plan.scratch).ok_or(plan_bug())?;
        for i in 0..N {
            forward_layer(&self.plan, self.params, i, input, keep, scratch)?;
        }
        let r = &self.plan.net.resolved[N - 1];
        match self.plan.out_loc[N - 1] {
            Loc::Input => Ok(input),
            Loc::Keep(o) => keep.get(o..o + r.out_len()).ok_or(plan_bug()),
            Loc::Scratch(_) => Err(plan_bug()),
        }
    }

    /// Forward and backward pass of one sample: adds its gradients to the accumulators and
    /// returns its loss. A non-finite input or loss is an error that leaves the gradients
    /// untouched. (The input is checked first: max pooling would turn a NaN into a finite
    /// value.)
    pub fn accumulate(&mut self, input: &[f32], target: Target) -> Result<f32, Error> {
        let plan = &self.plan;
        let first = plan.first;
        if first >= N {
            return Err(Error::InvalidParameter {
                what: why!("no layer is trained (every layer is frozen)"),
            });
        }
        super::check_finite(input, why!("input"))?;
        self.forward(input)?;
        let plan = &self.plan;
        let (keep, rest) = self.arena.split_at_mut(plan.keep);
        let (scratch, rest) = rest.split_at_mut(plan.scratch);
        let grads = rest.get_mut(..plan.grad_total).ok_or(plan_bug())?;
        let out_len = plan.net.resolved[N - 1].out_len();
        let logits = match plan.out_loc[N - 1] {
            Loc::Input => input,
            Loc::Keep(o) => keep.get(o..o + out_len).ok_or(plan_bug())?,
            Loc::Scratch(_) => return Err(plan_bug()),
        };
        let g = scratch
            .get_mut(span(plan.grad_loc[N - 1], out_len))
            .ok_or(plan_bug())?;
        let loss = match target {
            Target::Class(label) => loss::softmax_cross_entropy_f32(logits, label, g)?,
            Target::Values(t) => loss::mean_squared_error_f32(logits, t, g)?,
        };
        for i in (first..N).rev() {
            backward_layer(plan, self.params, i, input, keep, scratch, grads)?;
        }
        self.pending = self.pending.saturating_add(1);
        Ok(loss)
    }

    /// One optimizer step with the mean of the accumulated gradients, then clears them. Does
    /// nothing if no sample was accumulated.
    ///
    /// If the gradients are not finite, or the update would make any weight or velocity
    /// non-finite (an overflow: a huge learning rate, momentum piling up), nothing is updated,
    /// the gradients are dropped, and the result is [`Error::NonFinite`]: every tensor's update
    /// is checked before any is applied.
    pub fn step(&mut self) -> Result<(), Error> {
        if self.pending == 0 {
            return Ok(());
        }
        let plan = &self.plan;
        let sgd: Sgd = plan.sgd;
        let start = plan.keep + plan.scratch;
        let (grads, velocity) = self
            .arena
            .get_mut(start..)
            .ok_or(plan_bug())?
            .split_at_mut(plan.grad_total);
        let batch = 1.0 / self.pending as f32;
        let norm = libm::sqrtf(squared_norm_f32(grads)) * batch;
        if !norm.is_finite() {
            self.zero_grad();
            return Err(Error::NonFinite {
                what: why!("gradient"),
            });
        }
        let update = Update {
            learning_rate: sgd.learning_rate_at(self.steps),
            momentum: sgd.momentum,
            weight_decay: sgd.weight_decay,
            grad_scale: batch * sgd.clip_factor(norm),
        };
        // First every tensor's update is checked, then all are applied: a refused step leaves
        // no tensor updated.
        let finite = update_layers(plan, self.params, grads, velocity, &update, false)?;
        if !finite {
            self.zero_grad();
            return Err(Error::NonFinite {
                what: why!("update (a weight or velocity would overflow)"),
            });
        }
        update_layers(plan, self.params, grads, velocity, &update, true)?;
        self.zero_grad();
        self.steps = self.steps.saturating_add(1);
        Ok(())
    }
}

/// Checks (`apply == false`: whether every updated weight and velocity would be finite) or
/// applies (`true`) the SGD update of every trained tensor.
fn update_layers<const N: usize>(
    plan: &TrainingPlan<N>,
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
    update: &Update,
    apply: bool,
) -> Result<bool, Error> {
    for (i, layer) in plan.net.layers().iter().enumerate() {
        let (offset, len) = plan.grads[i];
        if len == 0 {
            continue;
        }
        let r = &plan.net.resolved[i];
        // Parameters trained, and the length of the (undecayed) bias at their end.
        let trained = match layer.train {
            Train::All => span(r.param_offset, r.weights + r.bias),
            _ => span(r.param_offset + r.weights, r.bias),
        };
        let p = params.get_mut(trained).ok_or(plan_bug())?;
        let g = grads.get(span(offset, len)).ok_or(plan_bug())?;
        let v = velocity.get_mut(span(offset, len));
        let split = len.checked_sub(r.bias).ok_or(plan_bug())?;
        let (pw, pb) = p.split_at_mut_checked(split).ok_or(plan_bug())?;
        let (gw, gb) = g.split_at_checked(split).ok_or(plan_bug())?;
        let (vw, vb) = match v {
            Some(v) => {
                let (a, b) = v.split_at_mut_checked(split).ok_or(plan_bug())?;
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let bias = Update {
            weight_decay: 0.0,
            ..*update
        };
        if apply {
            sgd_update_f32(pw, gw, vw, update)?;
            sgd_update_f32(pb, gb, vb, &bias)?;
        } else if !(sgd_update_is_finite(pw, gw, vw.as_deref(), update)?
            && sgd_update_is_finite(pb, gb, vb.as_deref(), &bias)?)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn span(start: usize, len: usize) -> Range<usize> {
    start..start + len
}

/// Disjoint `(&a, &mut b)` views of one buffer; `None` if the ranges overlap or fall outside.
fn split_ref_mut(
    buf: &mut [f32],
    a: Range<usize>,
    b: Range<usize>,
) -> Option<(&[f32], &mut [f32])> {
    let (a_len, b_len) = (a.len(), b.len());
    if a.end <= b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        Some((lo.get(a)?, hi.get_mut(..b_len)?))
    } else if b.end <= a.start {
        let (lo, hi) = buf.split_at_mut(a.start);
        Some((hi.get(..a_len)?, lo.get_mut(b)?))
    } else {
        None
    }
}

/// Disjoint `(&mut a, &mut b)` views of one buffer.
fn split_mut_mut(
    buf: &mut [f32],
    a: Range<usize>,
    b: Range<usize>,
) -> Option<(&mut [f32], &mut [f32])> {
    let (a_len, b_len) = (a.len(), b.len());
    if a.end <= b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        Some((lo.get_mut(a)?, hi.get_mut(..b_len)?))
    } else if b.end <= a.start {
        let (lo, hi) = buf.split_at_mut(a.start);
        Some((hi.get_mut(..a_len)?, lo.get_mut(b)?))
    } else {
        None
    }
}

/// The read view of activation `src` and the write view of activation `dst`.
fn src_dst<'b>(
    input: &'b [f32],
    keep: &'b mut [f32],
    scratch: &'b mut [f32],
    (src, src_len): (Loc, usize),
    (dst, dst_len): (Loc, usize),
) -> Option<(&'b [f32], &'b mut [f32])> {
    match (src, dst) {
        (Loc::Input, Loc::Keep(d)) => Some((input, keep.get_mut(span(d, dst_len))?)),
        (Loc::Input, Loc::Scratch(d)) => Some((input, scratch.get_mut(span(d, dst_len))?)),
        (Loc::Keep(s), Loc::Keep(d)) => split_ref_mut(keep, span(s, src_len), span(d, dst_len)),
        (Loc::Scratch(s), Loc::Scratch(d)) => {
            split_ref_mut(scratch, span(s, src_len), span(d, dst_len))
        }
        (Loc::Scratch(s), Loc::Keep(d)) => Some((
            scratch.get(span(s, src_len))?,
            keep.get_mut(span(d, dst_len))?,
        )),
        (Loc::Keep(s), Loc::Scratch(d)) => Some((
            keep.get(span(s, src_len))?,
            scratch.get_mut(span(d, dst_len))?,
        )),
        (_, Loc::Input) => None,
    }
}

/// Location of layer `i`'s input.
fn input_loc<const N: usize>(plan: &TrainingPlan<N>, i: usize) -> Loc {
    match i.checked_sub(1) {
        Some(j) => plan.out_loc[j],
        None => Loc::Input,
    }
}

/// Layer `i`'s weights and bias.
fn layer_params<'p>(params: &'p [f32], r: &Resolved) -> Result<(&'p [f32], &'p [f32]), Error> {
    let w = params
        .get(span(r.param_offset, r.weights))
        .ok_or(plan_bug())?;
    let b = params
        .get(span(r.param_offset + r.weights, r.bias))
        .ok_or(plan_bug())?;
    Ok((w, b))
}

fn forward_layer<const N: usize>(
    plan: &TrainingPlan<N>,
    params: &[f32],
    i: usize,
    input: &[f32],
    keep: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), Error> {
    let (layer, r) = (&plan.net.layers()[i], &plan.net.resolved[i]);
    if layer.kind == LayerKind::Flatten {
        return Ok(());
    }
    let src = (input_loc(plan, i), r.in_len());
    let dst = (plan.out_loc[i], r.out_len());
    let (x, y) = src_dst(input, keep, scratch, src, dst).ok_or(plan_bug())?;
    let x = Tensor {
        data: x,
        shape: r.input,
    };
    let y = TensorMut {
        data: y,
        shape: r.output,
    };
    let clamp = layer.activation().f32_range();
    let none = Activation::None.f32_range();
    let (w, b) = layer_params(params, r)?;
    let w = Tensor {
        data: w,
        shape: r.filter,
    };
    match layer.kind {
        LayerKind::Dense { .. } => fully_connected::fully_connected_f32(clamp, x, w, Some(b), y),
        LayerKind::Conv2d { .. } => conv2d::conv2d_f32(&r.window, clamp, x, w, Some(b), y),
        LayerKind::DepthwiseConv2d {
            depth_multiplier, ..
        } => depthwise_conv2d::depthwise_conv2d_f32(
            &r.window,
            depth_multiplier,
            clamp,
            x,
            w,
            Some(b),
            y,
        ),
        LayerKind::AveragePool2d { .. } | LayerKind::GlobalAveragePool => {
            pooling::average_pool2d_f32(&r.pool_params(), none, x, y)
        }
        LayerKind::MaxPool2d { .. } => pooling::max_pool2d_f32(&r.pool_params(), none, x, y),
        LayerKind::Relu | LayerKind::Relu6 => {
            if x.data.len() != y.data.len() {
                return Err(plan_bug());
            }
            y.data.copy_from_slice(x.data);
            activation::activation_f32(layer.activation(), y.data);
            Ok(())
        }
        LayerKind::Flatten => Ok(()),
    }
}

fn backward_layer<const N: usize>(
    plan: &TrainingPlan<N>,
    params: &[f32],
    i: usize,
    input: &[f32],
    keep: &[f32],
    scratch: &mut [f32],
    grads: &mut [f32],
) -> Result<(), Error> {
    let (layer, r) = (&plan.net.layers()[i], &plan.net.resolved[i]);
    if layer.kind == LayerKind::Flatten {
        return Ok(());
    }
    let view = |loc: Loc, len: usize| match loc {
        Loc::Input => Some(input),
        Loc::Keep(o) => keep.get(span(o, len)),
        Loc::Scratch(_) => None,
    };
    let x = view(input_loc(plan, i), r.in_len()).ok_or(plan_bug())?;
    let y = view(plan.out_loc[i], r.out_len()).ok_or(plan_bug())?;
    // The gradient of the output, and (above the first trained layer) of the input.
    let g_out = span(plan.grad_loc[i], r.out_len());
    let (g_out, g_in) = if i > plan.first {
        let g_in = span(plan.grad_loc[i - 1], r.in_len());
        let (a, b) = split_mut_mut(scratch, g_out, g_in).ok_or(plan_bug())?;
        (a, Some(b))
    } else {
        (scratch.get_mut(g_out).ok_or(plan_bug())?, None)
    };
    activation::activation_backward_f32(layer.activation(), y, g_out)?;
    let x = Tensor {
        data: x,
        shape: r.input,
    };
    let g = Tensor {
        data: &*g_out,
        shape: r.output,
    };
    let (offset, len) = plan.grads[i];
    let acc = grads.get_mut(span(offset, len)).ok_or(plan_bug())?;
    let (gw, gb) = match layer.train {
        Train::Frozen => (None, None),
        Train::BiasOnly => (None, Some(acc)),
        Train::All => {
            let (a, b) = acc.split_at_mut(r.weights);
            (Some(a), Some(b))
        }
    };
    let (w, _) = layer_params(params, r)?;
    let w = Tensor {
        data: w,
        shape: r.filter,
    };
    let grads = Grads {
        input: g_in,
        weights: gw,
        bias: gb,
    };
    match layer.kind {
        LayerKind::Dense { .. } => dense::dense_backward_f32(x, w, g, grads),
        LayerKind::Conv2d { .. } => conv::conv2d_backward_f32(&r.window, x, w, g, grads),
        LayerKind::DepthwiseConv2d {
            depth_multiplier, ..
        } => depthwise::depthwise_conv2d_backward_f32(&r.window, depth_multiplier, x, w, g, grads),
        kind => {
            let g_in = grads.input.ok_or(plan_bug())?;
            match kind {
                LayerKind::AveragePool2d { .. } => {
                    pool::average_pool2d_backward_f32(&r.pool_params(), r.input, g, g_in)
                }
                LayerKind::GlobalAveragePool => {
                    pool::global_average_pool_backward_f32(r.input, g.data, g_in)
                }
                LayerKind::MaxPool2d { .. } => {
                    pool::max_pool2d_backward_f32(&r.pool_params(), x, g, g_in)
                }
                _ => {
                    // ReLU / ReLU6: the mask was applied above.
                    if g_in.len() != g.data.len() {
                        return Err(plan_bug());
                    }
                    g_in.copy_from_slice(g.data);
                    Ok(())
                }
            }
        }
    }
}
