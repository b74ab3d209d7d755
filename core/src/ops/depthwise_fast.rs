//! The fast int8 DEPTHWISE_CONV_2D (depth multiplier 1, channels a multiple of 4): four
//! channels at a time, one int8 word per tap.
//!
//! For each group of four channels the filter taps are widened once (`[(w0, w2), (w1, w3)]`
//! per tap). The group's input rows are copied, one word per pixel, into a small ring of rows
//! (the layer's scratch, planned in the arena by the host) padded with the zero point on both
//! sides, so every window lies on the ring and padding
//! costs nothing (the zero point plus the input offset is zero). A window row above or below
//! the input reads the ring's extra row, all zero points. A row of 3x3 outputs runs in
//! one assembly loop with the requantization inside ([`Dw3x3`]); other kernels, and groups
//! with a channel the assembly's output stage cannot take, loop over the ring in Rust. The
//! dispatch (`depthwise_conv2d::path`) gives this kernel the 3x3 layers, and other layers only
//! where the channel-at-a-time kernel (`depthwise_plane`) would need too much scratch; what
//! neither takes runs the reference kernel.

use super::conv2d::Geometry;
use super::fast_requant::{all_common, channel_stage, channel_stages, max_product, ChannelStage};
use super::simd::{
    gather_words, smlabb, smlatt, sxtab16, sxtab16_ror8, sxtb16, sxtb16_ror8, Dw3x3, Dw3x3Consts,
};
use super::{Int8Stage, Requant, Window};
use crate::geometry::dilated_kernel;

/// Most taps (`kernel_h * kernel_w`) the fast path widens at once.
const MAX_TAPS: usize = 25;
/// Most kernel rows, and most ring rows (`(kernel_h - 1) * dilation_h + 1`).
const MAX_ROWS: usize = 8;
/// Most words of the row ring (`rows * padded width`): 4 KB of arena.
const RING: usize = 1024;

/// Words of the ring for `rows` rows of `width` words: one more row stays all zero points,
/// read by window rows that lie on padding.
fn ring_words((rows, width): (usize, usize)) -> usize {
    (rows + 1) * width
}

/// Scratch bytes of the fast path for a ring of `(rows, width)` words and `taps` taps a
/// channel: the ring, a group's [`Dw3x3Consts`] (its widened taps too, up to nine), and the
/// widened taps of larger kernels. In the arena rather than a kernel's frame.
pub(crate) fn scratch_len(ring: (usize, usize), taps: usize) -> usize {
    let wide_taps = if taps > 9 { 8 * taps } else { 0 };
    4 * ring_words(ring) + core::mem::size_of::<Dw3x3Consts>() + wide_taps
}

/// The ring's geometry for a layer, `(rows, padded width)` in words, or `None` if the fast
/// path does not apply (the reference kernel runs, without scratch).
pub(crate) fn ring(
    window: &Window,
    (kernel_h, kernel_w): (usize, usize),
    (in_w, out_w): (usize, usize),
    depth_multiplier: usize,
    channels: usize,
) -> Option<(usize, usize)> {
    let w = window;
    // Padded width: every window's last column, and every input column.
    let last = out_w
        .checked_sub(1)?
        .checked_mul(w.stride_w)?
        .checked_add(dilated_kernel(kernel_w, w.dilation_w)?)?;
    let width = last.max(w.pad_left.checked_add(in_w)?);
    let rows = dilated_kernel(kernel_h, w.dilation_h)?;
    let taps = kernel_h.checked_mul(kernel_w)?;
    let fits = rows <= MAX_ROWS && rows.checked_mul(width).is_some_and(|n| n <= RING);
    let applies = depth_multiplier == 1 && channels % 4 == 0 && channels > 0 && taps <= MAX_TAPS;
    (fits && applies).then_some((rows, width))
}

