//! Which of the fast kernels' optional paths (mote-core's `kernel-*` cargo features) a model's
//! layers take, so a firmware can link only those.

use super::Model;
use crate::format::OpCode;
use crate::ops::operator::KernelPaths;
use crate::ops::KernelPath;
use crate::Error;

impl Model<'_> {
    /// The optional kernel paths this model's layers take: a firmware built with their
    /// features (and the model's operators) runs every layer as one built with all of them
    /// does. A layer whose path is left out runs its reference kernel instead (or fails
    /// without `reference-kernels`).
    pub fn kernel_paths(&self) -> Result<impl Iterator<Item = KernelPath>, Error> {
        let mut paths = KernelPaths::default();
        for index in 0..self.op_count() {
            self.layer(index)?.kernel_paths(self, &mut paths)?;
        }
        // The general path is the fast kernel's: without it, the compact loop runs every layer.
        if !paths.contains(KernelPath::FcFast) {
            paths.remove(KernelPath::FcGeneral);
        }
        Ok(paths.iter())
    }

    /// The `kernel-*` features of [`Self::kernel_paths`].
    pub fn kernel_path_features(&self) -> Result<impl Iterator<Item = &'static str>, Error> {
        Ok(self.kernel_paths()?.map(KernelPath::feature))
    }
}

/// A mote-core cargo feature a firmware needs to run a model. [`Display`](core::fmt::Display)
/// writes the Rust `const` assertion that makes a build without it fail to compile, naming the
/// feature: generated `model.rs` files hold one per requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// An operator's kernel (`op-*`).
    Operator(OpCode),
    /// The reference kernels some layer runs.
    ReferenceKernels,
    /// An optional fast-kernel path (`kernel-*`; the reference kernels also do).
    KernelPath(KernelPath),
}

impl Requirement {
    /// The cargo feature.
    pub fn feature(&self) -> &'static str {
        match self {
            Requirement::Operator(op) => op.feature().unwrap_or("all-ops"),
            Requirement::ReferenceKernels => "reference-kernels",
            Requirement::KernelPath(path) => path.feature(),
        }
    }
}

impl Requirement {
    /// Whether this build of mote-core has the feature (what the generated `const`
    /// assertion checks at compile time, for a model known only at run time).
    pub const fn is_built(&self) -> bool {
        match self {
            Requirement::Operator(op) => op.is_built(),
            Requirement::ReferenceKernels => crate::ops::reference_kernels_built(),
            Requirement::KernelPath(path) => {
                path.is_built() || crate::ops::reference_kernels_built()
            }
        }
    }
}

impl core::fmt::Display for Requirement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let feature = self.feature();
        match self {
            Requirement::Operator(op) => write!(
                f,
                "const _: () = assert!(mote_core::format::OpCode::{op:?}.is_built(), \
                 \"the model uses {}: enable mote-core's cargo feature {feature}\");",
                op.name()
            ),
            Requirement::ReferenceKernels => write!(
                f,
                "const _: () = assert!(mote_core::ops::reference_kernels_built(), \"a layer of \
                 the model runs a reference kernel: enable mote-core's cargo feature {feature}\");"
            ),
            Requirement::KernelPath(path) => write!(
                f,
                "const _: () = assert!(mote_core::ops::KernelPath::{path:?}.is_built() || \
                 mote_core::ops::reference_kernels_built(), \"a layer of the model takes the \
                 fast kernel path {feature}: enable mote-core's cargo feature {feature} (or \
                 reference-kernels, slower)\");"
            ),
        }
    }
}

impl Model<'_> {
    /// What a firmware running this model needs: each operator kind with a feature (in opcode
    /// order, once), the reference kernels if a layer runs one, and each fast-kernel path.
    pub fn requirements(&self) -> Result<impl Iterator<Item = Requirement> + '_, Error> {
        let mut used = [false; 256];
        for index in 0..self.op_count() {
            used[usize::from(self.op(index)?.opcode as u8)] = true;
        }
        let operators = (0..=255u8)
            .filter(move |&code| used[usize::from(code)])
            .filter_map(OpCode::from_u8)
            .filter(|op| op.feature().is_some())
            .map(Requirement::Operator);
        let reference = self
            .needs_reference_kernels()?
            .then_some(Requirement::ReferenceKernels);
        Ok(operators
            .chain(reference)
            .chain(self.kernel_paths()?.map(Requirement::KernelPath)))
    }
}
