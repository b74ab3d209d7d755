//! conv2d: im2col then one GEMM over the whole batch, OHWI filters as mote-core takes them.

use mote_core::ops::Padding;
use rayon::prelude::*;

use super::tensor::{
    act_backward, add_column_sums, apply_act, par_gemm, par_gemm_tn_acc, row_major, transposed,
    CoreAct, Ctx, Geom, Param, SampleShape, Tensor,
};

/// A 2-D convolution. `filter` is `[out, kh, kw, in]`; im2col rows are output pixels and
/// columns `(ky, kx, c)`, so one filter row is exactly one row of the OHWI buffer.
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    pub geom: Geom,
    pub padding: Padding,
    pub in_c: usize,
    pub out_c: usize,
    pub act: CoreAct,
    pub filter: Param,
    pub bias: Option<Param>,
    cache: Option<Cache>,
}

#[derive(Debug, Clone)]
struct Cache {
    n: usize,
    /// The im2col matrix `[n * pixels, kh * kw * in]` (the input itself for a plain 1x1).
    col: Vec<f32>,
    /// The activation's output, when there is one (its derivative is read from it).
    out: Vec<f32>,
}

impl Conv2d {
    pub fn new(
        geom: Geom,
        padding: Padding,
        in_c: usize,
        out_c: usize,
        act: CoreAct,
        filter: Vec<f32>,
        use_bias: bool,
    ) -> Self {
        let shape = vec![out_c, geom.rows.kernel, geom.cols.kernel, in_c];
        Self {
            geom,
            padding,
            in_c,
            out_c,
            act,
            filter: Param::trainable("filter", shape, filter, true),
            bias: use_bias.then(|| Param::trainable("bias", vec![out_c], vec![0.0; out_c], false)),
            cache: None,
        }
    }

    /// Taps per output value.
    fn k(&self) -> usize {
        self.geom.rows.kernel * self.geom.cols.kernel * self.in_c
    }

    /// A 1x1 stride-1 convolution reads its input as the im2col matrix.
    fn is_plain_pointwise(&self) -> bool {
        let g = &self.geom;
        [g.rows, g.cols]
            .iter()
            .all(|a| a.kernel == 1 && a.stride == 1 && a.pad == 0)
    }

    pub fn out_shape(&self) -> SampleShape {
        [self.geom.rows.output, self.geom.cols.output, self.out_c]
    }

    fn im2col(&self, x: &Tensor) -> Vec<f32> {
        let g = self.geom;
        let (k, c) = (self.k(), self.in_c);
        let per = g.out_pixels() * k;
        let mut col = vec![0.0; x.n * per];
        col.par_chunks_mut(per.max(1))
            .zip(x.data.par_chunks(x.sample_len().max(1)))
            .for_each(|(col, x)| {
                for oy in 0..g.rows.output {
                    for ox in 0..g.cols.output {
                        let row = &mut col[(oy * g.cols.output + ox) * k..][..k];
                        for ky in 0..g.rows.kernel {
                            let Some(iy) = g.row(oy, ky) else { continue };
                            for kx in 0..g.cols.kernel {
                                let Some(ix) = g.col(ox, kx) else { continue };
                                row[(ky * g.cols.kernel + kx) * c..][..c]
                                    .copy_from_slice(&x[(iy * g.cols.input + ix) * c..][..c]);
                            }
                        }
                    }
                }
            });
        col
    }

    fn col2im(&self, dcol: &[f32], n: usize) -> Vec<f32> {
        let g = self.geom;
        let (k, c) = (self.k(), self.in_c);
        let sample = g.rows.input * g.cols.input * c;
        let mut dx = vec![0.0; n * sample];
        dx.par_chunks_mut(sample.max(1))
            .zip(dcol.par_chunks((g.out_pixels() * k).max(1)))
            .for_each(|(dx, dcol)| {
                for oy in 0..g.rows.output {
                    for ox in 0..g.cols.output {
                        let row = &dcol[(oy * g.cols.output + ox) * k..][..k];
                        for ky in 0..g.rows.kernel {
                            let Some(iy) = g.row(oy, ky) else { continue };
                            for kx in 0..g.cols.kernel {
                                let Some(ix) = g.col(ox, kx) else { continue };
                                let src = &row[(ky * g.cols.kernel + kx) * c..][..c];
                                let dst = &mut dx[(iy * g.cols.input + ix) * c..][..c];
                                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                }
            });
        dx
    }

    pub fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Tensor {
        let n = x.n;
        let m = n * self.geom.out_pixels();
        let k = self.k();
        let col = if self.is_plain_pointwise() {
            x.data
        } else {
            self.im2col(&x)
        };
        let mut out = par_gemm(m, k, self.out_c, &col, &self.filter.value, transposed(k));
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(self.out_c) {
                row.iter_mut().zip(&b.value).for_each(|(o, b)| *o += b);
            }
        }
        apply_act(self.act, &mut out);
        if ctx.train {
            let keep = if self.act == CoreAct::None {
                Vec::new()
            } else {
                out.clone()
            };
            self.cache = Some(Cache { n, col, out: keep });
        }
        Tensor {
            n,
            shape: self.out_shape(),
            data: out,
        }
    }

    pub fn backward(&mut self, dy: Tensor) -> Tensor {
        let cache = self
            .cache
            .take()
            .expect("conv2d backward without a training forward");
        let (n, k, oc) = (cache.n, self.k(), self.out_c);
        let m = n * self.geom.out_pixels();
        let mut dz = dy.data;
        act_backward(self.act, &cache.out, &mut dz);
        if let Some(b) = &mut self.bias {
            add_column_sums(&dz, oc, &mut b.grad);
        }
        // dW[oc x k] += dz^T * col.
        par_gemm_tn_acc(m, oc, k, &dz, &cache.col, &mut self.filter.grad);
        // dcol[m x k] = dz * W.
        let dcol = par_gemm(m, oc, k, &dz, &self.filter.value, row_major(k));
        let data = if self.is_plain_pointwise() {
            dcol
        } else {
            self.col2im(&dcol, n)
        };
        Tensor {
            n,
            shape: [self.geom.rows.input, self.geom.cols.input, self.in_c],
            data,
        }
    }
}
