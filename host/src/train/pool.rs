//! max_pool, avg_pool and global_avg_pool. As in mote-core (and TFLite), each window is
//! clipped to the input: padding is never summed, counted or taken as a maximum.

use std::ops::Range;

use rayon::prelude::*;

use super::tensor::{Ctx, Geom, SampleShape, Tensor};

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    Max,
    Avg,
}

/// A pooling layer (global average pooling is an average over the whole input, VALID).
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub kind: PoolKind,
    pub geom: Geom,
    pub channels: usize,
    /// Max pooling: for each output value, the index (within its sample) of the input it took.
    argmax: Option<Vec<u32>>,
}

impl Pool {
    pub fn new(kind: PoolKind, geom: Geom, channels: usize) -> Self {
        Self {
            kind,
            geom,
            channels,
            argmax: None,
        }
    }

    pub fn out_shape(&self) -> SampleShape {
        [self.geom.rows.output, self.geom.cols.output, self.channels]
    }

    fn in_shape(&self) -> SampleShape {
        [self.geom.rows.input, self.geom.cols.input, self.channels]
    }

    /// The in-bounds window of an output pixel: input rows and columns, clipped as
    /// mote-core's pooling clips them.
    fn window(&self, oy: usize, ox: usize) -> (Range<usize>, Range<usize>) {
        (self.geom.rows.clipped(oy), self.geom.cols.clipped(ox))
    }

    pub fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Tensor {
        let g = self.geom;
        let c = self.channels;
        let mut out = Tensor::zeros(x.n, self.out_shape());
        let per_out = out.sample_len();
        let mut argmax = vec![0u32; out.data.len()];
        let windows: Vec<_> = (0..g.rows.output)
            .flat_map(|oy| (0..g.cols.output).map(move |ox| (oy, ox)))
            .map(|(oy, ox)| self.window(oy, ox))
            .collect();
        let kind = self.kind;
        out.data
            .par_chunks_mut(per_out)
            .zip(x.data.par_chunks(x.sample_len()))
            .zip(argmax.par_chunks_mut(per_out))
            .for_each(|((out, x), arg)| {
                for (p, (rows, cols)) in windows.iter().enumerate() {
                    for ch in 0..c {
                        let o = p * c + ch;
                        let at = |y: usize, xx: usize| (y * g.cols.input + xx) * c + ch;
                        match kind {
                            PoolKind::Avg => {
                                // Row-major order, as mote-core sums.
                                let mut sum = 0.0f32;
                                for y in rows.clone() {
                                    for xx in cols.clone() {
                                        sum += x[at(y, xx)];
                                    }
                                }
                                out[o] = sum / (rows.len() * cols.len()) as f32;
                            }
                            PoolKind::Max => {
                                // mote-core folds f32::MIN with max; the first maximum gets
                                // the gradient.
                                let (mut best, mut arg_at) = (f32::MIN, at(rows.start, cols.start));
                                for y in rows.clone() {
                                    for xx in cols.clone() {
                                        if x[at(y, xx)] > best {
                                            best = x[at(y, xx)];
                                            arg_at = at(y, xx);
                                        }
                                    }
                                }
                                out[o] = best;
                                arg[o] = arg_at as u32;
                            }
                        }
                    }
                }
            });
        if ctx.train && kind == PoolKind::Max {
            self.argmax = Some(argmax);
        }
        out
    }

    pub fn backward(&mut self, dy: Tensor) -> Tensor {
        let g = self.geom;
        let c = self.channels;
        let mut dx = Tensor::zeros(dy.n, self.in_shape());
        let per_in = dx.sample_len();
        let per_out = dy.sample_len();
        match self.kind {
            PoolKind::Max => {
                let argmax = self
                    .argmax
                    .take()
                    .expect("max_pool backward without a training forward");
                dx.data
                    .par_chunks_mut(per_in)
                    .zip(dy.data.par_chunks(per_out))
                    .zip(argmax.par_chunks(per_out))
                    .for_each(|((dx, dy), arg)| {
                        for (d, &a) in dy.iter().zip(arg) {
                            dx[a as usize] += d;
                        }
                    });
            }
            PoolKind::Avg => {
                let windows: Vec<_> = (0..g.rows.output)
                    .flat_map(|oy| (0..g.cols.output).map(move |ox| (oy, ox)))
                    .map(|(oy, ox)| self.window(oy, ox))
                    .collect();
                dx.data
                    .par_chunks_mut(per_in)
                    .zip(dy.data.par_chunks(per_out))
                    .for_each(|(dx, dy)| {
                        for (p, (rows, cols)) in windows.iter().enumerate() {
                            let scale = 1.0 / (rows.len() * cols.len()) as f32;
                            for ch in 0..c {
                                let d = dy[p * c + ch] * scale;
                                for y in rows.clone() {
                                    for xx in cols.clone() {
                                        dx[(y * g.cols.input + xx) * c + ch] += d;
                                    }
                                }
                            }
                        }
                    });
            }
        }
        dx
    }
}
