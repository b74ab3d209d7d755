//! Which of the fast kernels' optional paths (mote-core's `kernel-*` cargo features) a model's
//! layers take, so a firmware can link only those.

use super::Model;
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