/// Runs the depthwise convolution if the fast path applies and `scratch` holds the ring;
/// `false` otherwise, with nothing written, or with some groups written when a later one
/// needs the general path and it is not built (the caller's reference kernel then writes
/// every output again). Shapes were validated by the caller.
#[allow(clippy::too_many_arguments)]
// Never inlined: inlined, its stack buffers would add up with the other kernels' in the caller.
#[inline(never)]
pub(crate) fn depthwise(
    g: &Geometry,
    depth_multiplier: usize,
    stage: &Int8Stage,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    requant: Requant,
    output: &mut [i8],
    scratch: &mut [u8],
) -> bool {
    let taps = g.kernel_h * g.kernel_w;
    let channels = filter.len() / taps.max(1);
    let kernel = (g.kernel_h, g.kernel_w);
    let Some((ring_rows, width)) = ring(
        &g.window,
        kernel,
        (g.in_w, g.out_w),
        depth_multiplier,
        channels,
    ) else {
        return false;
    };
    let Some(scratch) = scratch.get_mut(..scratch_len((ring_rows, width), taps)) else {
        return false;
    };
    let Some((ring, rest)) = scratch.split_at_mut_checked(4 * ring_words((ring_rows, width)))
    else {
        return false;
    };
    let Some((consts, wide_taps)) = rest.split_at_mut_checked(size_of::<Dw3x3Consts>()) else {
        return false;
    };
    let (Some(ring), Some([consts]), Some(wide_taps)) = (
        crate::cast::slice_mut::<u32>(ring),
        crate::cast::slice_mut::<Dw3x3Consts>(consts),
        crate::cast::slice_mut::<[u32; 2]>(wide_taps),
    ) else {
        return false;
    };
    let zp = (-stage.input_offset) as u8;
    let (narrow, stage) = (*stage, &saturating(stage));
    let dw = Depthwise {
        g,
        input,
        filter,
        channels,
        off2: (stage.input_offset as u16 as u32) * 0x1_0001,
        width,
        ring_rows,
        bias,
        requant,
        stage,
        max_sum: max_product(stage).saturating_mul(taps as u64),
    };
    // Padding columns hold the zero point in every channel, for the whole layer.
    ring.fill(u32::from_le_bytes([zp; 4]));
    // A group the built paths do not take (feature `kernel-depthwise-general`) ends the fast
    // path: the caller runs the reference kernel over every output (none is an input).
    let done = (0..channels)
        .step_by(4)
        .all(|first| dw.group(first, ring, (&mut *consts, &mut *wide_taps), output));
    if done {
        super::binary_fast::clamp(output, narrow.act_min, narrow.act_max);
    }
    done
}

/// `stage` with outputs over all of int8: the kernels saturate to int8 and a narrower fused
/// activation is one clamp pass over the layer's outputs afterwards (clamping the saturated
/// value gives what clamping the value gives, the range being inside int8).
fn saturating(stage: &Int8Stage) -> Int8Stage {
    Int8Stage {
        act_min: i8::MIN,
        act_max: i8::MAX,
        ..*stage
    }
}

/// Whether the depthwise layer with this geometry needs the general group path (feature
/// `kernel-depthwise-general`): the fast path applies (`ring`), and the kernel is not 3x3 with
/// dilation 1.
pub(crate) fn takes_general(
    window: &Window,
    (kernel_h, kernel_w): (usize, usize),
    applies: bool,
) -> bool {
    let w = window;
    let usual = (kernel_h, kernel_w, w.dilation_h, w.dilation_w) == (3, 3, 1, 1);
    applies && !usual
}

/// Whether the depthwise layer needs its dead or slow channels written again in Rust (feature
/// `kernel-depthwise-fix`): the 3x3 row kernel runs it (`applies`, 3x3, dilation 1; any
/// activation range) and some channel's stage is not one the kernel's output stage takes.
pub(crate) fn takes_fix(
    window: &Window,
    (kernel_h, kernel_w): (usize, usize),
    stage: &Int8Stage,
    (bias, requant, channels): (Option<&[i32]>, Requant, usize),
    applies: bool,
) -> bool {
    if !applies || takes_general(window, (kernel_h, kernel_w), applies) {
        return false;
    }
    let stage = &saturating(stage);
    let max_sum = max_product(stage).saturating_mul((kernel_h * kernel_w) as u64);
    (0..channels).any(|c| !all_common([&channel_stage(c, (bias, requant), stage, max_sum)], stage))
}

