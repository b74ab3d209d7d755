//! Batched tensors, parameters, the seeded PRNG, window geometry and the GEMM wrappers the
//! layers share.

use mote_core::geometry::Axis;
use mote_core::ops::Padding;
use rayon::prelude::*;

/// A per-sample shape `[height, width, channels]` (NHWC without the batch). A flat vector of
/// `k` features is `[1, 1, k]`; a 1-D signal of `t` steps and `c` channels is `[1, t, c]`.
pub type SampleShape = [usize; 3];

/// Number of values in one sample of `shape`.
pub(crate) fn volume(shape: SampleShape) -> usize {
    shape[0] * shape[1] * shape[2]
}

/// A batch of samples, NHWC: `n` samples of `shape`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Batch size.
    pub n: usize,
    /// Per-sample shape.
    pub shape: SampleShape,
    /// `n * volume(shape)` values.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(n: usize, shape: SampleShape) -> Self {
        Self {
            n,
            shape,
            data: vec![0.0; n * volume(shape)],
        }
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        volume(self.shape)
    }

    /// Sample `i`'s values.
    pub fn sample(&self, i: usize) -> &[f32] {
        let len = self.sample_len();
        &self.data[i * len..][..len]
    }
}

/// A learnable (or running-statistics) tensor with its gradient.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// What it is within its layer: `filter`, `bias`, `gamma`, `running_mean`...
    pub name: &'static str,
    /// Its dimensions (mote-core's layout for filters and weights).
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    /// Same length as `value` for trainable parameters, empty otherwise.
    pub grad: Vec<f32>,
    /// Updated by the optimizer (false for batch norm's running statistics).
    pub trainable: bool,
    /// Subject to weight decay (weights and filters, not biases or batch norm's parameters).
    pub decay: bool,
}

impl Param {
    pub fn trainable(name: &'static str, shape: Vec<usize>, value: Vec<f32>, decay: bool) -> Self {
        let grad = vec![0.0; value.len()];
        Self {
            name,
            shape,
            value,
            grad,
            trainable: true,
            decay,
        }
    }

    pub fn state(name: &'static str, value: Vec<f32>) -> Self {
        Self {
            name,
            shape: vec![value.len()],
            value,
            grad: Vec::new(),
            trainable: false,
            decay: false,
        }
    }
}

/// A seeded SplitMix64 generator: initialization, shuffling and dropout masks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x6a09_e667_f3bc_c908)
    }

    /// An independent stream for `(seed, stream)`: the same pair always gives the same values.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = Rng::new(seed);
        let a = r.next_u64();
        Rng::new(a ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform() as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// A sliding window over one sample: what conv, depthwise and pooling layers share. Each
/// dimension is a mote-core geometry `Axis`, so output sizes, padding and which taps land on
/// the input are TFLite's, computed by the code the device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    /// Height: input rows, kernel rows, stride, dilation, padding above, output rows.
    pub rows: Axis,
    /// Width, likewise (padding on the left).
    pub cols: Axis,
}

impl Geom {
    /// The geometry, or `None` if the (dilated) window does not fit.
    pub fn new(
        input: SampleShape,
        kernel: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
        padding: Padding,
    ) -> Option<Self> {
        Some(Self {
            rows: Axis::new(padding, input[0], kernel.0, stride.0, dilation.0)?,
            cols: Axis::new(padding, input[1], kernel.1, stride.1, dilation.1)?,
        })
    }

    /// Input row of kernel row `ky` for output row `oy`, if it lands on the input.
    #[inline]
    pub fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        self.rows.input_at(oy, ky)
    }

    /// Input column of kernel column `kx` for output column `ox`, if it lands on the input.
    #[inline]
    pub fn col(&self, ox: usize, kx: usize) -> Option<usize> {
        self.cols.input_at(ox, kx)
    }

    /// Output pixels per sample.
    pub fn out_pixels(&self) -> usize {
        self.rows.output * self.cols.output
    }
}

/// Strides of a matrix operand: element `(i, j)` is at `i * rows + j * cols`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strides {
    pub rows: usize,
    pub cols: usize,
}

/// Row-major strides for a matrix with `cols` columns.
pub(crate) fn row_major(cols: usize) -> Strides {
    Strides {
        rows: cols,
        cols: 1,
    }
}

/// The transpose of a row-major matrix with `cols` columns.
pub(crate) fn transposed(cols: usize) -> Strides {
    Strides { rows: 1, cols }
}

fn fits(len: usize, rows: usize, cols: usize, s: Strides) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * s.rows + (cols - 1) * s.cols < len
}

