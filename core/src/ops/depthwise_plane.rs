//! The channel-at-a-time int8 DEPTHWISE_CONV_2D (feature `kernel-depthwise-plane`): any
//! kernel size, stride, dilation, depth multiplier and channel count.
//!
//! Each input channel is widened, row by row, into a ring of int16 *pair words* in the
//! layer's scratch: word `k` of a row holds padded values `k` and `k + 1`, with the input
//! offset added (so padding is zero). A weight word holds two horizontally adjacent taps, so
//! one `SMLAD` of a row word at the window's first tap `+ 2j` and weight word `j` is two
//! MACs, without unaligned loads. Along a dilated row a weight word holds one tap. The
//! channel's `depth_multiplier` output channels reuse the ring, each an output row at a
//! time, two outputs per weight load. Kernels taller than wide run transposed (rows become
//! columns), so `k x 1` kernels on `H x 1` maps are one long row.

use super::conv2d::Geometry;
use super::fast_requant::{channel_stage, max_product, ChannelStage};
use super::simd::{smlad, smmulr};
use super::{Int8Stage, Requant, Window};
use crate::geometry::dilated_kernel;

/// Most kernel rows (after transposing: the shorter side of the kernel).
const MAX_ROWS: usize = 16;
/// Most scratch bytes the kernel takes; a layer needing more runs another kernel.
const MAX_SCRATCH: usize = 8192;

/// A layer's geometry in the kernel's orientation: `u` the ring's rows, `v` along a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Whether `u` is the input's width (the kernel was taller than wide).
    transposed: bool,
    in_u: usize,
    in_v: usize,
    out_u: usize,
    out_v: usize,
    k_u: usize,
    k_v: usize,
    stride_u: usize,
    stride_v: usize,
    dil_u: usize,
    pad_u: usize,
    pad_v: usize,
    /// Ring rows holding input: the dilated kernel height.
    rows: usize,
    /// Words of a ring row.
    width: usize,
    /// Weight words of a kernel row.
    pairs: usize,
    /// Ring words from one weight word's first tap to the next one's.
    step: usize,
    /// Whether a weight word holds two taps (no dilation along rows) or one.
    paired: bool,
}

impl Plan {
    /// The plan of a layer with this window, kernel `(h, w)`, input and output `(h, w)`;
    /// `None` if a size overflows or the kernel is taller (after transposing) than
    /// [`MAX_ROWS`].
    pub(crate) fn new(
        window: &Window,
        (kernel_h, kernel_w): (usize, usize),
        (in_h, in_w): (usize, usize),
        (out_h, out_w): (usize, usize),
    ) -> Option<Self> {
        let w = window;
        let transposed = kernel_h > kernel_w;
        let ((k_u, k_v), (in_u, in_v), (out_u, out_v)) = match transposed {
            false => ((kernel_h, kernel_w), (in_h, in_w), (out_h, out_w)),
            true => ((kernel_w, kernel_h), (in_w, in_h), (out_w, out_h)),
        };
        let [stride_u, stride_v, dil_u, dil_v, pad_u, pad_v] = match transposed {
            false => [
                w.stride_h,
                w.stride_w,
                w.dilation_h,
                w.dilation_w,
                w.pad_top,
                w.pad_left,
            ],
            true => [
                w.stride_w,
                w.stride_h,
                w.dilation_w,
                w.dilation_h,
                w.pad_left,
                w.pad_top,
            ],
        };
        let (pairs, step) = match dil_v {
            1 => (k_v.div_ceil(2), 2),
            d => (k_v, d),
        };
        let rows = dilated_kernel(k_u, dil_u)?;
        // Every word a window reads, and every input column (with its word to the left).
        let reach = out_v
            .checked_sub(1)?
            .checked_mul(stride_v)?
            .checked_add(pairs.checked_mul(step)?)?;
        let width = reach.max(pad_v.checked_add(in_v)?);
        let ok = k_u <= MAX_ROWS && k_v > 0 && out_u > 0 && in_u > 0 && in_v > 0;
        ok.then_some(Self {
            transposed,
            in_u,
            in_v,
            out_u,
            out_v,
            k_u,
            k_v,
            stride_u,
            stride_v,
            dil_u,
            pad_u,
            pad_v,
            rows,
            width,
            pairs,
            step,
            paired: dil_v == 1,
        })
    }

    /// Words of the ring: its rows and one more of zeros, read by window rows on padding.
    fn ring_words(&self) -> Option<usize> {
        self.rows.checked_add(1)?.checked_mul(self.width)
    }