struct Depthwise<'a> {
    g: &'a Geometry,
    input: &'a [i8],
    filter: &'a [i8],
    channels: usize,
    off2: u32,
    /// Words of a padded ring row.
    width: usize,
    ring_rows: usize,
    bias: Option<&'a [i32]>,
    requant: Requant<'a>,
    stage: &'a Int8Stage,
    max_sum: u64,
}

/// A group's constants and widened taps, in the layer's scratch: the kernel's, and those of
/// kernels larger than 3x3 (empty for the others).
type GroupConsts<'s> = (&'s mut Dw3x3Consts, &'s mut [[u32; 2]]);

impl Depthwise<'_> {
    /// Every output of channels `first..first + 4`.
    /// `false` if the group needs the general path and it is not built.
    fn group(
        &self,
        first: usize,
        ring: &mut [u32],
        consts: GroupConsts,
        output: &mut [i8],
    ) -> bool {
        let g = self.g;
        let w = &g.window;
        let usual = (g.kernel_h, g.kernel_w, w.dilation_h, w.dilation_w) == (3, 3, 1, 1);
        if usual {
            // The dead or slow channels are written again after the row kernel's frame is
            // gone: nested in it, their frame set VWW's peak stack.
            if let Some(others) = self.group_3x3(first, ring, consts.0, output) {
                if others != 0 {
                    if !cfg!(feature = "kernel-depthwise-fix") {
                        return false;
                    }
                    self.fix_channels((first, others), output);
                }
                return true;
            }
        }
        if cfg!(feature = "kernel-depthwise-general") {
            self.group_any(first, ring, consts, output);
            return true;
        }
        false
    }

    /// [`Self::group`] for the usual layer: 3x3, dilation 1 (its stage saturates to int8). The
    /// assembly row kernel runs all four channels; a channel whose stage it cannot take (a
    /// dead channel, a slow one) is then to be written again in Rust: the channels (a bit
    /// each) are returned. `None` (nothing written but `consts`) if the layer is not one the
    /// row kernel takes.
    #[inline(never)]
    fn group_3x3(
        &self,
        first: usize,
        ring: &mut [u32],
        consts: &mut Dw3x3Consts,
        output: &mut [i8],
    ) -> Option<u8> {
        let (g, c, st) = (self.g, self.channels, self.stage);
        let mut others = 0u8;
        for k in 0..4 {
            let s = channel_stage(first + k, (self.bias, self.requant), st, self.max_sum);
            if !all_common([&s], st) {
                others |= 1 << k;
            }
            (consts.bias[k], consts.rq[k]) = (s.bias, s.ssat());
        }
        self.widen_taps(first, &mut consts.wq);
        let mut kernel = Dw3x3::new((g.out_w, g.window.stride_w), self.off2, consts, c)?;
        self.rows_3x3(first, &mut kernel, ring, output);
        Some(others)
    }

    /// Channels `others` (a bit per channel of the group `first..first + 4`) of every output,
    /// in Rust from the input: what the row kernel wrote for them is replaced. Rare (VWW has
    /// two such groups), so simple: taps on padding add nothing (the zero point plus the
    /// offset).
    #[inline(never)]
    fn fix_channels(&self, (first, others): (usize, u8), output: &mut [i8]) {
        for ch in (first..first + 4).filter(|ch| others & (1 << (ch - first)) != 0) {
            let s = channel_stage(ch, (self.bias, self.requant), self.stage, self.max_sum);
            self.fix_channel(ch, &s, output);
        }
    }

    /// Channel `ch` (stage `s`) of [`Self::fix_channels`]. Not inlined: the stage's callees
    /// and the pixel loop's frame are not stacked.
    #[inline(never)]
    fn fix_channel(&self, ch: usize, s: &ChannelStage, output: &mut [i8]) {
        let (g, c, st) = (self.g, self.channels, self.stage);
        let w = &g.window;
        let off = i32::from(self.off2 as u16 as i16);
        let pixels = output.chunks_mut(c).enumerate();
        for (p, out) in pixels.take(g.batches * g.out_h * g.out_w) {
            let (b, oy, ox) = (p / (g.out_h * g.out_w), p / g.out_w % g.out_h, p % g.out_w);
            let mut acc = s.bias;
            for t in 0..9 {
                let (iy, ix) = (oy * w.stride_h + t / 3, ox * w.stride_w + t % 3);
                let (Some(iy), Some(ix)) = (iy.checked_sub(w.pad_top), ix.checked_sub(w.pad_left))
                else {
                    continue;
                };
                if iy >= g.in_h || ix >= g.in_w {
                    continue;
                }
                let x = self.input.get(((b * g.in_h + iy) * g.in_w + ix) * c + ch);
                let wt = self.filter.get(t * c + ch);
                if let (Some(&x), Some(&wt)) = (x, wt) {
                    acc = acc.wrapping_add((i32::from(x) + off) * i32::from(wt));
                }
            }
            if let Some(o) = out.get_mut(ch) {
                *o = s.out(acc, st);
            }
        }
    }

    /// Each tap's four channels' weights from `first`, widened: `[sxtb16(w), sxtb16_ror8(w)]`.
    fn widen_taps(&self, first: usize, wq: &mut [[u32; 2]]) {
        let c = self.channels;
        for (t, q) in wq.iter_mut().enumerate() {
            let word = word_at(self.filter, t * c + first).unwrap_or(0);
            *q = [sxtb16(word), sxtb16_ror8(word)];
        }
    }

    /// [`Self::group`] for any other layer.
    #[inline(never)]
    fn group_any(
        &self,
        first: usize,
        ring: &mut [u32],
        (consts, wide_taps): GroupConsts,
        output: &mut [i8],
    ) {
        let (g, c) = (self.g, self.channels);
        let mut st = [ChannelStage::default(); 4];
        channel_stages(
            &mut st,
            first,
            self.bias,
            self.requant,
            self.stage,
            self.max_sum,
        );
        let st = &st;
        let w = &g.window;
        let taps = g.kernel_h * g.kernel_w;
        let wq = match taps {
            0..=9 => consts.wq.get_mut(..taps),
            _ => wide_taps.get_mut(..taps),
        };
        let Some(wq) = wq else { return };
        self.widen_taps(first, wq);
        let asm = taps == 9 && g.kernel_w == 3 && w.dilation_w == 1 && all_common(st, self.stage);
        for (k, s) in st.iter().enumerate() {
            (consts.bias[k], consts.rq[k]) = (s.bias, s.ssat());
        }
        let (consts, wq) = match taps {
            0..=9 => (&*consts, &consts.wq[..taps]),
            _ => (&*consts, &wide_taps[..taps]),
        };
        let mut kernel = match asm {
            true => Dw3x3::new((g.out_w, w.stride_w), self.off2, consts, c),
            false => None,
        };
        let out_row = g.out_w * c;
        let (width, span) = (self.width, self.ring_rows);
        // The ring's last row: zero points only, so a window row on padding adds nothing.
        let padding_row = span * width;
        let mut outs = output.chunks_mut(out_row);
        for b in 0..g.batches {
            // Which input row each ring row holds (none yet).
            let mut held = [usize::MAX; MAX_ROWS];
            for oy in 0..g.out_h {
                let Some(out) = outs.next().and_then(|o| o.get_mut(first..)) else {
                    return;
                };
                // Each window row's ring row (`start` of its words).
                let mut rows = [padding_row; MAX_ROWS];
                let top = oy * w.stride_h;
                for (ky, r) in rows[..g.kernel_h].iter_mut().enumerate() {
                    let y = top + ky * w.dilation_h;
                    if y < w.pad_top || y - w.pad_top >= g.in_h {
                        continue;
                    }
                    let iy = y - w.pad_top;
                    let slot = iy % span;
                    let at = slot * width;
                    if held[slot] != iy {
                        held[slot] = iy;
                        let src = ((b * g.in_h + iy) * g.in_w) * c + first;
                        let dst = ring.get_mut(at + w.pad_left..at + w.pad_left + g.in_w);
                        if let (Some(src), Some(dst)) = (self.input.get(src..), dst) {
                            gather_words(src, c, dst);
                        }
                    }
                    *r = at;
                }
                let ring = &ring[..];
                match kernel.as_mut() {
                    Some(k) => k.row(ring, [rows[0], rows[1], rows[2]], out),
                    None => {
                        let ring_row = |ky: usize| {
                            let at = rows.get(ky).copied().unwrap_or(0);
                            ring.get(at..at + width).unwrap_or_default()
                        };
                        self.row(st, wq, &ring_row, out);
                    }
                }
            }
        }
    }

    /// Every output row of channels `first..first + 4` through the assembly row kernel: 3x3
    /// windows, dilation 1 (a ring of three rows).
    fn rows_3x3(&self, first: usize, kernel: &mut Dw3x3, ring: &mut [u32], output: &mut [i8]) {
        let (g, c, width) = (self.g, self.channels, self.width);
        let w = &g.window;
        let (pt, pl) = (w.pad_top, w.pad_left);
        // The ring's last row: zero points only, so a window row on padding adds nothing.
        let padding_row = 3 * width;
        // Never 0 for a layer that got here (`max` keeps a panic path out of the kernel).
        let mut outs = output.chunks_mut((g.out_w * c).max(1));
        for b in 0..g.batches {
            // Which input row each ring row holds (none yet).
            let mut held = [usize::MAX; 3];
            let image = b * g.in_h;
            for oy in 0..g.out_h {
                let Some(out) = outs.next().and_then(|o| o.get_mut(first..)) else {
                    return;
                };
                let top = oy * w.stride_h;
                // Ring offset of each window row; rows on padding read the padding row.
                let mut at = [padding_row; 3];
                for (ky, at) in at.iter_mut().enumerate() {
                    let y = top + ky;
                    if y < pt || y - pt >= g.in_h {
                        continue;
                    }
                    let iy = y - pt;
                    let slot = iy % 3;
                    *at = slot * width;
                    if held[slot] != iy {
                        held[slot] = iy;
                        let src = self.input.get(((image + iy) * g.in_w) * c + first..);
                        let dst = ring.get_mut(*at + pl..*at + pl + g.in_w);
                        if let (Some(src), Some(dst)) = (src, dst) {
                            gather_words(src, c, dst);
                        }
                    }
                }
                kernel.row(ring, at, out);
            }
        }
    }

    /// One output row in Rust: any kernel size, dilation and channel stages. Out of line, so
    /// [`Self::group_any`]'s frame does not hold its working set.
    #[inline(never)]
    fn row<'r>(
        &self,
        st: &[ChannelStage; 4],
        wq: &[[u32; 2]],
        ring_row: &impl Fn(usize) -> &'r [u32],
        out: &mut [i8],
    ) {
        let (g, c) = (self.g, self.channels);
        let w = &g.window;
        for (ox, px) in out.chunks_mut(c).take(g.out_w).enumerate() {
            let [mut c0, mut c1, mut c2, mut c3] = [st[0].bias, st[1].bias, st[2].bias, st[3].bias];
            for ky in 0..g.kernel_h {
                let row = ring_row(ky);
                for kx in 0..g.kernel_w {
                    let x = row
                        .get(ox * w.stride_w + kx * w.dilation_w)
                        .copied()
                        .unwrap_or(0);
                    let q = wq.get(ky * g.kernel_w + kx).copied().unwrap_or([0; 2]);
                    let (xe, xo) = (sxtab16(self.off2, x), sxtab16_ror8(self.off2, x));
                    c0 = smlabb(xe, q[0], c0);
                    c2 = smlatt(xe, q[0], c2);
                    c1 = smlabb(xo, q[1], c1);
                    c3 = smlatt(xo, q[1], c3);
                }
            }
            for ((o, s), a) in px.iter_mut().zip(st).zip([c0, c1, c2, c3]) {
                *o = s.out(a, self.stage);
            }
        }
    }
}

/// The int8 word at `data[i..i + 4]`.
#[inline(always)]
fn word_at(data: &[i8], i: usize) -> Option<u32> {
    let w = data.get(i..i.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8,
    ]))
}