/// `c[m x n] = a[m x k] * b[k x n] + beta * c`, `c` row-major. Single-threaded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    beta: f32,
    c: &mut [f32],
) {
    assert!(fits(a.len(), m, k, sa) && fits(b.len(), k, n, sb) && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].iter_mut().for_each(|v| *v *= beta);
        return;
    }
    // SAFETY: the assert above checks that every element sgemm reads of `a` ((m-1)*rows +
    // (k-1)*cols at most) and of `b`, and every element it writes of `c` (m*n, row-major), is
    // in bounds; the strides are at most the slice lengths, so they fit in isize; `c` is
    // borrowed mutably and does not alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa.rows as isize,
            sa.cols as isize,
            b.as_ptr(),
            sb.rows as isize,
            sb.cols as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Rows per block of the parallel GEMMs: fixed, so results do not depend on the thread count.
const ROW_BLOCK: usize = 256;

/// `c[m x n] = a[m x k] * b[k x n]` with `a` and `c` row-major, blocks of rows in parallel.
pub(crate) fn par_gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    sb: Strides,
) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    if k == 0 {
        return c;
    }
    c.par_chunks_mut(ROW_BLOCK * n)
        .zip(a.par_chunks(ROW_BLOCK * k))
        .for_each(|(c, a)| {
            let rows = c.len() / n;
            gemm((rows, k, n), a, row_major(k), b, sb, 0.0, c);
        });
    c
}

/// `g[p x q] += x^T * y` for row-major `x[m x p]` and `y[m x q]`: a reduction over the `m`
/// rows, in fixed-size blocks computed in parallel and summed in order.
pub(crate) fn par_gemm_tn_acc(m: usize, p: usize, q: usize, x: &[f32], y: &[f32], g: &mut [f32]) {
    if m <= ROW_BLOCK {
        gemm((p, m, q), x, transposed(p), y, row_major(q), 1.0, g);
        return;
    }
    let partials: Vec<Vec<f32>> = x
        .par_chunks(ROW_BLOCK * p)
        .zip(y.par_chunks(ROW_BLOCK * q))
        .map(|(x, y)| {
            let rows = x.len() / p;
            let mut part = vec![0.0; p * q];
            gemm(
                (p, rows, q),
                x,
                transposed(p),
                y,
                row_major(q),
                0.0,
                &mut part,
            );
            part
        })
        .collect();
    for part in partials {
        g.iter_mut().zip(&part).for_each(|(g, v)| *g += v);
    }
}

/// Adds the per-column sums of the row-major `rows x cols` matrix `x` to `g`.
pub(crate) fn add_column_sums(x: &[f32], cols: usize, g: &mut [f32]) {
    for row in x.chunks_exact(cols) {
        g.iter_mut().zip(row).for_each(|(g, v)| *g += v);
    }
}

/// The fused activations, as in mote-core.
pub(crate) use mote_core::ops::Activation as CoreAct;

/// Applies `act` in place: mote-core's definition (NaN propagates).
#[inline]
pub(crate) fn apply_act(act: CoreAct, data: &mut [f32]) {
    mote_core::train::activation_f32(act, data);
}

/// Multiplies `grad` by the derivative of `act`, read from the activation's output `out`
/// (mote-core's definition: relu passes where `out > 0`, relu6 where `0 < out < 6`). `out` may
/// be empty when `act` is `None` (the layers keep no output then).
#[inline]
pub(crate) fn act_backward(act: CoreAct, out: &[f32], grad: &mut [f32]) {
    if act != CoreAct::None {
        mote_core::train::activation_backward_f32(act, out, grad)
            .expect("an activation's output and its gradient have the same length");
    }
}

/// Per-sample training context: whether this is a training pass, and the dropout stream.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub train: bool,
    pub rng: Rng,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_naive_products_for_every_layout() {
        let mut rng = Rng::new(3);
        let (m, k, n) = (300, 7, 5);
        let a: Vec<f32> = (0..m * k).map(|_| rng.range(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.range(-1.0, 1.0)).collect();
        let c = par_gemm(m, k, n, &a, &b, row_major(n));
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
        // a^T * c, reduced over the 300 rows in blocks.
        let mut g = vec![0.5; k * n];
        par_gemm_tn_acc(m, k, n, &a, &c, &mut g);
        for i in 0..k {
            for j in 0..n {
                let want: f32 = 0.5 + (0..m).map(|r| a[r * k + i] * c[r * n + j]).sum::<f32>();
                assert!(
                    (g[i * n + j] - want).abs() < 1e-3,
                    "{} {}",
                    g[i * n + j],
                    want
                );
            }
        }
    }

    #[test]
    fn rng_streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::derive(1, 2).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::derive(1, 2).next_u64(), Rng::derive(1, 3).next_u64());
        let mut r = Rng::new(9);
        let mean: f64 = (0..10_000).map(|_| r.normal()).sum::<f64>() / 10_000.0;
        assert!(mean.abs() < 0.05);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
