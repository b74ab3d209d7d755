//! The memory plan of a training run: where every buffer lives, and how many bytes that
//! takes, computed from the [`Network`] and the optimizer before anything runs.
//!
//! # What the working memory holds
//!
//! Let `k` be the first layer whose parameters are trained. Then:
//!
//! - **activations**: the outputs of layers from `k` on (and, when the layers just below `k` are
//!   flattens, the buffer they alias), kept from the forward pass for the backward pass. Nothing
//!   below `k` is kept. The network's output is always kept (it is what `forward` returns).
//! - **scratch**: two ping-pong buffers, used by the forward pass of the frozen layers below `k`
//!   and, at another time, by the backward pass for the gradients of activations above `k`;
//!   sized for the larger of the two uses.
//! - **gradients**: one accumulator per trained tensor (weights and bias, or the bias alone).
//! - **optimizer**: one velocity per trained parameter when momentum is on, else nothing.
//!
//! Frozen layers keep no gradient and no velocity. The batch size costs nothing: gradients are
//! accumulated one sample at a time. The regions follow one another in that order.

use super::network::{Layer, LayerKind, Network, Train};
use super::optim::Sgd;
use crate::Error;

/// Where an activation lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The caller's input buffer.
    Input,
    /// Offset (in f32) into the kept-activations region.
    Keep(usize),
    /// Offset (in f32) into the scratch region.
    Scratch(usize),
}

/// Working-memory figures of a [`TrainingPlan`], in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Memory {
    /// Activations kept from the forward pass for the backward pass (and the output).
    pub activations: usize,
    /// Ping-pong buffers: frozen layers' forward pass, activation gradients.
    pub scratch: usize,
    /// Gradient accumulators of the trained tensors.
    pub gradients: usize,
    /// Optimizer state (momentum velocities).
    pub optimizer: usize,
}

impl Memory {
    /// The sum: what [`TrainingPlan::bytes`] returns.
    pub fn total(&self) -> usize {
        self.activations + self.scratch + self.gradients + self.optimizer
    }
}

/// Where every buffer of a training run lives, computed before anything runs.
#[derive(Debug, Clone, Copy)]
pub struct TrainingPlan<const N: usize> {
    pub(crate) net: Network<N>,
    pub(crate) sgd: Sgd,
    /// First layer whose parameters are trained (`N` if none).
    pub(crate) first: usize,
    /// Where the output of layer `i` lives.
    pub(crate) out_loc: [Loc; N],
    /// Scratch offset of the gradient with respect to the output of layer `i` (for `i >= first`).
    pub(crate) grad_loc: [usize; N],
    /// Offset and length of layer `i`'s gradient accumulator (length 0: frozen).
    pub(crate) grads: [(usize, usize); N],
    /// Region lengths, in f32.
    pub(crate) keep: usize,
    pub(crate) scratch: usize,
    pub(crate) grad_total: usize,
    pub(crate) velocity: usize,
}

