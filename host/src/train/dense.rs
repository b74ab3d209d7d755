//! dense (fully connected): weights `[out, in]` as mote-core takes them, GEMMs over the batch.

use super::tensor::{
    act_backward, add_column_sums, apply_act, par_gemm, par_gemm_tn_acc, row_major, transposed,
    CoreAct, Ctx, Param, Tensor,
};

/// A fully connected layer on flat `[1, 1, inputs]` samples.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub act: CoreAct,
    pub weights: Param,
    pub bias: Option<Param>,
    cache: Option<(Tensor, Vec<f32>)>,
}

impl Dense {
    pub fn new(
        inputs: usize,
        outputs: usize,
        act: CoreAct,
        weights: Vec<f32>,
        use_bias: bool,
    ) -> Self {
        Self {
            inputs,
            outputs,
            act,
            weights: Param::trainable("weights", vec![outputs, inputs], weights, true),
            bias: use_bias
                .then(|| Param::trainable("bias", vec![outputs], vec![0.0; outputs], false)),
            cache: None,
        }
    }

    pub fn forward(&mut self, x: Tensor, ctx: &mut Ctx) -> Tensor {
        let (n, i, o) = (x.n, self.inputs, self.outputs);
        let mut out = par_gemm(n, i, o, &x.data, &self.weights.value, transposed(i));
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(o) {
                row.iter_mut().zip(&b.value).for_each(|(y, b)| *y += b);
            }
        }
        apply_act(self.act, &mut out);
        if ctx.train {
            let keep = if self.act == CoreAct::None {
                Vec::new()
            } else {
                out.clone()
            };
            self.cache = Some((x, keep));
        }
        Tensor {
            n,
            shape: [1, 1, o],
            data: out,
        }
    }

    pub fn backward(&mut self, dy: Tensor) -> Tensor {
        let (x, out) = self
            .cache
            .take()
            .expect("dense backward without a training forward");
        let (n, i, o) = (x.n, self.inputs, self.outputs);
        let mut dz = dy.data;
        act_backward(self.act, &out, &mut dz);
        if let Some(b) = &mut self.bias {
            add_column_sums(&dz, o, &mut b.grad);
        }
        par_gemm_tn_acc(n, o, i, &dz, &x.data, &mut self.weights.grad);
        let dx = par_gemm(n, o, i, &dz, &self.weights.value, row_major(i));
        Tensor {
            n,
            shape: x.shape,
            data: dx,
        }
    }
}
