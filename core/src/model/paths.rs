//! Which of the fast kernels' optional paths (mote-core's `kernel-*` cargo features) a model's
//! layers take, so a firmware can link only those.

use super::{Layer, Model};
use crate::ops::{conv_gemm, depthwise_conv2d, depthwise_fast, fc_fast};
use crate::Error;

/// The optional kernel paths, each with its cargo feature.
const PATHS: [&str; 8] = [
    "kernel-conv-table",
    "kernel-conv-gather-runs",
    "kernel-depthwise-general",
    "kernel-fc-general",
    "kernel-conv-tail",
    "kernel-depthwise-fix",
    "kernel-fc-fast",
    "kernel-conv-rect",
];

impl Model<'_> {
    /// The `kernel-*` features of the paths this model's layers take: a firmware built with
    /// these (and the model's operators) runs every layer as one built with all of them does.
    /// A layer whose path is left out runs its reference kernel instead (or fails without
    /// `reference-kernels`).
    pub fn kernel_path_features(&self) -> Result<impl Iterator<Item = &'static str>, Error> {
        let mut needed = [false; PATHS.len()];
        for index in 0..self.op_count() {
            match self.layer(index)? {
                Layer::Conv2d {
                    ref window,
                    ref stage,
                    filter,
                    bias,
                    requant,
                    output,
                    ..
                } => {
                    let output = self.tensor(output)?.shape;
                    let f = filter.shape;
                    let layer = (filter.data, f);
                    needed[0] |= conv_gemm::takes_table(stage, layer, bias, requant, output);
                    needed[1] |= conv_gemm::takes_runs(window, (f.h, f.w, f.c));
                    needed[4] |= conv_gemm::takes_tail(stage, layer, bias, requant, output);
                    needed[7] |= conv_gemm::takes_rect(window, (f.h, f.w, f.c));
                }
                Layer::DepthwiseConv2d {
                    ref window,
                    depth_multiplier,
                    ref stage,
                    input,
                    filter,
                    bias,
                    requant,
                    output,
                    ..
                } => {
                    let (input, output) = (self.tensor(input)?.shape, self.tensor(output)?.shape);
                    let f = filter.shape;
                    let scratch =
                        depthwise_conv2d::scratch_bytes(window, depth_multiplier, input, f, output);
                    let kernel = (f.h, f.w);
                    needed[2] |= depthwise_fast::takes_general(window, kernel, stage, scratch > 0);
                    let consts = (bias, requant, f.c);
                    needed[5] |=
                        depthwise_fast::takes_fix(window, kernel, stage, consts, scratch > 0);
                }
                Layer::FullyConnected {
                    ref stage,
                    input,
                    weights,
                    bias,
                    requant,
                    ..
                } => {
                    needed[3] |= fc_fast::takes_general(stage, weights.shape.c, bias, requant);
                    let in_bytes = self.tensor(input)?.record.byte_len as usize;
                    let rows = in_bytes.checked_div(weights.shape.c).unwrap_or(0);
                    let macs = weights.data.len().saturating_mul(rows);
                    needed[6] |= macs >= fc_fast::FAST_MIN_MACS;
                }
                _ => {}
            }
        }
        // The general path is the fast kernel's: without it, the compact loop runs every layer.
        needed[3] &= needed[6];
        Ok(PATHS
            .into_iter()
            .zip(needed)
            .filter_map(|(f, n)| n.then_some(f)))
    }
}
