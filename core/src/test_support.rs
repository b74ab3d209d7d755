//! What core's unit tests share: one deterministic RNG, tensor and shape shorthands, the
//! int8 reference stage, and the window helpers the convolution tests build on.

use std::vec::Vec;

use crate::geometry::{Axis, Padding, Window};
use crate::ops::{Int8Stage, Shape4, Tensor, TensorMut};
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// xorshift64: deterministic, dependency-free randomness for the property tests.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `lo..=hi`.
    pub(crate) fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    pub(crate) fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.int(lo as i64, hi as i64) as usize
    }
    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in `[lo, hi)`, 24 random bits.
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 40) as f64 / (1u64 << 24) as f64
    }
    /// [`Self::uniform`] in f32 (24 bits: exact).
    pub(crate) fn uniform_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() >> 40) as f32 / (1u32 << 24) as f32
    }
    pub(crate) fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.int(-128, 127) as i8).collect()
    }
    /// Uniform in [-1, 1].
    pub(crate) fn f32s(&mut self, n: usize) -> Vec<f32> {
        let unit = |v: i64| v as f32 / (1 << 20) as f32;
        (0..n).map(|_| unit(self.int(-1 << 20, 1 << 20))).collect()
    }
    /// A bias three times in four, large enough to matter.
    pub(crate) fn bias(&mut self, n: usize) -> Option<Vec<i32>> {
        let values = (0..n).map(|_| self.int(-20_000, 20_000) as i32).collect();
        (self.next() % 4 != 0).then_some(values)
    }
    /// Random zero points and a full, ReLU-like or arbitrary activation range.
    pub(crate) fn stage(&mut self) -> Int8Stage {
        let output_offset = self.int(-128, 127) as i32;
        let (a, b) = (self.int(-128, 127) as i8, self.int(-128, 127) as i8);
        let (act_min, act_max) = match self.next() % 3 {
            0 => (-128, 127),
            1 => (output_offset as i8, 127),
            _ => (a.min(b), a.max(b)),
        };
        let mut st = stage(self.int(-127, 128) as i32, output_offset);
        (st.act_min, st.act_max) = (act_min, act_max);
        st
    }
    /// One multiplier per channel, or one shared; real values 2^-16 .. 2^1.
    pub(crate) fn requant(&mut self, channels: usize) -> Vec<QuantizedMultiplier> {
        let n = if self.next() % 3 == 0 { 1 } else { channels };
        let mut one = || q(2f64.powf(self.int(-16_000, 1_000) as f64 / 1000.0));
        (0..n).map(|_| one()).collect()
    }
}

/// The int8 output stage on a 64-bit accumulator; only `apply` is shared with the kernels.
pub(crate) fn reference_requant(acc: i64, q: QuantizedMultiplier, st: &Int8Stage) -> i8 {
    let acc = i32::try_from(acc).expect("test accumulators fit in i32");
    let v = q.apply(acc) + st.output_offset;
    v.clamp(st.act_min.into(), st.act_max.into()) as i8
}

/// f32 result within 1e-5 of the summed magnitudes of its terms (rounding error bound).
pub(crate) fn close(got: f32, want: f64, magnitude: f64) -> bool {
    (f64::from(got) - want).abs() <= 1e-5 * magnitude + 1e-30
}

pub(crate) fn stage(input_offset: i32, output_offset: i32) -> Int8Stage {
    Int8Stage {
        input_offset,
        output_offset,
        act_min: -128,
        act_max: 127,
    }
}

pub(crate) fn q(real: f64) -> QuantizedMultiplier {
    QuantizedMultiplier::from_f64(real).unwrap()
}

/// `s` with `c` channels.
pub(crate) fn chans(s: Shape4, c: usize) -> Shape4 {
    Shape4 { c, ..s }
}

/// Elements of a test shape.
pub(crate) fn len(s: Shape4) -> usize {
    s.elements().unwrap()
}

pub(crate) fn s(n: usize, h: usize, w: usize, c: usize) -> Shape4 {
    Shape4::new(n, h, w, c)
}

pub(crate) fn tm<T>(data: &mut [T], shape: Shape4) -> TensorMut<'_, T> {
    TensorMut { data, shape }
}

pub(crate) fn t<T>(data: &[T], shape: Shape4) -> Tensor<'_, T> {
    Tensor { data, shape }
}

