//! What every operator module provides (`Operator`) and the macro that turns the one operator
//! list in [`ops`](super) into the opcode, the decoded-layer enum and every dispatch over them.

use super::{Requant, Tensor, TensorMut};
use crate::cast::Pod;
use crate::format::MAX_OP_INPUTS;
use crate::model::{Decoder, Model, Scratch};
use crate::ops::lower::{LowerError, Lowering};
use crate::ops::record::RecordParams;
use crate::Error;

/// The arena tensors an operator reads and writes while it runs.
#[derive(Debug, Clone, Copy)]
pub struct Io {
    /// Up to four activation inputs.
    pub inputs: [Option<u16>; MAX_OP_INPUTS],
    /// The output.
    pub output: u16,
    /// The kernel's working memory.
    pub scratch: Scratch,
    /// Variable (state) tensors it reads and updates in place.
    pub state: [Option<u16>; 2],
}

impl Io {
    /// One input, one output, maybe scratch.
    pub fn unary(input: u16, output: u16, scratch: Scratch) -> Self {
        Self {
            inputs: [Some(input), None, None, None],
            output,
            scratch,
            state: [None; 2],
        }
    }

    /// One input, one output, maybe scratch, and the state tensors it updates in place.
    pub fn stateful(input: u16, output: u16, scratch: Scratch, state: [Option<u16>; 2]) -> Self {
        Self {
            state,
            ..Self::unary(input, output, scratch)
        }
    }
}

/// A layer with int8 weights (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), decoded:
/// constants borrowed from the blob, activations by tensor index. `P` is the operator's record
/// parameters.
#[derive(Debug, Clone, Copy)]
pub struct Weighted<'a, P> {
    /// Window (convolutions) and output stage.
    pub params: P,
    /// Input tensor.
    pub input: u16,
    /// Weights: OHWI (CONV_2D), 1 x H x W x (C*M) (DEPTHWISE_CONV_2D), out x in
    /// (FULLY_CONNECTED).
    pub weights: Tensor<'a, i8>,
    /// Bias per output channel.
    pub bias: Option<&'a [i32]>,
    /// Requantization per output channel (FULLY_CONNECTED: or one for all).
    pub requant: Requant<'a>,
    /// Output tensor.
    pub output: u16,
    /// The kernel's working memory.
    pub scratch: Scratch,
}

impl<'a, P> Weighted<'a, P> {
    /// What its decoder keeps, once it checked the shapes: the bias and requantization
    /// constants are read here, `requant_counts` being how many of those it may have (the
    /// last, its output channels, is also the bias's length).
    pub(crate) fn decoded(
        d: &Decoder<'_, 'a>,
        params: P,
        (input, weights, output): (u16, Tensor<'a, i8>, u16),
        requant_counts: &[usize],
    ) -> Self {
        let channels = requant_counts.last().copied().unwrap_or(0);
        Weighted {
            params,
            input,
            weights,
            bias: d.bias(2, channels),
            requant: d.requant(requant_counts),
            output,
            scratch: d.scratch(),
        }
    }

    /// Its arena tensors: one input, the output, the scratch.
    pub fn io(&self) -> Io {
        Io::unary(self.input, self.output, self.scratch)
    }

    /// Whether it runs its reference kernel: no fast kernel takes it (`need` is `None`), or
    /// less scratch was planned than the fast kernel needs.
    pub(crate) fn runs_reference(&self, need: Option<usize>) -> bool {
        need.is_none_or(|need| need > self.scratch.len)
    }
}

/// An operator's arena views while it runs: inputs (shared), output and scratch (exclusive).
#[derive(Debug)]
pub struct Views<'x, I, O> {
    /// The inputs [`Io::inputs`] names (empty where it names none).
    pub inputs: [Tensor<'x, I>; MAX_OP_INPUTS],
    /// The output.
    pub output: TensorMut<'x, O>,
    /// The scratch (empty if none was planned).
    pub scratch: &'x mut [u8],
    /// The state tensors [`Io::state`] names, as bytes (empty where it names none).
    pub state: [&'x mut [u8]; 2],
}

/// Everything mote knows about one operator, implemented by its decoded form: its lowering from
/// TFLite, the record's typed parameters, the validation that makes a parsed model safe to run,
/// the tensors it touches, its kernel, its scratch sizing, its MACs and the optional kernel
/// paths it takes.
pub(crate) trait Operator<'a>: Sized + Copy {
    /// The record's parameters (their one encoding: `record_params!`).
    type Params: RecordParams;
    /// Element type of the inputs.
    type In: Pod;
    /// Element type of the output.
    type Out: Pod;
    /// Inputs the record names; the rest must be empty.
    const INPUTS: usize;
    /// Other TFLite names lowered to this operator.
    const TFLITE_ALIASES: &'static [&'static str] = &[];
    /// Whether the output is planned onto the input's bytes (no kernel runs).
    const ALIASES_INPUT: bool = false;
    /// Whether it names state tensors ([`Io::state`]); only such operators link the
    /// interpreter's stateful view of the arena.
    const STATEFUL: bool = false;

