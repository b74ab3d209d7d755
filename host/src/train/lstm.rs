//! lstm: a Keras LSTM over `[1, steps, features]` sequences, run one step at a time for the
//! whole batch (one GEMM for every step's input projection, one small GEMM per step for the
//! recurrence), with backpropagation through time.
//!
//! The parameters are stored as TFLite takes them, so export only slices them: input weights
//! `[4 * units, features]`, recurrent weights `[4 * units, units]`, bias `[4 * units]`, each
//! in four blocks of `units` rows for the gates i, f, c (candidate), o. The element-wise cell
//! update is [`lstm_cell`](crate::float_model::lstm_cell), shared with the float model.

use super::tensor::{
    add_column_sums, gemm, par_gemm, par_gemm_tn_acc, row_major, transposed, Ctx, Param, Rng,
    SampleShape, Tensor,
};
use crate::float_model::lstm_cell;

/// Every step's states, time-major (`[steps, n, units]`), as the forward pass computed them.
#[derive(Debug, Clone)]
pub(crate) struct States {
    /// The gates' activations `[steps, n, 4 * units]`: i, f, g, o per sample.
    gates: Vec<f32>,
    /// The cell state `c_t`.
    cells: Vec<f32>,
    /// The hidden state `h_t` (the layer's output at each step).
    hidden: Vec<f32>,
}

/// What backward needs from the training forward pass.
#[derive(Debug, Clone)]
struct Cache {
    n: usize,
    /// The input, time-major `[steps, n, features]`.
    x: Vec<f32>,
    states: States,
}

/// An LSTM layer (Keras semantics, zero initial state per sample).
#[derive(Debug, Clone)]
pub(crate) struct Lstm {
    pub steps: usize,
    pub features: usize,
    pub units: usize,
    pub return_sequences: bool,
    /// `[4 * units, features]`.
    pub weights: Param,
    /// `[4 * units, units]`.
    pub recurrent: Param,
    /// `[4 * units]`.
    pub bias: Param,
    cache: Option<Cache>,
}

/// The layer's states for one batch, batch-major, for `forward_capture`.
pub(crate) struct Captured {
    /// `[n, 1, steps, units]` hidden states.
    pub hidden: Tensor,
    /// `[n, 1, steps, units]` cell states.
    pub cells: Tensor,
}

/// `[a, b, k]` row-major to `[b, a, k]`: batch-major to time-major and back.
fn swap_outer(data: &[f32], a: usize, b: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * k..][..k].copy_from_slice(&data[(i * b + j) * k..][..k]);
        }
    }
    out
}

/// A `rows x cols` matrix (`rows >= cols`) with orthonormal columns: Gram-Schmidt on a normal
/// draw, as Keras' `Orthogonal` initializer gives the recurrent kernel (its QR has the same
/// distribution). Row-major, so with `rows = 4 * units, cols = units` it is the transpose of
/// Keras' `[units, 4 * units]` kernel with orthonormal rows.
pub(crate) fn orthogonal(rows: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut q: Vec<Vec<f64>> = (0..cols)
        .map(|_| (0..rows).map(|_| rng.normal()).collect())
        .collect();
    for j in 0..cols {
        // Twice, for columns that stay orthogonal in floating point.
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = q[j].iter().zip(&q[k]).map(|(a, b)| a * b).sum();
                let (head, tail) = q.split_at_mut(j);
                tail[0]
                    .iter_mut()
                    .zip(&head[k])
                    .for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = q[j].iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        q[j].iter_mut().for_each(|v| *v /= norm);
    }
    let mut out = vec![0.0; rows * cols];
    for (j, col) in q.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            out[i * cols + j] = *v as f32;
        }
    }
    out
}

