//! A sequential network of trainable and frozen layers.
//!
//! A [`Network`] is a fixed-size array of [`Layer`]s with the shapes they imply; its parameters
//! live in one caller-owned `[f32]` (per layer: weights, then bias). A
//! [`TrainingPlan`](super::TrainingPlan) says, before anything runs, how many bytes of working
//! memory training needs, and where each buffer lives in it; a [`Trainer`](super::Trainer) runs
//! on exactly that many bytes.
//!
//! See [`plan`](super::plan) for what the working memory holds.

use crate::geometry::WindowFit;
use crate::ops::pooling::PoolParams;
use crate::ops::{Activation, Padding, Shape4, Window};
use crate::Error;

/// What a layer computes. Layers with parameters always have a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerKind {
    /// Fully connected over the channels of a `1x1` input (put a [`LayerKind::Flatten`] before
    /// it otherwise). Weights `[outputs, 1, 1, inputs]`.
    Dense {
        /// Output features.
        outputs: usize,
        /// Fused activation.
        activation: Activation,
    },
    /// 2-D convolution, filter OHWI `[filters, kh, kw, in_c]`.
    Conv2d {
        /// Output channels.
        filters: usize,
        /// Kernel `(height, width)`.
        kernel: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        stride: (usize, usize),
        /// Dilation `(vertical, horizontal)`.
        dilation: (usize, usize),
        /// TFLite padding mode.
        padding: Padding,
        /// Fused activation.
        activation: Activation,
    },
    /// Depthwise convolution, filter `[1, kh, kw, in_c * depth_multiplier]`.
    DepthwiseConv2d {
        /// Filters per input channel.
        depth_multiplier: usize,
        /// Kernel `(height, width)`.
        kernel: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        stride: (usize, usize),
        /// Dilation `(vertical, horizontal)`.
        dilation: (usize, usize),
        /// TFLite padding mode.
        padding: Padding,
        /// Fused activation.
        activation: Activation,
    },
    /// Average pooling.
    AveragePool2d {
        /// Window `(height, width)`.
        size: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        stride: (usize, usize),
        /// TFLite padding mode.
        padding: Padding,
    },
    /// Max pooling.
    MaxPool2d {
        /// Window `(height, width)`.
        size: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        stride: (usize, usize),
        /// TFLite padding mode.
        padding: Padding,
    },
    /// Average over height and width: `[1, h, w, c]` to `[1, 1, 1, c]`.
    GlobalAveragePool,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `[1, h, w, c]` to `[1, 1, 1, h * w * c]`: no computation, no buffer.
    Flatten,
}

/// Which of a layer's parameters are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Train {
    /// None: no gradient or optimizer memory.
    Frozen,
    /// The bias only: gradient and optimizer memory for the bias alone.
    BiasOnly,
    /// Weights and bias.
    All,
}

/// One layer: what it computes and what of it is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layer {
    /// The computation.
    pub kind: LayerKind,
    /// What is trained ([`Train::Frozen`] for layers without parameters).
    pub train: Train,
}

impl Layer {
    const fn new(kind: LayerKind, train: Train) -> Self {
        Self { kind, train }
    }

    /// A trainable fully connected layer.
    pub const fn dense(outputs: usize, activation: Activation) -> Self {
        Self::new(
            LayerKind::Dense {
                outputs,
                activation,
            },
            Train::All,
        )
    }

    /// A trainable square `kernel x kernel` convolution, undilated.
    pub const fn conv2d(
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
        activation: Activation,
    ) -> Self {
        let kind = LayerKind::Conv2d {
            filters,
            kernel: (kernel, kernel),
            stride: (stride, stride),
            dilation: (1, 1),
            padding,
            activation,
        };
        Self::new(kind, Train::All)
    }

    /// A trainable square `kernel x kernel` depthwise convolution, undilated.
    pub const fn depthwise_conv2d(
        depth_multiplier: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
        activation: Activation,
    ) -> Self {
        let kind = LayerKind::DepthwiseConv2d {
            depth_multiplier,
            kernel: (kernel, kernel),
            stride: (stride, stride),
            dilation: (1, 1),
            padding,
            activation,
        };
        Self::new(kind, Train::All)
    }