    /// Scratch bytes for `dm` output channels an input channel: the ring, each channel's
    /// weight words and its output stage; `None` past [`MAX_SCRATCH`].
    pub(crate) fn scratch_len(&self, dm: usize) -> Option<usize> {
        let weights = dm.checked_mul(self.k_u * self.pairs)?;
        let words = self.ring_words()?.checked_add(weights)?.checked_add(RUN)?;
        let stages = dm.checked_mul(size_of::<ChannelStage>())?;
        let bytes = words.checked_mul(4)?.checked_add(stages)?;
        (bytes <= MAX_SCRATCH).then_some(bytes)
    }
}

/// A layer's inputs, constants and strides, for one input channel at a time.
struct Layer<'a> {
    p: Plan,
    g: &'a Geometry,
    dm: usize,
    input: &'a [i8],
    filter: &'a [i8],
    bias: Option<&'a [i32]>,
    requant: Requant<'a>,
    stage: &'a Int8Stage,
    max_sum: u64,
    in_c: usize,
    out_c: usize,
}

/// The scratch's parts: the ring, the weight words, a run's sums and the stages of one input
/// channel's output channels.
struct Scratch<'s> {
    ring: &'s mut [u32],
    weights: &'s mut [u32],
    /// A run of outputs' sums.
    sums: &'s mut [i32],
    stages: &'s mut [ChannelStage],
}

/// Runs the layer if the plan applies, the feature is built and `scratch` is long enough;
/// `false` otherwise, with nothing written. Shapes were validated by the caller.
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
    if !cfg!(feature = "kernel-depthwise-plane") || dm == 0 {
        return false;
    }
    let kernel = (g.kernel_h, g.kernel_w);
    let plan = Plan::new(&g.window, kernel, (g.in_h, g.in_w), (g.out_h, g.out_w));
    let Some((p, need)) = plan.and_then(|p| Some((p, p.scratch_len(dm)?))) else {
        return false;
    };
    let Some(s) = split(&p, dm, scratch.get_mut(..need)) else {
        return false;
    };
    let taps = (g.kernel_h * g.kernel_w) as u64;
    let out_c = filter.len() / (g.kernel_h * g.kernel_w).max(1);
    let layer = Layer {
        p,
        g,
        dm,
        input,
        filter,
        bias,
        requant,
        stage,
        max_sum: max_product(stage).saturating_mul(taps),
        in_c: out_c / dm,
        out_c,
    };
    // Padding columns and the padding row stay zero for the whole layer.
    let mut s = s;
    s.ring.fill(0);
    for ic in 0..layer.in_c {
        layer.channel(ic, &mut s, output);
    }
    true
}

/// The scratch for plan `p` and `dm` channels, cut into its parts.
fn split<'s>(p: &Plan, dm: usize, scratch: Option<&'s mut [u8]>) -> Option<Scratch<'s>> {
    let (words, rest) =
        scratch?.split_at_mut_checked(4 * (p.ring_words()? + dm * p.k_u * p.pairs))?;
    let (sums, stages) = rest.split_at_mut_checked(4 * RUN)?;
    let words = crate::cast::slice_mut::<u32>(words)?;
    let (ring, weights) = words.split_at_mut_checked(p.ring_words()?)?;
    Some(Scratch {
        ring,
        weights,
        sums: crate::cast::slice_mut::<i32>(sums)?,
        stages: crate::cast::slice_mut::<ChannelStage>(stages)?,
    })
}