impl Lstm {
    /// A layer on `[1, steps, features]` inputs; `bias` starts at Keras' `unit_forget_bias`
    /// (1 for the forget gate, 0 elsewhere), so early training does not forget everything.
    pub fn new(
        input: SampleShape,
        units: usize,
        return_sequences: bool,
        weights: Vec<f32>,
        recurrent: Vec<f32>,
    ) -> Self {
        let [_, steps, features] = input;
        let mut bias = vec![0.0; 4 * units];
        bias[units..2 * units].iter_mut().for_each(|b| *b = 1.0);
        Self {
            steps,
            features,
            units,
            return_sequences,
            weights: Param::trainable("weights", vec![4 * units, features], weights, true),
            recurrent: Param::trainable(
                "recurrent_weights",
                vec![4 * units, units],
                recurrent,
                true,
            ),
            bias: Param::trainable("bias", vec![4 * units], bias, false),
            cache: None,
        }
    }

    pub fn out_shape(&self) -> SampleShape {
        if self.return_sequences {
            [1, self.steps, self.units]
        } else {
            [1, 1, self.units]
        }
    }

    /// Runs the sequence; `x` is time-major `[steps, n, features]`.
    fn run(&self, x: &[f32], n: usize) -> States {
        let (t, f, u) = (self.steps, self.features, self.units);
        let g = 4 * u;
        // Every step's input projection at once; the recurrence is added step by step.
        let mut gates = par_gemm(t * n, f, g, x, &self.weights.value, transposed(f));
        for row in gates.chunks_exact_mut(g) {
            row.iter_mut()
                .zip(&self.bias.value)
                .for_each(|(z, b)| *z += b);
        }
        let mut cells = vec![0.0; t * n * u];
        let mut hidden = vec![0.0; t * n * u];
        let zeros = vec![0.0; n * u];
        for s in 0..t {
            let z = &mut gates[s * n * g..][..n * g];
            let (done_c, now_c) = cells.split_at_mut(s * n * u);
            let (done_h, now_h) = hidden.split_at_mut(s * n * u);
            let (c_prev, h_prev) = match s {
                0 => (&zeros[..], &zeros[..]),
                _ => (&done_c[(s - 1) * n * u..], &done_h[(s - 1) * n * u..]),
            };
            if s > 0 {
                let r = &self.recurrent.value;
                gemm((n, u, g), h_prev, row_major(u), r, transposed(u), 1.0, z);
            }
            for j in 0..n {
                lstm_cell(
                    &mut z[j * g..][..g],
                    &c_prev[j * u..][..u],
                    &mut now_c[j * u..][..u],
                    &mut now_h[j * u..][..u],
                );
            }
        }
        States {
            gates,
            cells,
            hidden,
        }
    }

    /// The layer's output and, when `capture` is set, every step's hidden and cell states.
    pub fn forward(
        &mut self,
        x: Tensor,
        ctx: &mut Ctx,
        capture: bool,
    ) -> (Tensor, Option<Captured>) {
        let (n, t, u) = (x.n, self.steps, self.units);
        let xt = swap_outer(&x.data, n, t, self.features);
        let states = self.run(&xt, n);
        let data = if self.return_sequences {
            swap_outer(&states.hidden, t, n, u)
        } else {
            states.hidden[(t - 1) * n * u..].to_vec()
        };
        let captured = capture.then(|| {
            let seq = |v: &[f32]| Tensor {
                n,
                shape: [1, t, u],
                data: swap_outer(v, t, n, u),
            };
            Captured {
                hidden: seq(&states.hidden),
                cells: seq(&states.cells),
            }
        });
        if ctx.train {
            self.cache = Some(Cache { n, x: xt, states });
        }
        let y = Tensor {
            n,
            shape: self.out_shape(),
            data,
        };
        (y, captured)
    }

