//! The int8 DEPTHWISE_CONV_2D of `H x 1` maps with `k x 1` kernels, and of `1 x W` maps with
//! `1 x k` ones (feature `kernel-depthwise-plane`, the path those layers took before): depth
//! multiplier 1, channels a multiple of 4, any tap count, stride, dilation and padding.
//!
//! NHWC keeps a position's channels side by side, so one word load reads a tap of four
//! channels, widened into `(c0, c2)` and `(c1, c3)`; a group's weights are widened once into
//! the same halves in scratch, and `SMLABB` / `SMLATT` accumulate each channel on its own.
//! Windows on the input run in assembly ([`column_run`]) with the input offset times the taps
//! folded into the bias; windows with taps on padding skip those taps (with the offset added,
//! padding is zero) and run in Rust.

use super::conv2d::Geometry;
use super::fast_requant::{all_common, channel_stages, max_product, ChannelStage};
use super::simd::{column_run, RequantSsat};
use super::simd::{requant_ssat, smlabb, smlatt, sxtab16, sxtab16_ror8, sxtb16, sxtb16_ror8};
use super::{Int8Stage, Requant, Window};

/// Most taps; a longer kernel runs another kernel.
const MAX_TAPS: usize = 64;

/// Channels a pass computes.
const GROUP: usize = 4;

/// A layer along its one long axis; positions are `channels` bytes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    in_len: usize,
    out_len: usize,
    taps: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
}

impl Line {
    /// The layer as a line, if it is one this kernel takes: one axis of input, kernel and
    /// output is 1 (the height if both are), depth multiplier 1, channels a multiple of 4.
    pub(crate) fn new(
        window: &Window,
        dm: usize,
        (kernel_h, kernel_w): (usize, usize),
        (in_h, in_w): (usize, usize),
        (out_h, out_w): (usize, usize),
        channels: usize,
    ) -> Option<Self> {
        if dm != 1 {
            return None;
        }
        let w = window;
        let line = if kernel_w == 1 && in_w == 1 && out_w == 1 {
            Self {
                in_len: in_h,
                out_len: out_h,
                taps: kernel_h,
                stride: w.stride_h,
                dilation: w.dilation_h,
                pad: w.pad_top,
            }
        } else if kernel_h == 1 && in_h == 1 && out_h == 1 {
            Self {
                in_len: in_w,
                out_len: out_w,
                taps: kernel_w,
                stride: w.stride_w,
                dilation: w.dilation_w,
                pad: w.pad_left,
            }
        } else {
            return None;
        };
        let ok = channels > 0
            && channels % GROUP == 0
            && (1..=MAX_TAPS).contains(&line.taps)
            && line.in_len > 0
            && line.stride > 0
            && line.dilation > 0;
        ok.then_some(line)
    }

    /// Scratch bytes: a group's output stages, then its widened weights (two words a tap).
    pub(crate) fn scratch_len(&self) -> usize {
        GROUP * size_of::<ChannelStage>() + 8 * self.taps
    }
}

/// Runs the layer if it is a line this kernel takes, the feature is built and `scratch` is
/// long enough; `false` otherwise, with nothing written. Shapes were validated by the caller.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) fn depthwise(
    g: &Geometry,
    dm: usize,
    stage: &Int8Stage,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    requant: Requant,
    output: &mut [i8],
    scratch: &mut [u8],
) -> bool {
    if !cfg!(feature = "kernel-depthwise-plane") {
        return false;
    }
    let kernel = (g.kernel_h, g.kernel_w);
    let channels = filter.len() / (g.kernel_h * g.kernel_w).max(1);
    let (ins, outs) = ((g.in_h, g.in_w), (g.out_h, g.out_w));
    let Some(line) = Line::new(&g.window, dm, kernel, ins, outs, channels) else {
        return false;
    };
    let Some(scratch) = scratch.get_mut(..line.scratch_len()) else {
        return false;
    };
    let Some((stages, weights)) = scratch.split_at_mut_checked(GROUP * size_of::<ChannelStage>())
    else {
        return false;
    };
    let (Some(stages), Some(weights)) = (
        crate::cast::slice_mut::<ChannelStage>(stages),
        crate::cast::slice_mut::<[u32; 2]>(weights),
    ) else {
        return false;
    };
    // Every index below stays within these lengths, checked once here.
    let (in_batch, out_batch) = (line.in_len * channels, line.out_len * channels);
    let fits = input.len() >= g.batches * in_batch
        && output.len() >= g.batches * out_batch
        && filter.len() >= line.taps * channels
        && weights.len() == line.taps;
    if !fits {
        return false;
    }
    let max_sum = max_product(stage).saturating_mul(line.taps as u64);
    let off2 = (stage.input_offset as u16 as u32) * 0x1_0001;
    for first in (0..channels).step_by(GROUP) {
        channel_stages(stages, first, bias, requant, stage, max_sum);
        let bias: [i32; GROUP] = core::array::from_fn(|i| stages.get(i).map_or(0, |s| s.bias));
        let mut folded = bias;
        let mut p = filter.get(first..).unwrap_or_default().as_ptr();
        for w in weights.iter_mut() {
            // SAFETY: for the `k`-th tap (`k < line.taps`, as `weights` holds `line.taps`
            // pairs), `p` is `filter`'s address plus `first + k * channels`, and the read
            // covers 4 bytes from there: `first + 4 <= channels` (`first` steps by 4 below
            // `channels`, a multiple of 4), so they end by `line.taps * channels`, which
            // `fits` checked is within `filter`. Unaligned word loads are allowed.
            let word = unsafe { p.cast::<u32>().read_unaligned() };
            p = p.wrapping_add(channels);
            let (even, odd) = (sxtb16(word), sxtb16_ror8(word));
            *w = [even, odd];
            // The offset times each tap, wrapping like the sums (whose order never matters).
            let [f0, f1, f2, f3] = folded;
            folded = [
                smlabb(even, off2, f0),
                smlabb(odd, off2, f1),
                smlatt(even, off2, f2),
                smlatt(odd, off2, f3),
            ];
        }
        let group = Group {
            bias,
            folded,
            line: &line,
            channels,
            off2,
            weights,
            stages,
            stage,
        };
        for b in 0..g.batches {
            let x = input.get(b * in_batch + first..).unwrap_or_default();
            let y = output.get_mut(b * out_batch + first..).unwrap_or_default();
            group.run(x, y);
        }
    }
    true
}