    /// Lowers a TFLite operator of this kind to its record (mote-host's builder calls it).
    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError>;

    /// Checks everything the kernel needs against the model's tensors (failures latch in `d`)
    /// and keeps what the kernel needs.
    fn decode(d: &Decoder<'_, 'a>, params: Self::Params) -> Self;

    /// The arena tensors it runs on; `None`: nothing to run (an alias).
    fn io(&self) -> Option<Io>;

    /// Runs the kernel on a layer [`Self::decode`] accepted.
    fn run(&self, views: Views<'_, Self::In, Self::Out>) -> Result<(), Error>;

    /// Scratch bytes the fast kernel wants; `None` if no fast kernel takes the layer.
    fn scratch_need(&self, _model: &Model<'a>) -> Result<Option<usize>, Error> {
        Ok(Some(0))
    }

    /// Multiply-accumulates one run performs (0 for operators without weights).
    fn macs(&self, _model: &Model<'a>) -> Result<u64, Error> {
        Ok(0)
    }

    /// Whether the layer runs a reference kernel (see `Model::needs_reference_kernels`).
    fn needs_reference(&self, _model: &Model<'a>) -> Result<bool, Error> {
        Ok(false)
    }

    /// Adds the optional kernel paths the layer takes.
    fn kernel_paths(&self, _model: &Model<'a>, _paths: &mut KernelPaths) -> Result<(), Error> {
        Ok(())
    }
}

/// Defines the optional kernel paths (mote-core's `kernel-*` features) and their set.
macro_rules! kernel_paths {
    ($($(#[$meta:meta])* $path:ident => $feature:literal,)*) => {
        /// An optional path of the fast kernels, each behind a `kernel-*` cargo feature.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum KernelPath {
            $($(#[$meta])* $path,)*
        }

        impl KernelPath {
            /// Every path.
            pub const ALL: &'static [KernelPath] = &[$(KernelPath::$path,)*];

            /// Its cargo feature.
            pub const fn feature(self) -> &'static str {
                match self {
                    $(KernelPath::$path => $feature,)*
                }
            }

            /// Whether this build has it.
            pub const fn is_built(self) -> bool {
                match self {
                    $(KernelPath::$path => cfg!(feature = $feature),)*
                }
            }
        }
    };
}

kernel_paths! {
    /// CONV_2D layers with a channel outside the assembly's output stage (channel-pair tables).
    ConvTable => "kernel-conv-table",
    /// CONV_2D windows gathered run by run (dilated, longer than a column, ragged channels).
    ConvGatherRuns => "kernel-conv-gather-runs",
    /// DEPTHWISE_CONV_2D layers other than 3x3 with dilation 1.
    DepthwiseGeneral => "kernel-depthwise-general",
    /// FULLY_CONNECTED layers without one shared output stage.
    FcGeneral => "kernel-fc-general",
    /// CONV_2D layers whose table-free loop leaves channels to Rust.
    ConvTail => "kernel-conv-tail",
    /// 3x3 DEPTHWISE_CONV_2D layers with a dead or slow channel.
    DepthwiseFix => "kernel-depthwise-fix",
    /// The fast FULLY_CONNECTED kernel (layers of at least 4096 MACs).
    FcFast => "kernel-fc-fast",
    /// CONV_2D windows gathered as rectangles of whole-word channels.
    ConvRect => "kernel-conv-rect",
    /// SOFTMAX layers with an int16 output.
    SoftmaxInt16 => "kernel-softmax-int16",
    /// DEPTHWISE_CONV_2D layers the four-channel kernel does not take, a channel at a time.
    DepthwisePlane => "kernel-depthwise-plane",
}

/// A set of [`KernelPath`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelPaths(u32);

impl KernelPaths {
    /// Adds `path` if `taken`.
    pub fn take(&mut self, path: KernelPath, taken: bool) {
        if taken {
            self.0 |= 1 << path as u32;
        }
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: KernelPath) -> bool {
        self.0 & (1 << path as u32) != 0
    }

    /// Removes `path`.
    pub fn remove(&mut self, path: KernelPath) {
        self.0 &= !(1 << path as u32);
    }

    /// The paths in the set.
    pub fn iter(self) -> impl Iterator<Item = KernelPath> {
        KernelPath::ALL
            .iter()
            .copied()
            .filter(move |&p| self.contains(p))
    }
}

/// Generates, from the operator list: [`OpCode`](super::OpCode) (its byte, TFLite name, cargo
/// feature, whether this build has it), [`Layer`](super::Layer) (one variant per operator,
/// holding its decoded form) and the decoder's and interpreter's dispatch.
macro_rules! operators {
    ($lt:lifetime; $(
        $(#[$meta:meta])*
        $code:literal => $op:ident($($ty:tt)+), $name:literal $(, feature $feature:literal)?;
    )*) => {
        /// Operator codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        pub enum OpCode {
            $($(#[$meta])* $op = $code,)*
        }

        impl OpCode {
            /// Every operator.
            pub const ALL: &'static [OpCode] = &[$(OpCode::$op,)*];

            /// Decodes an opcode byte.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($code => Some(OpCode::$op),)*
                    _ => None,
                }
            }

            /// The operator's name as TFLite spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $(OpCode::$op => $name,)*
                }
            }

            /// [`Self::name`] interned: a device log sends its index, and the words stay out of
            /// flash.
            #[cfg(feature = "defmt")]
            pub fn interned_name(self) -> defmt::Str {
                match self {
                    $(OpCode::$op => defmt::intern!($name),)*
                }
            }

            /// mote-core's cargo feature that builds the operator's kernel (`None`: it has
            /// none, e.g. RESHAPE); firmware links only the features its model needs.
            pub const fn feature(self) -> Option<&'static str> {
                match self {
                    $(OpCode::$op => operators!(@feature $($feature)?),)*
                }
            }

            /// The operator TFLite's builtin `name` lowers to, if mote has it.
            #[allow(clippy::extra_unused_lifetimes)]
            pub fn from_tflite<$lt>(name: &str) -> Option<Self> {
                $(
                    if name == $name || <$($ty)+ as Operator<$lt>>::TFLITE_ALIASES.contains(&name) {
                        return Some(OpCode::$op);
                    }
                )*
                None
            }

            /// The other TFLite names lowered to it.
            #[allow(clippy::extra_unused_lifetimes)]
            pub fn tflite_aliases<$lt>(self) -> &'static [&'static str] {
                match self {
                    $(OpCode::$op => <$($ty)+ as Operator<$lt>>::TFLITE_ALIASES,)*
                }
            }

            /// Inputs its record names.
            #[allow(clippy::extra_unused_lifetimes)]
            pub(crate) fn record_inputs<$lt>(self) -> usize {
                match self {
                    $(OpCode::$op => <$($ty)+ as Operator<$lt>>::INPUTS,)*
                }
            }

            /// Whether its output is planned onto its input's bytes (no kernel runs).
            #[allow(clippy::extra_unused_lifetimes)]
            pub fn aliases_input<$lt>(self) -> bool {
                match self {
                    $(OpCode::$op => <$($ty)+ as Operator<$lt>>::ALIASES_INPUT,)*
                }
            }

            /// Lowers a TFLite operator of this kind (see [`Lowering::run`]).
            #[allow(clippy::extra_unused_lifetimes)]
            pub(crate) fn lower<$lt>(self, cx: &mut Lowering<'_>) -> Result<(), LowerError> {
                match self {
                    $(OpCode::$op => <$($ty)+ as Operator<$lt>>::lower(cx),)*
                }
            }

            /// Whether this build of mote-core has the operator's kernel.
            pub const fn is_built(self) -> bool {
                match self {
                    $(OpCode::$op => operators!(@built $($feature)?),)*
                }
            }
        }