    /// Backpropagation through time.
    pub fn backward(&mut self, dy: Tensor) -> Tensor {
        let Cache { n, x, states } = self
            .cache
            .take()
            .expect("lstm backward without a training forward");
        let (t, f, u) = (self.steps, self.features, self.units);
        let g = 4 * u;
        // The loss's gradient with respect to each step's hidden state, time-major.
        let mut dh = vec![0.0; t * n * u];
        if self.return_sequences {
            dh = swap_outer(&dy.data, n, t, u);
        } else {
            dh[(t - 1) * n * u..].copy_from_slice(&dy.data);
        }
        let mut dz = vec![0.0; t * n * g];
        let mut dc_next = vec![0.0; n * u];
        let mut dh_next = vec![0.0; n * u];
        let zeros = vec![0.0; u];
        for s in (0..t).rev() {
            let dh_s = &mut dh[s * n * u..][..n * u];
            dh_s.iter_mut().zip(&dh_next).for_each(|(a, b)| *a += b);
            let dz_s = &mut dz[s * n * g..][..n * g];
            for j in 0..n {
                let row = s * n + j;
                let c_prev = match s {
                    0 => &zeros[..],
                    _ => &states.cells[(row - n) * u..][..u],
                };
                let st = CellState {
                    gates: &states.gates[row * g..][..g],
                    c: &states.cells[row * u..][..u],
                    c_prev,
                };
                let dc = &mut dc_next[j * u..][..u];
                cell_backward(&st, &dh_s[j * u..][..u], dc, &mut dz_s[j * g..][..g]);
            }
            // dh_{t-1} = dz_t * R.
            let r = &self.recurrent.value;
            gemm(
                (n, g, u),
                dz_s,
                row_major(g),
                r,
                row_major(u),
                0.0,
                &mut dh_next,
            );
        }
        add_column_sums(&dz, g, &mut self.bias.grad);
        par_gemm_tn_acc(t * n, g, f, &dz, &x, &mut self.weights.grad);
        if t > 1 {
            // Step s's recurrence read h_{s-1}; step 0's read zeros.
            let hidden_prev = &states.hidden[..(t - 1) * n * u];
            par_gemm_tn_acc(
                (t - 1) * n,
                g,
                u,
                &dz[n * g..],
                hidden_prev,
                &mut self.recurrent.grad,
            );
        }
        let dx = par_gemm(t * n, g, f, &dz, &self.weights.value, row_major(f));
        Tensor {
            n,
            shape: [1, t, f],
            data: swap_outer(&dx, t, n, f),
        }
    }
}

/// One sample's step as the forward pass left it.
struct CellState<'a> {
    /// Gate activations i, f, g, o (`4 * units`).
    gates: &'a [f32],
    /// `c_t`.
    c: &'a [f32],
    /// `c_{t-1}` (zeros at the first step).
    c_prev: &'a [f32],
}

/// One sample's step backwards: from `dh` (the hidden state's gradient) and `dc` (on entry
/// the cell state's gradient from step t + 1, on return the one for step t - 1) to the gate
/// pre-activations' gradient `dz`.
fn cell_backward(st: &CellState, dh: &[f32], dc: &mut [f32], dz: &mut [f32]) {
    let u = dh.len();
    let (i, rest) = st.gates.split_at(u);
    let (f, rest) = rest.split_at(u);
    let (gc, o) = rest.split_at(u);
    for k in 0..u {
        let tc = st.c[k].tanh();
        let dck = dc[k] + dh[k] * o[k] * (1.0 - tc * tc);
        dz[k] = dck * gc[k] * i[k] * (1.0 - i[k]);
        dz[u + k] = dck * st.c_prev[k] * f[k] * (1.0 - f[k]);
        dz[2 * u + k] = dck * i[k] * (1.0 - gc[k] * gc[k]);
        dz[3 * u + k] = dh[k] * tc * o[k] * (1.0 - o[k]);
        dc[k] = dck * f[k];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_columns_are_orthonormal() {
        let (rows, cols) = (12, 3);
        let q = orthogonal(rows, cols, &mut Rng::new(3));
        for a in 0..cols {
            for b in 0..cols {
                let dot: f32 = (0..rows).map(|r| q[r * cols + a] * q[r * cols + b]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "columns {a}, {b}: {dot}");
            }
        }
    }
}
