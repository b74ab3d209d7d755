//! depthwise_conv2d, computed directly (it is cheap): filter `[1, kh, kw, in * multiplier]`,
//! output channel `ic * multiplier + m` reads input channel `ic` only.

use mote_core::ops::Padding;
use rayon::prelude::*;

use super::tensor::{
    act_backward, add_column_sums, apply_act, CoreAct, Ctx, Geom, Param, SampleShape, Tensor,
};

/// A depthwise convolution.
#[derive(Debug, Clone)]
pub(crate) struct Depthwise {
    pub geom: Geom,
    pub padding: Padding,
    pub in_c: usize,
    pub multiplier: usize,
    pub act: CoreAct,
    pub filter: Param,
    pub bias: Option<Param>,
    cache: Option<(Tensor, Vec<f32>)>,
}

impl Depthwise {
    pub fn new(
        geom: Geom,
        padding: Padding,
        in_c: usize,
        multiplier: usize,
        act: CoreAct,
        filter: Vec<f32>,
        use_bias: bool,
    ) -> Self {
        let oc = in_c * multiplier;
        Self {
            geom,
            padding,
            in_c,
            multiplier,
            act,
            filter: Param::trainable(
                "filter",
                vec![1, geom.rows.kernel, geom.cols.kernel, oc],
                filter,
                true,
            ),
            bias: use_bias.then(|| Param::trainable("bias", vec![oc], vec![0.0; oc], false)),
            cache: None,
        }
    }

    pub fn out_c(&self) -> usize {
        self.in_c * self.multiplier
    }

    pub fn out_shape(&self) -> SampleShape {
        [self.geom.rows.output, self.geom.cols.output, self.out_c()]
    }

    pub fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Tensor {
        let g = self.geom;
        let (c, dm, oc) = (self.in_c, self.multiplier, self.out_c());
        let shape = self.out_shape();
        let mut out = Tensor::zeros(x.n, shape);
        let f = &self.filter.value;
        let per = out.sample_len();
        out.data
            .par_chunks_mut(per)
            .zip(x.data.par_chunks(x.sample_len()))
            .for_each(|(out, x)| {
                for oy in 0..g.rows.output {
                    for ox in 0..g.cols.output {
                        let acc = &mut out[(oy * g.cols.output + ox) * oc..][..oc];
                        for ky in 0..g.rows.kernel {
                            let Some(iy) = g.row(oy, ky) else { continue };
                            for kx in 0..g.cols.kernel {
                                let Some(ix) = g.col(ox, kx) else { continue };
                                let xp = &x[(iy * g.cols.input + ix) * c..][..c];
                                let fk = &f[(ky * g.cols.kernel + kx) * oc..][..oc];
                                if dm == 1 {
                                    // Indexed over slices of exactly `c`: no bounds checks
                                    // even at opt-level 1, unlike iterator chains.
                                    let (a, fk, xp) = (&mut acc[..c], &fk[..c], &xp[..c]);
                                    for ic in 0..c {
                                        a[ic] += xp[ic] * fk[ic];
                                    }
                                } else {
                                    let groups = acc.chunks_exact_mut(dm).zip(fk.chunks_exact(dm));
                                    for ((a, w), &xv) in groups.zip(xp) {
                                        a.iter_mut().zip(w).for_each(|(a, w)| *a += xv * w);
                                    }
                                }
                            }
                        }
                    }
                }
            });
        if let Some(b) = &self.bias {
            for px in out.data.chunks_exact_mut(oc) {
                px.iter_mut().zip(&b.value).for_each(|(o, b)| *o += b);
            }
        }
        apply_act(self.act, &mut out.data);
        if ctx.train {
            let keep = if self.act == CoreAct::None {
                Vec::new()
            } else {
                out.data.clone()
            };
            self.cache = Some((x, keep));
        }
        out
    }

    pub fn backward(&mut self, dy: Tensor) -> Tensor {
        let (x, out) = self
            .cache
            .take()
            .expect("depthwise backward without a training forward");
        let g = self.geom;
        let (c, dm, oc) = (self.in_c, self.multiplier, self.out_c());
        let mut dz = dy.data;
        act_backward(self.act, &out, &mut dz);
        if let Some(b) = &mut self.bias {
            add_column_sums(&dz, oc, &mut b.grad);
        }
        let f = &self.filter.value;
        let mut dx = Tensor::zeros(x.n, x.shape);
        let per_in = x.sample_len();
        let per_out = g.out_pixels() * oc;
        // Each sample writes its own dx and returns its share of the filter gradient, which
        // is then summed in sample order.
        let partials: Vec<Vec<f32>> = dx
            .data
            .par_chunks_mut(per_in)
            .zip(x.data.par_chunks(per_in))
            .zip(dz.par_chunks(per_out))
            .map(|((dx, x), dz)| {
                let mut df = vec![0.0; f.len()];
                for oy in 0..g.rows.output {
                    for ox in 0..g.cols.output {
                        let d = &dz[(oy * g.cols.output + ox) * oc..][..oc];
                        for ky in 0..g.rows.kernel {
                            let Some(iy) = g.row(oy, ky) else { continue };
                            for kx in 0..g.cols.kernel {
                                let Some(ix) = g.col(ox, kx) else { continue };
                                let p = (iy * g.cols.input + ix) * c;
                                let tap = (ky * g.cols.kernel + kx) * oc;
                                let (xp, dxp) = (&x[p..][..c], &mut dx[p..][..c]);
                                let (fk, dfk) = (&f[tap..][..oc], &mut df[tap..][..oc]);
                                if dm == 1 {
                                    let (dfk, dxp, fk, d) =
                                        (&mut dfk[..c], &mut dxp[..c], &fk[..c], &d[..c]);
                                    for ic in 0..c {
                                        dfk[ic] += xp[ic] * d[ic];
                                        dxp[ic] += fk[ic] * d[ic];
                                    }
                                } else {
                                    for ic in 0..c {
                                        let (xv, mut sum) = (xp[ic], 0.0);
                                        for o in ic * dm..(ic + 1) * dm {
                                            dfk[o] += xv * d[o];
                                            sum += fk[o] * d[o];
                                        }
                                        dxp[ic] += sum;
                                    }
                                }
                            }
                        }
                    }
                }
                df
            })
            .collect();
        for part in partials {
            self.filter
                .grad
                .iter_mut()
                .zip(&part)
                .for_each(|(g, v)| *g += v);
        }
        dx
    }
}