impl<const N: usize> TrainingPlan<N> {
    /// The plan for training `net` (with its layers' [`Train`] modes) with `sgd`.
    pub fn new(net: &Network<N>, sgd: Sgd) -> Result<Self, Error> {
        sgd.validate()?;
        let layers = net.layers();
        let trained = |l: &Layer| l.has_params() && l.train != Train::Frozen;
        let first = layers.iter().position(trained).unwrap_or(N);
        // Flattens just below `first` alias the buffer `first` reads: keep that buffer too.
        let mut keep_from = first;
        while keep_from > 0 && layers[keep_from - 1].kind == LayerKind::Flatten {
            keep_from -= 1;
        }
        let add = |a: usize, b: usize| a.checked_add(b).ok_or(Error::ShapeOverflow);

        // Forward: kept activations in order; below `keep_from`, ping-pong X (0) / Y (1).
        let mut tags = [Tag::Input; N];
        let (mut keep, mut sizes) = (0usize, [0usize; 2]);
        let mut prev = Tag::Input;
        for (i, r) in net.resolved.iter().enumerate() {
            let tag = if layers[i].kind == LayerKind::Flatten {
                prev
            } else if i + 1 >= keep_from {
                let t = Tag::Keep(keep);
                keep = add(keep, r.out_len())?;
                t
            } else {
                let side = usize::from(prev == Tag::Pong(0));
                sizes[side] = sizes[side].max(r.out_len());
                Tag::Pong(side)
            };
            tags[i] = tag;
            prev = tag;
        }
        let mut out_loc = [Loc::Input; N];
        for (loc, tag) in out_loc.iter_mut().zip(tags) {
            *loc = match tag {
                Tag::Input => Loc::Input,
                Tag::Keep(o) => Loc::Keep(o),
                Tag::Pong(side) => Loc::Scratch(side * sizes[0]),
            };
        }

        // Backward: gradients of the outputs of layers first..N, ping-pong P (0) / Q (1).
        let mut sides = [0usize; N];
        let mut grad_sizes = [0usize; 2];
        if first < N {
            grad_sizes[0] = net.resolved[N - 1].out_len();
            for i in (first + 1..N).rev() {
                // Layer i writes the gradient of its input, the output of layer i - 1.
                sides[i - 1] = if layers[i].kind == LayerKind::Flatten {
                    sides[i]
                } else {
                    1 - sides[i]
                };
                let s = sides[i - 1];
                grad_sizes[s] = grad_sizes[s].max(net.resolved[i].in_len());
            }
        }
        let mut grad_loc = [0usize; N];
        for (loc, side) in grad_loc.iter_mut().zip(sides) {
            *loc = side * grad_sizes[0];
        }
        let scratch = add(sizes[0], sizes[1])?.max(add(grad_sizes[0], grad_sizes[1])?);

        let mut grads = [(0usize, 0usize); N];
        let mut grad_total = 0usize;
        for ((g, layer), r) in grads.iter_mut().zip(layers).zip(&net.resolved) {
            let len = match layer.train {
                Train::Frozen => 0,
                Train::BiasOnly => r.bias,
                Train::All => add(r.weights, r.bias)?,
            };
            *g = (grad_total, len);
            grad_total = add(grad_total, len)?;
        }
        let velocity = if sgd.keeps_velocity() { grad_total } else { 0 };
        let plan = Self {
            net: *net,
            sgd,
            first,
            out_loc,
            grad_loc,
            grads,
            keep,
            scratch,
            grad_total,
            velocity,
        };
        // The total in bytes must be representable.
        add(add(keep, scratch)?, add(grad_total, velocity)?)?
            .checked_mul(4)
            .ok_or(Error::ShapeOverflow)?;
        Ok(plan)
    }

    /// The network this plan trains.
    pub fn network(&self) -> &Network<N> {
        &self.net
    }

    /// The optimizer this plan was sized for.
    pub fn sgd(&self) -> Sgd {
        self.sgd
    }

    /// Index of the first layer whose parameters are trained, or `None` if all are frozen.
    pub fn first_trained(&self) -> Option<usize> {
        (self.first < N).then_some(self.first)
    }

    /// The working memory, by purpose.
    pub fn memory(&self) -> Memory {
        Memory {
            activations: self.keep * 4,
            scratch: self.scratch * 4,
            gradients: self.grad_total * 4,
            optimizer: self.velocity * 4,
        }
    }

    /// Exact bytes of working memory a [`Trainer`](super::Trainer) needs for this plan.
    pub fn bytes(&self) -> usize {
        self.memory().total()
    }

    /// Working memory in f32 elements.
    pub(crate) fn floats(&self) -> usize {
        self.keep + self.scratch + self.grad_total + self.velocity
    }
}

/// Placement while planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Input,
    Keep(usize),
    Pong(usize),
}