        /// One operator, decoded and validated: constants borrowed from the blob, activations
        /// by tensor index.
        #[derive(Debug, Clone, Copy)]
        #[non_exhaustive]
        pub enum Layer<$lt> {
            $($(#[$meta])* $op($($ty)+),)*
        }

        impl<$lt> Layer<$lt> {
            /// Decodes operator `d`'s record (its opcode is valid); a check that fails is
            /// latched in `d`.
            pub(crate) fn decode(d: &Decoder<'_, $lt>) -> Result<Self, Error> {
                match d.opcode() {
                    $(OpCode::$op if OpCode::$op.is_built() => {
                        d.result(Layer::$op(d.decode_op::<$($ty)+>()))
                    })*
                    _ => Err(d.not_built()),
                }
            }

            /// Its operator.
            pub fn opcode(&self) -> OpCode {
                match self {
                    $(Layer::$op(_) => OpCode::$op,)*
                }
            }

            /// What it reads and writes in the arena; `None`: nothing to run.
            pub fn io(&self) -> Option<Io> {
                match self {
                    $(Layer::$op(l) if OpCode::$op.is_built() => Operator::io(l),)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// Its planned scratch (empty if none).
            pub fn scratch(&self) -> Scratch {
                self.io().map(|io| io.scratch).unwrap_or_default()
            }

            /// Runs the layer's kernel over the arena.
            pub(crate) fn run(&self, arena: &mut [u8], model: &Model<$lt>) -> Result<(), Error> {
                match self {
                    // The `is_built` test is a constant: the arms of operators left out are
                    // not in flash.
                    $(Layer::$op(l) if OpCode::$op.is_built() => run_layer(l, arena, model),)*
                    #[allow(unreachable_patterns)]
                    _ => Err(Error::InvalidParameter {
                        what: why!("operator not built in (its mote-core op-* feature is off)"),
                    }),
                }
            }

            /// Scratch bytes its fast kernel wants; `None` if no fast kernel takes it.
            pub fn scratch_need(&self, model: &Model<$lt>) -> Result<Option<usize>, Error> {
                match self {
                    $(Layer::$op(l) if OpCode::$op.is_built() => l.scratch_need(model),)*
                    #[allow(unreachable_patterns)]
                    _ => Ok(None),
                }
            }

            /// Multiply-accumulates one run performs (0 for operators without weights).
            pub fn macs(&self, model: &Model<$lt>) -> Result<u64, Error> {
                match self {
                    $(Layer::$op(l) if OpCode::$op.is_built() => l.macs(model),)*
                    #[allow(unreachable_patterns)]
                    _ => Ok(0),
                }
            }

            /// Whether it runs a reference kernel.
            pub fn needs_reference(&self, model: &Model<$lt>) -> Result<bool, Error> {
                match self {
                    $(Layer::$op(l) if OpCode::$op.is_built() => l.needs_reference(model),)*
                    #[allow(unreachable_patterns)]
                    _ => Ok(false),
                }
            }

            /// For operator `op`: decodes `slots` as its parameters and, if they are valid,
            /// encodes them again. `Some((used, encoded))` with the slots they take.
            #[cfg(test)]
            pub(crate) fn params_round_trip(
                op: OpCode,
                slots: &[i32; crate::format::OP_PARAMS],
            ) -> Option<(usize, [i32; crate::format::OP_PARAMS])> {
use crate::ops::record::RecordParams;
                match op {
                    $(OpCode::$op => {
                        type P<$lt> = <$($ty)+ as Operator<$lt>>::Params;
                        let params = P::decode(slots).ok()?;
                        Some((P::slots(), params.encode()?))
                    })*
                }
            }

            /// Adds the optional kernel paths it takes to `paths`.
            pub fn kernel_paths(
                &self,
                model: &Model<$lt>,
                paths: &mut KernelPaths,
            ) -> Result<(), Error> {
                match self {
                    $(Layer::$op(l) if OpCode::$op.is_built() => l.kernel_paths(model, paths),)*
                    #[allow(unreachable_patterns)]
                    _ => Ok(()),
                }
            }
        }
    };
    (@feature $feature:literal) => { Some($feature) };
    (@feature) => { None };
    (@built $feature:literal) => { cfg!(feature = $feature) };
    (@built) => { true };
}

pub(crate) use operators;

/// Borrows `layer`'s tensors from the arena and runs its kernel. Not inlined into the dispatch
/// over every operator, whose frame would otherwise be the largest kernel's for every layer.
#[inline(never)]
pub(crate) fn run_layer<'a, L: Operator<'a>>(
    layer: &L,
    arena: &mut [u8],
    model: &Model<'a>,
) -> Result<(), Error> {
    match (layer.io(), L::STATEFUL) {
        (Some(io), false) => layer.run(crate::interpreter::views(arena, model, io)?),
        (Some(io), true) => layer.run(crate::interpreter::views_with_state(arena, model, io)?),
        (None, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::KernelPath;
    use crate::ops::OpCode;

    /// The features core/Cargo.toml declares with `name = [...]` and those `all-ops` lists.
    fn manifest_features() -> (Vec<String>, Vec<String>) {
        let manifest = include_str!("../../Cargo.toml");
        let features = manifest.split("[features]").nth(1).unwrap_or("");
        let features = features.split("\n[").next().unwrap_or("");
        let declared = features
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim().to_string()))
            .collect();
        let all_ops = features.split("all-ops = [").nth(1).unwrap_or("");
        let all_ops = all_ops.split(']').next().unwrap_or("");
        let listed = all_ops
            .split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .filter(|f| !f.is_empty())
            .collect();
        (declared, listed)
    }

    /// The operator list and the kernel paths are the one source of the cargo features: each
    /// has its feature in core/Cargo.toml and in `all-ops`, and no other op-*/kernel-*
    /// feature exists.
    #[test]
    fn cargo_features_follow_the_operator_list() {
        let (declared, all_ops) = manifest_features();
        let mut expected: Vec<&str> = OpCode::ALL.iter().filter_map(|op| op.feature()).collect();
        expected.extend(KernelPath::ALL.iter().map(|p| p.feature()));
        expected.sort_unstable();
        expected.dedup();
        let mut found: Vec<&str> = declared
            .iter()
            .map(String::as_str)
            .filter(|f| f.starts_with("op-") || f.starts_with("kernel-"))
            .collect();
        found.sort_unstable();
        assert_eq!(found, expected, "op-*/kernel-* features in core/Cargo.toml");
        for feature in &expected {
            assert!(
                all_ops.iter().any(|f| f == feature),
                "all-ops lacks {feature}"
            );
        }
    }
}