impl Layer<'_> {
    /// Every output of input channel `ic`'s output channels.
    fn channel(&self, ic: usize, s: &mut Scratch, output: &mut [i8]) {
        let (p, g) = (&self.p, self.g);
        let first = ic * self.dm;
        for (m, st) in s.stages.iter_mut().enumerate() {
            *st = channel_stage(
                first + m,
                (self.bias, self.requant),
                self.stage,
                self.max_sum,
            );
        }
        let kernel = p.k_u * p.pairs;
        for (m, w) in s.weights.chunks_exact_mut(kernel.max(1)).enumerate() {
            self.widen_taps(first + m, w);
        }
        let ring_row = p.rows * p.width;
        for b in 0..g.batches {
            // Input rows below `next` are in the ring (or were passed over by the stride).
            let mut next = 0;
            for ou in 0..p.out_u {
                let top = ou * p.stride_u;
                // Every input row the window spans (dilation's gaps too: a later window's
                // taps may fall on them).
                let from = top.saturating_sub(p.pad_u).max(next);
                let end = (top + p.rows).saturating_sub(p.pad_u).min(p.in_u);
                for iu in from..end {
                    let at = iu % p.rows * p.width;
                    self.load_row((b, iu, ic), s.ring.get_mut(at..).unwrap_or_default());
                }
                next = next.max(end);
                let mut starts = [ring_row; MAX_ROWS];
                for (ku, start) in starts.iter_mut().enumerate().take(p.k_u) {
                    let Some(iu) = (top + ku * p.dil_u).checked_sub(p.pad_u) else {
                        continue;
                    };
                    if iu < p.in_u {
                        *start = iu % p.rows * p.width;
                    }
                }
                let starts = starts.get(..p.k_u).unwrap_or_default();
                for (m, st) in s.stages.iter().enumerate() {
                    let w = s
                        .weights
                        .get(m * kernel..(m + 1) * kernel)
                        .unwrap_or_default();
                    let at = self.out_index(b, ou, first + m);
                    let out = output.get_mut(at..).unwrap_or_default();
                    self.out_row((s.ring, starts), w, (st, &mut *s.sums), out);
                }
            }
        }
    }

    /// Index of output `(b, ou, 0)`, channel `oc`.
    fn out_index(&self, b: usize, ou: usize, oc: usize) -> usize {
        let g = self.g;
        let (y, x) = if self.p.transposed { (0, ou) } else { (ou, 0) };
        ((b * g.out_h + y) * g.out_w + x) * self.out_c + oc
    }

    /// Output `v`'s distance from output `0` of a row.
    fn out_step(&self) -> usize {
        match self.p.transposed {
            false => self.out_c,
            true => self.g.out_w * self.out_c,
        }
    }

    /// Output channel `oc`'s weight words: kernel row `ku`'s at `ku * pairs`.
    fn widen_taps(&self, oc: usize, words: &mut [u32]) {
        let (p, g) = (&self.p, self.g);
        // Filter steps along a kernel row and from one row to the next.
        let (along, across) = match p.transposed {
            false => (self.out_c, g.kernel_w * self.out_c),
            true => (g.kernel_w * self.out_c, self.out_c),
        };
        let (k_v, per_word) = (p.k_v, 1 + usize::from(p.paired));
        for (ku, row) in words.chunks_exact_mut(p.pairs.max(1)).enumerate() {
            let taps = self.filter.get(oc + ku * across..).unwrap_or_default();
            let tap = |kv: usize| match kv < k_v {
                true => widen(taps.get(kv * along), 0),
                false => 0,
            };
            for (j, word) in row.iter_mut().enumerate() {
                let kv = j * per_word;
                *word = match p.paired {
                    true => tap(kv) | tap(kv + 1) << 16,
                    false => tap(kv),
                };
            }
        }
    }

    /// Input row `iu` of batch `b`, channel `ic`, widened into the ring row `row` as pair
    /// words (the offset added); words left of the input's left neighbour are untouched.
    fn load_row(&self, (b, iu, ic): (usize, usize, usize), row: &mut [u32]) {
        let (p, g, c) = (&self.p, self.g, self.in_c);
        let (at, step) = match p.transposed {
            false => (((b * g.in_h + iu) * g.in_w) * c + ic, c),
            true => ((b * g.in_h * g.in_w + iu) * c + ic, g.in_w * c),
        };
        let off = self.stage.input_offset;
        let src = self.input.get(at..).unwrap_or_default();
        let dst = row.get_mut(p.pad_v.saturating_sub(1)..p.pad_v + p.in_v);
        let Some((last, words)) = dst.and_then(|d| d.split_last_mut()) else {
            return;
        };
        // The word left of the input holds the padding's last value and the first one.
        let (first, src) = match p.pad_v {
            0 => (widen(src.first(), off), src.get(step..).unwrap_or_default()),
            _ => (0, src),
        };
        *last = pair_words(src, (step, off), first, words);
    }

    /// One output row of one channel: window row `ku` starts at `ring[starts[ku]..]`, its
    /// weight words are `w[ku * pairs..]`; output `v` goes to `out[v * out_step]`. Sums a run
    /// of outputs at a time, then requantizes the run.
    #[inline(never)]
    fn out_row(
        &self,
        (ring, starts): (&[u32], &[usize]),
        w: &[u32],
        (s, sums): (&ChannelStage, &mut [i32]),
        out: &mut [i8],
    ) {
        let p = &self.p;
        let (sv, ostep) = (p.stride_v, self.out_step().max(1));
        for v0 in (0..p.out_v).step_by(RUN) {
            let Some(sums) = sums.get_mut(..RUN.min(p.out_v - v0)) else {
                return;
            };
            sums.fill(s.bias);
            for (&start, w) in starts.iter().zip(w.chunks_exact(p.pairs.max(1))) {
                let row = ring.get(start + v0 * sv..).unwrap_or_default();
                match p.step {
                    2 => row_sums_paired(row, w, sv, sums),
                    step => row_sums(row, w, (sv, step), sums),
                }
            }
            let out = out.get_mut(v0 * ostep..).unwrap_or_default();
            requantize_run(sums, s, self.stage, (out, ostep));
        }
    }
}