    /// Square max pooling.
    pub const fn max_pool2d(size: usize, stride: usize, padding: Padding) -> Self {
        let (size, stride) = ((size, size), (stride, stride));
        let kind = LayerKind::MaxPool2d {
            size,
            stride,
            padding,
        };
        Self::new(kind, Train::Frozen)
    }

    /// Square average pooling.
    pub const fn average_pool2d(size: usize, stride: usize, padding: Padding) -> Self {
        let (size, stride) = ((size, size), (stride, stride));
        let kind = LayerKind::AveragePool2d {
            size,
            stride,
            padding,
        };
        Self::new(kind, Train::Frozen)
    }

    /// Global average pooling.
    pub const fn global_average_pool() -> Self {
        Self::new(LayerKind::GlobalAveragePool, Train::Frozen)
    }

    /// ReLU.
    pub const fn relu() -> Self {
        Self::new(LayerKind::Relu, Train::Frozen)
    }

    /// ReLU6.
    pub const fn relu6() -> Self {
        Self::new(LayerKind::Relu6, Train::Frozen)
    }

    /// Flatten.
    pub const fn flatten() -> Self {
        Self::new(LayerKind::Flatten, Train::Frozen)
    }

    /// The same layer with its training mode set to `train`.
    pub const fn with_train(mut self, train: Train) -> Self {
        self.train = train;
        self
    }

    /// Whether the layer has weights and a bias.
    pub const fn has_params(&self) -> bool {
        matches!(
            self.kind,
            LayerKind::Dense { .. } | LayerKind::Conv2d { .. } | LayerKind::DepthwiseConv2d { .. }
        )
    }

    /// The fused (or standalone) activation whose derivative the backward pass applies.
    pub(crate) fn activation(&self) -> Activation {
        match self.kind {
            LayerKind::Dense { activation, .. }
            | LayerKind::Conv2d { activation, .. }
            | LayerKind::DepthwiseConv2d { activation, .. } => activation,
            LayerKind::Relu => Activation::Relu,
            LayerKind::Relu6 => Activation::Relu6,
            _ => Activation::None,
        }
    }
}

/// A layer's shapes and parameter placement, derived by [`Network::new`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) input: Shape4,
    pub(crate) output: Shape4,
    /// Weight (filter) shape; unused without parameters.
    pub(crate) filter: Shape4,
    /// Convolution or pooling window.
    pub(crate) window: Window,
    /// Pooling window size.
    pub(crate) pool: (usize, usize),
    /// Start of the layer's weights in the parameter buffer; the bias follows them.
    pub(crate) param_offset: usize,
    pub(crate) weights: usize,
    pub(crate) bias: usize,
}

const EMPTY: Resolved = Resolved {
    input: Shape4::new(0, 0, 0, 0),
    output: Shape4::new(0, 0, 0, 0),
    filter: Shape4::new(0, 0, 0, 0),
    window: Window::DENSE,
    pool: (0, 0),
    param_offset: 0,
    weights: 0,
    bias: 0,
};

impl Resolved {
    pub(crate) fn pool_params(&self) -> PoolParams {
        PoolParams {
            window: self.window,
            filter_h: self.pool.0,
            filter_w: self.pool.1,
        }
    }

    pub(crate) fn in_len(&self) -> usize {
        // Checked when the network was built.
        self.input.n * self.input.h * self.input.w * self.input.c
    }

    pub(crate) fn out_len(&self) -> usize {
        self.output.n * self.output.h * self.output.w * self.output.c
    }
}

/// A sequential network of `N` layers over a single-sample input (`n = 1`).
#[derive(Debug, Clone, Copy)]
pub struct Network<const N: usize> {
    input: Shape4,
    layers: [Layer; N],
    pub(crate) resolved: [Resolved; N],
    params: usize,
}

fn invalid<T>(what: crate::Why) -> Result<T, Error> {
    Err(Error::InvalidParameter { what })
}

fn mul(a: usize, b: usize) -> Result<usize, Error> {
    a.checked_mul(b).ok_or(Error::ShapeOverflow)
}