/// The int8 word at `x[i..i + 4]` (zero past the end; callers stay within it).
#[inline(always)]
fn word_at(x: &[i8], i: usize) -> u32 {
    match x.get(i..i + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

/// One group of four channels.
struct Group<'a> {
    line: &'a Line,
    channels: usize,
    off2: u32,
    weights: &'a [[u32; 2]],
    /// The channels' biases (their output stages').
    bias: [i32; GROUP],
    /// The biases plus the input offset times each channel's taps: the sums before any tap
    /// of a window on the input, its taps widened without the offset.
    folded: [i32; GROUP],
    stages: &'a [ChannelStage],
    stage: &'a Int8Stage,
}

impl Group<'_> {
    /// Every output of the group for one batch: `x` starts at position 0's first channel of
    /// the group, `y` at output 0's.
    fn run(&self, x: &[i8], y: &mut [i8]) {
        let (line, c, bias) = (self.line, self.channels, self.bias);
        let common = all_common(self.stages, self.stage);
        let rq: [RequantSsat; GROUP] = core::array::from_fn(|i| {
            self.stages
                .get(i)
                .map_or_else(Default::default, |s| s.ssat())
        });
        // The input positions a window spans past its first tap.
        let reach = (line.taps - 1) * line.dilation;
        // Tap 0's input position, if the window lies on the input.
        let full = |o: usize| {
            (o * line.stride)
                .checked_sub(line.pad)
                .filter(|first| first + reach < line.in_len)
        };
        let mut o = 0;
        while o < line.out_len {
            if let (true, Some(first)) = (common, full(o)) {
                // A run of windows on the input, all at once.
                let mut n = 1;
                while o + n < line.out_len && full(o + n).is_some() {
                    n += 1;
                }
                let x = x.get(first * c..).unwrap_or_default();
                let y = y.get_mut(o * c..).unwrap_or_default();
                let geometry = (n, line.stride * c, line.dilation * c);
                column_run(x, geometry, self.weights, (self.folded, &rq), (y, c));
                o += n;
                continue;
            }
            let acc = match full(o) {
                Some(first) => self.full(x.get(first * c..).unwrap_or_default(), bias),
                None => self.partial(x, o * line.stride, bias),
            };
            let y = y.get_mut(o * c..).unwrap_or_default();
            match (common, y.get_mut(..GROUP)) {
                (true, Some(y)) => {
                    for ((o, &acc), r) in y.iter_mut().zip(&acc).zip(&rq) {
                        *o = requant_ssat(acc, r.left, r.mult, r.add, r.right) as i8;
                    }
                }
                _ => self.store(acc, y),
            }
            o += 1;
        }
    }

    /// The sums of an output whose every tap is on the input, tap 0 at `x[0..]`.
    #[inline(always)]
    fn full(&self, x: &[i8], bias: [i32; GROUP]) -> [i32; GROUP] {
        let line = self.line;
        let step = line.dilation * self.channels;
        let last = (line.taps - 1) * step + GROUP;
        if self.weights.len() != line.taps || x.len() < last {
            return bias;
        }
        let mut acc = bias;
        let mut p = x.as_ptr();
        for &w in self.weights {
            // SAFETY: for the `k`-th weight (there are `line.taps`), `p` is `x`'s address plus
            // `k * step`; the read covers `k * step .. + 4`, within `..last <= x.len()` as
            // `k < line.taps`. Unaligned word loads are allowed.
            let word = unsafe { p.cast::<u32>().read_unaligned() };
            acc = mac(acc, word, w, self.off2);
            p = p.wrapping_add(step);
        }
        acc
    }

    /// The sums of an output whose window starts `pad` positions before `start` and has
    /// taps off the input (which add nothing).
    #[inline(never)]
    fn partial(&self, x: &[i8], start: usize, bias: [i32; GROUP]) -> [i32; GROUP] {
        let line = self.line;
        let mut acc = bias;
        for (k, &w) in self.weights.iter().enumerate() {
            let Some(at) = (start + k * line.dilation).checked_sub(line.pad) else {
                continue;
            };
            if at < line.in_len {
                acc = mac(acc, word_at(x, at * self.channels), w, self.off2);
            }
        }
        acc
    }

    /// Requantizes four channels' sums into `y[0..4]`, any kind of stage.
    #[inline(never)]
    fn store(&self, acc: [i32; GROUP], y: &mut [i8]) {
        for ((o, &acc), s) in y.iter_mut().zip(&acc).zip(self.stages) {
            *o = s.out(acc, self.stage);
        }
    }
}