pub(crate) fn invalid(what: crate::Why) -> Result<(), Error> {
    Err(Error::InvalidParameter { what })
}

pub(crate) fn mismatch(what: crate::Why, expected: usize, actual: usize) -> Result<(), Error> {
    Err(Error::ShapeMismatch {
        what,
        expected,
        actual,
    })
}

pub(crate) const ONE: (usize, usize) = (1, 1);
pub(crate) const ZERO: (usize, usize) = (0, 0);

/// A window from `(height, width)` pairs.
pub(crate) fn win(stride: (usize, usize), dilation: (usize, usize), pad: (usize, usize)) -> Window {
    Window {
        stride_h: stride.0,
        stride_w: stride.1,
        dilation_h: dilation.0,
        dilation_w: dilation.1,
        pad_top: pad.0,
        pad_left: pad.1,
    }
}

/// One random axis: TFLite SAME or VALID, or any padding and output size the kernels accept.
pub(crate) fn random_axis(rng: &mut Rng) -> Axis {
    random_axis_within(rng, 7, 4, 2)
}

/// [`random_axis`] with `1..=max_input` values, a kernel of `1..=max_kernel` taps, strides
/// `1..=3` and dilations `1..=max_dilation`.
pub(crate) fn random_axis_within(
    rng: &mut Rng,
    max_input: usize,
    max_kernel: usize,
    max_dilation: usize,
) -> Axis {
    let (input, kernel) = (rng.size(1, max_input), rng.size(1, max_kernel));
    let (stride, dilation) = (rng.size(1, 3), rng.size(1, max_dilation));
    let dilated = (kernel - 1) * dilation + 1;
    let mode = rng.next() % 3;
    let valid = mode == 1 && input >= dilated;
    let padding = [Padding::Same, Padding::Valid][usize::from(valid)];
    let mut axis = Axis::new(padding, input, kernel, stride, dilation).unwrap();
    if mode == 2 {
        axis.pad = rng.size(0, dilated - 1);
        axis.output = rng.size(1, (input + axis.pad).div_ceil(stride));
    }
    axis
}

/// Extent of the explicitly padded input along `a`: the input and every window.
pub(crate) fn padded_extent(a: Axis) -> usize {
    let last = (a.output - 1) * a.stride + (a.kernel - 1) * a.dilation + 1;
    last.max(a.input + a.pad)
}

/// Copies an NHWC input into a bigger buffer filled with `fill`: padding made explicit.
pub(crate) fn pad_input<T: Copy>(data: &[T], s: Shape4, y: Axis, x: Axis, fill: T) -> Vec<T> {
    let (ph, pw) = (padded_extent(y), padded_extent(x));
    let mut out = vec![fill; s.n * ph * pw * s.c];
    for (i, &v) in data.iter().enumerate() {
        let (c, px) = (i % s.c, i / s.c);
        let (b, yy, xx) = (px / (s.h * s.w), px / s.w % s.h, px % s.w);
        out[((b * ph + yy + y.pad) * pw + xx + x.pad) * s.c + c] = v;
    }
    out
}

/// For each output pixel in NHWC order, every tap of its window as
/// `(pixel index in the padded input, kernel tap index)`: no bounds, nothing skipped.
pub(crate) fn all_taps(n: usize, y: Axis, x: Axis) -> Vec<Vec<(usize, usize)>> {
    let (ph, pw) = (padded_extent(y), padded_extent(x));
    let mut out = Vec::new();
    for b in 0..n {
        for (oy, ox) in (0..y.output).flat_map(|oy| (0..x.output).map(move |ox| (oy, ox))) {
            let taps = (0..y.kernel).flat_map(|ky| (0..x.kernel).map(move |kx| (ky, kx)));
            let at = |(ky, kx)| {
                let py = oy * y.stride + ky * y.dilation;
                let px = ox * x.stride + kx * x.dilation;
                ((b * ph + py) * pw + px, ky * x.kernel + kx)
            };
            out.push(taps.map(at).collect());
        }
    }
    out
}

/// Runs a future that never waits on anything external (mocks, counting delays) to the end.
#[cfg(feature = "async")]
pub(crate) fn block_on<F: core::future::Future>(future: F) -> F::Output {
    use core::task::{Context, Poll, Waker};
    let mut context = Context::from_waker(Waker::noop());
    let mut future = core::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut context) {
            return out;
        }
    }
}