/// The window of a convolution or pooling layer and its output height and width.
fn window(
    input: Shape4,
    (kernel, stride, dilation): ((usize, usize), (usize, usize), (usize, usize)),
    padding: Padding,
) -> Result<WindowFit, Error> {
    Window::for_kernel(input, kernel, padding, stride, dilation).map_or_else(
        || {
            invalid(why!(
                "layer window does not fit its input (or a size, stride or dilation is 0)"
            ))
        },
        Ok,
    )
}

impl<const N: usize> Network<N> {
    /// Checks the layers against `input` (`n` must be 1: one sample at a time) and derives
    /// every layer's shapes and parameter placement. Layers without parameters are set to
    /// [`Train::Frozen`].
    pub fn new(input: Shape4, mut layers: [Layer; N]) -> Result<Self, Error> {
        if N == 0 {
            return invalid(why!("network has no layers"));
        }
        if input.n != 1 {
            return invalid(why!(
                "network input batch (must be 1: samples go one at a time)"
            ));
        }
        let mut resolved = [EMPTY; N];
        let (mut shape, mut params) = (input, 0usize);
        input.elements().ok_or(Error::ShapeOverflow)?;
        for (layer, r) in layers.iter_mut().zip(resolved.iter_mut()) {
            if !layer.has_params() {
                layer.train = Train::Frozen;
            }
            let mut out = shape;
            let (mut weights, mut bias) = (0, 0);
            r.input = shape;
            match layer.kind {
                LayerKind::Dense { outputs, .. } => {
                    if shape.h != 1 || shape.w != 1 {
                        return Err(Error::ShapeMismatch {
                            what: why!("dense input height x width (flatten first)"),
                            expected: 1,
                            actual: mul(shape.h, shape.w)?,
                        });
                    }
                    r.filter = Shape4::new(outputs, 1, 1, shape.c);
                    (weights, bias) = (mul(outputs, shape.c)?, outputs);
                    out = Shape4::new(1, 1, 1, outputs);
                }
                LayerKind::Conv2d {
                    filters,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    ..
                } => {
                    let fit = window(shape, (kernel, stride, dilation), padding)?;
                    r.window = fit.window;
                    r.filter = Shape4::new(filters, kernel.0, kernel.1, shape.c);
                    weights = r.filter.elements().ok_or(Error::ShapeOverflow)?;
                    bias = filters;
                    out = Shape4::new(1, fit.out_h, fit.out_w, filters);
                }
                LayerKind::DepthwiseConv2d {
                    depth_multiplier,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    ..
                } => {
                    let fit = window(shape, (kernel, stride, dilation), padding)?;
                    let out_c = mul(shape.c, depth_multiplier)?;
                    r.window = fit.window;
                    r.filter = Shape4::new(1, kernel.0, kernel.1, out_c);
                    weights = r.filter.elements().ok_or(Error::ShapeOverflow)?;
                    bias = out_c;
                    out = Shape4::new(1, fit.out_h, fit.out_w, out_c);
                }
                LayerKind::AveragePool2d {
                    size,
                    stride,
                    padding,
                }
                | LayerKind::MaxPool2d {
                    size,
                    stride,
                    padding,
                } => {
                    let fit = window(shape, (size, stride, (1, 1)), padding)?;
                    (r.window, r.pool) = (fit.window, size);
                    out = Shape4::new(1, fit.out_h, fit.out_w, shape.c);
                }
                LayerKind::GlobalAveragePool => {
                    r.pool = (shape.h, shape.w);
                    out = Shape4::new(1, 1, 1, shape.c);
                }
                LayerKind::Relu | LayerKind::Relu6 => {}
                LayerKind::Flatten => {
                    out = Shape4::new(1, 1, 1, mul(mul(shape.h, shape.w)?, shape.c)?);
                }
            }
            if out.elements().ok_or(Error::ShapeOverflow)? == 0 {
                return invalid(why!("layer output is empty (a zero size or channel count)"));
            }
            r.output = out;
            r.param_offset = params;
            (r.weights, r.bias) = (weights, bias);
            params = params
                .checked_add(weights)
                .and_then(|p| p.checked_add(bias))
                .ok_or(Error::ShapeOverflow)?;
            shape = out;
        }
        Ok(Self {
            input,
            layers,
            resolved,
            params,
        })
    }

    /// The input shape (`n = 1`).
    pub fn input_shape(&self) -> Shape4 {
        self.input
    }