/// `acc` plus one tap of four channels: input word `x` (offset by `off2`) times widened
/// weights `w` (`(w0, w2)`, `(w1, w3)`).
#[inline(always)]
fn mac(acc: [i32; GROUP], x: u32, w: [u32; 2], off2: u32) -> [i32; GROUP] {
    let (even, odd) = (sxtab16(off2, x), sxtab16_ror8(off2, x));
    [
        smlabb(even, w[0], acc[0]),
        smlabb(odd, w[1], acc[1]),
        smlatt(even, w[0], acc[2]),
        smlatt(odd, w[1], acc[3]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Axis, Padding};
    use crate::ops::depthwise_conv2d::depthwise_conv2d_i8_reference;
    use crate::test_support::*;

    /// The column kernel against the reference kernel, byte for byte, on random `H x 1` and
    /// `1 x W` layers: kernels of 1-15 taps, strides and dilations 1-3, any padding, zero
    /// points and per-channel or shared multipliers.
    #[test]
    fn matches_the_reference_kernel_on_random_lines() {
        let mut rng = Rng(0xc01_0a11_5eed);
        let point = Axis::new(Padding::Valid, 1, 1, 1, 1).unwrap();
        let mut ran = 0;
        for case in 0..3000 {
            let long = random_axis_within(&mut rng, 40, 15, 3);
            let (y, x) = match case % 2 {
                0 => (long, point),
                _ => (point, long),
            };
            let (n, ic) = (rng.size(1, 2), 4 * rng.size(1, 5));
            let (is, fs) = (s(n, y.input, x.input, ic), s(1, y.kernel, x.kernel, ic));
            let os = s(n, y.output, x.output, ic);
            let (input, filter) = (rng.i8s(len(is)), rng.i8s(len(fs)));
            let (st, bias, rq) = (rng.stage(), rng.bias(ic), rng.requant(ic));
            let w = Window::from_axes(&y, &x);
            let mut want = vec![0i8; len(os)];
            let io = (t(&input, is), t(&filter, fs));
            let b = bias.as_deref();
            let res =
                depthwise_conv2d_i8_reference(&w, 1, &st, io.0, io.1, b, &rq, tm(&mut want, os));
            assert_eq!(res, Ok(()), "case {case}");
            let kernel = (y.kernel, x.kernel);
            let ins = (y.input, x.input);
            let Some(line) = Line::new(&w, 1, kernel, ins, (y.output, x.output), ic) else {
                continue;
            };
            let g = Geometry::decoded(&w, is, kernel, os);
            let mut words = vec![0x5a5a_5a5au32; line.scratch_len().div_ceil(4)];
            let scratch = crate::cast::words_as_bytes_mut(&mut words);
            let mut got = vec![0x55i8; len(os)];
            assert!(depthwise(
                &g, 1, &st, &input, &filter, b, &rq, &mut got, scratch
            ));
            assert_eq!(got, want, "case {case}: {y:?} {x:?} n={n} ic={ic}");
            ran += 1;
        }
        assert!(ran > 2900, "{ran}");
    }

    #[test]
    fn declines_other_layers_and_short_scratch() {
        let w = Window::from_axes(
            &Axis::new(Padding::Valid, 5, 3, 1, 1).unwrap(),
            &Axis::new(Padding::Valid, 1, 1, 1, 1).unwrap(),
        );
        assert_eq!(Line::new(&w, 2, (3, 1), (5, 1), (3, 1), 8), None);
        assert_eq!(Line::new(&w, 1, (3, 1), (5, 1), (3, 1), 6), None);
        assert_eq!(Line::new(&w, 1, (3, 3), (5, 5), (3, 3), 8), None);
        let line = Line::new(&w, 1, (3, 1), (5, 1), (3, 1), 4).unwrap();
        let (is, os) = (s(1, 5, 1, 4), s(1, 3, 1, 4));
        let g = Geometry::decoded(&w, is, (3, 1), os);
        let mut words = vec![0u32; line.scratch_len() / 4];
        let scratch = crate::cast::words_as_bytes_mut(&mut words);
        let mut out = [7i8; 12];
        let (st, rq) = (stage(0, 0), [q(1.0)]);
        let short = &mut scratch[..line.scratch_len() - 4];
        assert!(!depthwise(
            &g, 1, &st, &[0; 20], &[1; 12], None, &rq, &mut out, short
        ));
        assert_eq!(out, [7; 12]);
    }
}