/// Outputs summed before they are requantized, at most.
const RUN: usize = 32;

/// [`row_sums`] for weight words of two taps each.
#[inline(never)]
fn row_sums_paired(row: &[u32], w: &[u32], stride: usize, sums: &mut [i32]) {
    row_sums(row, w, (stride, 2), sums);
}

/// Adds to `sums[i]` the dot product of weight words `w` with every `step`-th word of
/// `row[i * stride..]`; two outputs a weight load.
#[inline(always)]
fn row_sums(row: &[u32], w: &[u32], (stride, step): (usize, usize), sums: &mut [i32]) {
    let step = step.max(1);
    let span = w.len() * step;
    let mut pairs = sums.chunks_exact_mut(2);
    let mut at = 0;
    for pair in &mut pairs {
        let Some(both) = row.get(at..at + stride + span) else {
            return;
        };
        // Window A is `both`'s first `span` words (the zip with `w` stops there).
        let (a, b) = (both, both.get(stride..).unwrap_or_default());
        let (mut s0, mut s1) = (pair[0], pair[1]);
        for ((a, b), &w) in a.chunks_exact(step).zip(b.chunks_exact(step)).zip(w) {
            s0 = smlad(a[0], w, s0);
            s1 = smlad(b[0], w, s1);
        }
        (pair[0], pair[1]) = (s0, s1);
        at += 2 * stride;
    }
    if let ([last], Some(a)) = (pairs.into_remainder(), row.get(at..at + span)) {
        *last = a
            .chunks_exact(step)
            .zip(w)
            .fold(*last, |acc, (a, &w)| smlad(a[0], w, acc));
    }
}

/// Writes `sums` requantized by stage `s` to `out[0]`, `out[step]`, ...
#[inline(never)]
fn requantize_run(
    sums: &[i32],
    s: &ChannelStage,
    stage: &Int8Stage,
    (out, step): (&mut [i8], usize),
) {
    match s.fast_parts() {
        Some((left, mult, add, right)) => {
            let clamp = (i32::from(stage.act_min), i32::from(stage.act_max));
            requantize_fast(sums, (left, mult, add, right), clamp, (out, step));
        }
        None => {
            for (&acc, o) in sums.iter().zip(out.iter_mut().step_by(step.max(1))) {
                *o = s.out(acc, stage);
            }
        }
    }
}

/// `ChannelStage::out` for the usual stage (its `fast_parts`), the constants in registers.
#[inline(always)]
fn requantize_fast(
    sums: &[i32],
    (left, mult, add, right): (u32, i32, i32, u32),
    (lo, hi): (i32, i32),
    (out, step): (&mut [i8], usize),
) {
    let neg = -i32::from(right > 0);
    let mut at = 0;
    for &acc in sums {
        let y = smmulr(acc << left, mult);
        if let Some(o) = out.get_mut(at) {
            *o = ((y + ((y >> 31) & neg) + add) >> right).max(lo).min(hi) as i8;
        }
        at += step;
    }
}

/// `value + off` as the low halfword of a word (zero for none).
#[inline(always)]
fn widen(value: Option<&i8>, off: i32) -> u32 {
    value.map_or(0, |&x| (i32::from(x) + off) as u16 as u32)
}