    /// The output shape of layer `i`, or `None` past the last layer.
    pub fn output_shape(&self, i: usize) -> Option<Shape4> {
        self.resolved.get(i).map(|r| r.output)
    }

    /// The layers, with their training modes.
    pub fn layers(&self) -> &[Layer; N] {
        &self.layers
    }

    /// Number of parameters (f32) of all layers, frozen or not.
    pub fn param_count(&self) -> usize {
        self.params
    }

    /// Where layer `i`'s weights and bias lie in the parameter buffer, or `None` for a layer
    /// without parameters (or past the last layer).
    pub fn param_ranges(
        &self,
        i: usize,
    ) -> Option<(core::ops::Range<usize>, core::ops::Range<usize>)> {
        let r = self.resolved.get(i)?;
        if r.weights + r.bias == 0 {
            return None;
        }
        let w = r.param_offset..r.param_offset + r.weights;
        Some((w.clone(), w.end..w.end + r.bias))
    }

    /// Sets what of layer `i` is trained. A layer without parameters only accepts
    /// [`Train::Frozen`].
    pub fn set_train(&mut self, i: usize, train: Train) -> Result<(), Error> {
        let layer = self.layers.get_mut(i).ok_or(Error::InvalidParameter {
            what: why!("layer index past the last layer"),
        })?;
        if !layer.has_params() && train != Train::Frozen {
            return invalid(why!("layer has no parameters to train"));
        }
        layer.train = train;
        Ok(())
    }

    /// Trains all parameters of the last `k` layers that have parameters and freezes the rest
    /// (`k = 1`: the head only).
    pub fn train_last(&mut self, k: usize) {
        let mut left = k;
        for layer in self.layers.iter_mut().rev().filter(|l| l.has_params()) {
            layer.train = if left > 0 { Train::All } else { Train::Frozen };
            left = left.saturating_sub(1);
        }
    }

    /// Trains the biases of every layer with parameters, and nothing else.
    pub fn train_biases_only(&mut self) {
        for layer in self.layers.iter_mut().filter(|l| l.has_params()) {
            layer.train = Train::BiasOnly;
        }
    }

    /// Fills `params` (of [`param_count`](Self::param_count) values) for training from
    /// scratch: He-uniform weights (`U(-a, a)`, `a = sqrt(6 / fan_in)`) and zero biases, from
    /// a deterministic generator seeded with `seed`.
    pub fn init_params(&self, params: &mut [f32], seed: u64) -> Result<(), Error> {
        for i in 0..N {
            self.init_layer(i, params, seed.wrapping_add(i as u64))?;
        }
        Ok(())
    }

    /// Re-initializes layer `i`'s parameters alone, as [`init_params`](Self::init_params)
    /// does (a layer without parameters is left alone).
    pub fn init_layer(&self, i: usize, params: &mut [f32], seed: u64) -> Result<(), Error> {
        if params.len() != self.params {
            return Err(Error::LengthMismatch {
                expected: self.params,
                actual: params.len(),
            });
        }
        let (Some(r), Some((w, b))) = (self.resolved.get(i), self.param_ranges(i)) else {
            return Ok(());
        };
        let fan_in = match self.layers[i].kind {
            LayerKind::DepthwiseConv2d { .. } => r.filter.h * r.filter.w,
            _ => r.filter.h * r.filter.w * r.filter.c,
        };
        let limit = libm::sqrtf(6.0 / fan_in.max(1) as f32);
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        for v in &mut params[w] {
            *v = limit * uniform(&mut state);
        }
        params[b].fill(0.0);
        Ok(())
    }
}

/// splitmix64, mapped to `[-1, 1)`.
fn uniform(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // 24 random bits: exact in f32.
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// Dequantizes an int8 feature tensor (the output of a frozen int8 backbone run by the
/// [`Interpreter`](crate::Interpreter)) into the f32 input of a trainable head:
/// `output = scale * (q - zero_point)`, as TFLite's DEQUANTIZE.
pub fn dequantize_features(
    scale: f32,
    zero_point: i32,
    features: &[i8],
    output: &mut [f32],
) -> Result<(), Error> {
    crate::ops::quantize::dequantize_i8_f32(scale, zero_point, features, output)
}