/// Fills `words` with pair words of `first` and the values `src[0]`, `src[step]`, ... (plus
/// the offset): word `k` holds values `k - 1` and `k`. Returns the last value.
#[inline(never)]
fn pair_words(src: &[i8], (step, off): (usize, i32), first: u32, words: &mut [u32]) -> u32 {
    let (mut lo, mut i) = (first, 0);
    for d in words {
        let hi = widen(src.get(i), off);
        *d = lo | hi << 16;
        (lo, i) = (hi, i + step);
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Axis, Padding};
    use crate::ops::depthwise_conv2d::depthwise_conv2d_i8_reference;
    use crate::test_support::*;

    /// An axis of `1..=max_in` values with a kernel of `1..=max_k` taps, any stride and
    /// dilation (1..=3) and padding: SAME, VALID or explicit.
    fn axis(rng: &mut Rng, max_in: usize, max_k: usize) -> Axis {
        crate::test_support::random_axis_within(rng, max_in, max_k, 3)
    }

    /// The layer's two axes: `H x 1` maps with `k x 1` kernels, `1 x W` with `1 x k`, small
    /// square-ish maps, or mixed.
    fn axes(rng: &mut Rng, case: usize) -> (Axis, Axis) {
        let point = Axis::new(Padding::Valid, 1, 1, 1, 1).unwrap();
        match case % 4 {
            0 => (axis(rng, 40, 16), point),
            1 => (point, axis(rng, 40, 16)),
            2 => (axis(rng, 9, 5), axis(rng, 9, 5)),
            _ => (axis(rng, 20, 8), axis(rng, 6, 3)),
        }
    }

    /// The plane kernel against the reference kernel, byte for byte, on random layers: any
    /// shape, depth multiplier, channel count, stride, dilation, padding, output stage.
    #[test]
    fn matches_the_reference_kernel_on_random_layers() {
        let mut rng = Rng(0xd1_5ca1_ab1e);
        let mut ran = 0;
        for case in 0..2000 {
            let (y, x) = axes(&mut rng, case);
            let (n, ic, dm) = (rng.size(1, 2), rng.size(1, 6), rng.size(1, 9));
            let oc = ic * dm;
            let (is, fs) = (s(n, y.input, x.input, ic), s(1, y.kernel, x.kernel, oc));
            let os = s(n, y.output, x.output, oc);
            let (input, filter) = (rng.i8s(len(is)), rng.i8s(len(fs)));
            let (st, bias, rq) = (rng.stage(), rng.bias(oc), rng.requant(oc));
            let w = Window::from_axes(&y, &x);
            let mut want = vec![0i8; len(os)];
            let io = (t(&input, is), t(&filter, fs));
            let b = bias.as_deref();
            let res =
                depthwise_conv2d_i8_reference(&w, dm, &st, io.0, io.1, b, &rq, tm(&mut want, os));
            assert_eq!(res, Ok(()), "case {case}");
            let kernel = (y.kernel, x.kernel);
            let plan = Plan::new(&w, kernel, (y.input, x.input), (y.output, x.output));
            let Some(need) = plan.and_then(|p| p.scratch_len(dm)) else {
                continue;
            };
            let g = Geometry::decoded(&w, is, kernel, os);
            let mut words = vec![0x5a5a_5a5au32; need.div_ceil(4)];
            let scratch = crate::cast::words_as_bytes_mut(&mut words);
            let mut got = vec![0x55i8; len(os)];
            assert!(depthwise(
                &g, dm, &st, &input, &filter, b, &rq, &mut got, scratch
            ));
            assert_eq!(got, want, "case {case}: {y:?} {x:?} n={n} ic={ic} dm={dm}");
            ran += 1;
        }
        assert!(ran > 1900, "{ran}");
    }

    #[test]
    fn declines_short_scratch() {
        let w = Window::from_axes(
            &Axis::new(Padding::Valid, 5, 3, 1, 1).unwrap(),
            &Axis::new(Padding::Valid, 1, 1, 1, 1).unwrap(),
        );
        let (is, os) = (s(1, 5, 1, 2), s(1, 3, 1, 2));
        let g = Geometry::decoded(&w, is, (3, 1), os);
        let need = Plan::new(&w, (3, 1), (5, 1), (3, 1))
            .and_then(|p| p.scratch_len(1))
            .unwrap();
        let mut words = vec![0u32; need / 4];
        let scratch = crate::cast::words_as_bytes_mut(&mut words);
        let mut out = [7i8; 6];
        let (st, rq) = (stage(0, 0), [q(1.0)]);
        let short = &mut scratch[..need - 4];
        assert!(!depthwise(
            &g, 1, &st, &[0; 10], &[1; 6], None, &rq, &mut out, short
        ));
        assert_eq!(out, [7; 6]);
    }
}
