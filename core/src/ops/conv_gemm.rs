//! The fast int8 CONV_2D: every output pixel's window as an int16 column, times the filter
//! rows, two pixels and two output channels at a time.
//!
//! For a pair of output pixels the kernel widens the window's input values (plus the input
//! offset) to int16 into a column pair in the layer's scratch (arena bytes the host planned
//! for this operator only, see [`scratch_bytes`]), once, and then runs the filter rows of a
//! block of output channels over it. Taps in the padding are zeros in that column (the zero
//! point plus the offset). A 1x1 convolution's window is the pixel itself; a larger window is
//! gathered row by row. The OHWI filter row of output channel `oc` is already the window in
//! the column's order, so weights are read in place as int8 words.
//!
//! Each output channel's requantization is a [`ChannelStage`](super::fast_requant::ChannelStage): channels whose output cannot
//! depend on the input ([`Kind::Constant`](super::fast_requant::Kind::Constant)) are written without any multiplication; the others
//! are paired up, whatever their distance in the filter. Pairs whose channels the assembly's
//! output stage takes (nearly all) run in one assembly loop with the requantization inside
//! ([`gemm_pairs`](super::simd::gemm_pairs), 16 MACs in about 16 instructions); the filter's last rows, when a window
//! is not whole words, are read from zero-padded copies. Other pairs, and windows longer than
//! [`MAX_TAPS`] (done in slices, their sums kept per channel), run [`mac_2x2`] from Rust.

use super::conv2d::Geometry;
use super::fast_requant::max_product;
use super::simd::{mac_2x2, sxtab16, sxtab16_ror8};
use super::{Int8Stage, Requant, Shape4, Window};
use crate::geometry::{dense_tap_range, tap_range};
use core::ops::Range;

mod direct;
mod table;

use table::Tables;

/// Taps of one column held at once: a column pair is at most `4 * MAX_TAPS` bytes of scratch.
pub(crate) const MAX_TAPS: usize = 576;
/// Output channels whose constants (and, for long windows, sums) are held at once.
const OC_BLOCK: usize = 32;
/// Taps gathered as int8 at once when the channels are not whole words.
const SCRATCH: usize = 64;

/// A column pair: pixel A in lanes 0 and 1 of each group, pixel B in lanes 2 and 3.
type Cols = [[u32; 4]];

/// The filter rows from which whole-word reads of a window of `taps` run past the end of a
/// filter of `out_c` rows; they are read from zero-padded copies.
fn short_rows(taps: usize, out_c: usize) -> usize {
    let groups = taps.div_ceil(4);
    match (out_c * taps).checked_sub(4 * groups) {
        Some(room) => room / taps + 1,
        None => 0,
    }
}

/// Scratch bytes [`conv2d`] needs for a filter of `out_c` rows of `taps` taps: the column
/// pair; for the table path (`direct` false), the zero-padded copies of the filter's last rows
/// when a window is not whole words, and a block's [`Tables`]. Shared with the host's
/// planner, which reserves them in the arena.
pub(crate) fn scratch_bytes(taps: usize, out_c: usize, direct: bool) -> usize {
    let cols = 16 * taps.min(MAX_TAPS).div_ceil(4);
    if direct {
        return cols;
    }
    let tails = if taps % 4 != 0 && taps <= MAX_TAPS {
        out_c.saturating_sub(short_rows(taps, out_c)) * 4 * taps.div_ceil(4)
    } else {
        0
    };
    cols + tails + Tables::BYTES
}

/// [`scratch_bytes`] for a layer: whether [`conv2d`] takes the table-free loop depends on
/// its channels' stages.
pub(crate) fn layer_scratch(
    stage: &Int8Stage,
    (filter, shape): (&[i8], Shape4),
    bias: Option<&[i32]>,
    requant: Requant,
    output: Shape4,
) -> usize {
    let taps = shape.h.saturating_mul(shape.w).saturating_mul(shape.c);
    let table = takes_table(stage, (filter, shape), bias, requant, output);
    scratch_bytes(taps, shape.n, !table)
}

/// Whether [`conv2d`] runs this layer through its table path (cargo feature
/// `kernel-conv-table`) rather than the table-free loop.
pub(crate) fn takes_table(
    stage: &Int8Stage,
    (filter, shape): (&[i8], Shape4),
    bias: Option<&[i32]>,
    requant: Requant,
    output: Shape4,
) -> bool {
    let taps = shape.h.saturating_mul(shape.w).saturating_mul(shape.c);
    let max_sum = max_product(stage).saturating_mul(taps as u64);
    let pixels = output.n.saturating_mul(output.h).saturating_mul(output.w);
    let consts = (bias, requant, max_sum);
    direct::direct_pairs(taps, (filter, shape.n), consts, stage, pixels).is_none()
}

/// Whether the layer's windows are gathered as rectangles of whole words (feature
/// `kernel-conv-rect`): channels of whole words, a window wider than the pixel itself (or
/// padded), gathered whole.
pub(crate) fn takes_rect(
    window: &Window,
    (kernel_h, kernel_w, in_c): (usize, usize, usize),
) -> bool {
    let w = window;
    let one_pixel = (kernel_h, kernel_w, w.pad_top, w.pad_left) == (1, 1, 0, 0);
    in_c % 4 == 0 && !one_pixel && !takes_runs(window, (kernel_h, kernel_w, in_c))
}

/// Whether the table-free loop leaves some of the layer's channels to Rust (cargo feature
/// `kernel-conv-tail`): an odd channel count, or windows that are not whole words.
pub(crate) fn takes_tail(
    stage: &Int8Stage,
    (filter, shape): (&[i8], Shape4),
    bias: Option<&[i32]>,
    requant: Requant,
    output: Shape4,
) -> bool {
    let taps = shape.h.saturating_mul(shape.w).saturating_mul(shape.c);
    let max_sum = max_product(stage).saturating_mul(taps as u64);
    let pixels = output.n.saturating_mul(output.h).saturating_mul(output.w);
    let consts = (bias, requant, max_sum);
    direct::takes_tail(taps, (filter, shape.n), consts, stage, pixels)
}

/// Whether some window of the layer may be gathered run by run (feature
/// `kernel-conv-gather-runs`): a window cut in slices (longer than [`MAX_TAPS`]), dilated
/// across, or longer than [`SCRATCH`] with channels not whole words; never a 1x1 window
/// without padding over whole words (each is one run of the input).
pub(crate) fn takes_runs(
    window: &Window,
    (kernel_h, kernel_w, in_c): (usize, usize, usize),
) -> bool {
    let w = window;
    let one_pixel = (kernel_h, kernel_w, w.pad_top, w.pad_left) == (1, 1, 0, 0) && in_c % 4 == 0;
    let taps = kernel_h.saturating_mul(kernel_w).saturating_mul(in_c);
    let cut = taps > MAX_TAPS || w.dilation_w != 1 || (in_c % 4 != 0 && taps > SCRATCH);
    cut && !one_pixel
}

/// Everything about a validated convolution the loops need.
struct Conv<'a> {
    g: &'a Geometry,
    input: &'a [i8],
    filter: &'a [i8],
    in_c: usize,
    out_c: usize,
    /// Taps of a window: `kernel_h * kernel_w * in_c`.
    taps: usize,
    /// Input offset in both halfwords.
    off2: u32,
    /// The input's zero point: the int8 value of padding.
    zero_point: i8,
    stage: &'a Int8Stage,
}

/// A convolution's arguments, as the kernel entry points take them (shapes and buffers
/// validated by the caller).
pub(crate) struct Args<'a> {
    pub(crate) g: &'a Geometry,
    pub(crate) stage: &'a Int8Stage,
    pub(crate) input: &'a [i8],
    pub(crate) in_c: usize,
    pub(crate) filter: &'a [i8],
    pub(crate) bias: Option<&'a [i32]>,
    pub(crate) requant: Requant<'a>,
    pub(crate) out_c: usize,
}

/// The outcome of [`conv2d`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// Every output written.
    Done,
    /// Nothing written: the layer takes the table path ([`conv2d_table`]).
    Table,
    /// Nothing written: the fast kernel does not take this layer (or `scratch` is too short).
    No,
}

/// Runs the convolution through the table-free loop if the layer takes it. Never inlined:
/// inlined, its stack buffers would add up with the other kernels' in the caller.
#[inline(never)]
pub(crate) fn conv2d(a: &Args, output: &mut [i8], scratch: &mut [u8]) -> Ran {
    match setup(a, output, scratch) {
        Setup::Done => Ran::Done,
        Setup::No => Ran::No,
        Setup::Run(conv, cols, _, max_sum) => {
            match conv.direct((a.bias, a.requant, max_sum), cols, output) {
                true => Ran::Done,
                false => Ran::Table,
            }
        }
    }
}

/// Runs the convolution through the table path (a layer [`conv2d`] answered [`Ran::Table`]
/// for); `false` (nothing written) if `scratch` is smaller than [`scratch_bytes`] or the path
/// is not built. A sibling of [`conv2d`], not its callee: the usual layer's frame is not
/// under this one's.
#[inline(never)]
pub(crate) fn conv2d_table(a: &Args, output: &mut [i8], scratch: &mut [u8]) -> bool {
    match setup(a, output, scratch) {
        Setup::Done => true,
        Setup::No => false,
        Setup::Run(conv, cols, rest, max_sum) => {
            conv.blocks((a.bias, a.requant, max_sum), cols, rest, output)
        }
    }
}

enum Setup<'a, 's> {
    Done,
    No,
    Run(Conv<'a>, &'s mut Cols, &'s mut [u8], u64),
}

/// What both entry points start with: the layer's loops state and its scratch's columns.
#[inline(always)]
fn setup<'a, 's>(a: &Args<'a>, output: &[i8], scratch: &'s mut [u8]) -> Setup<'a, 's> {
    let (g, stage, in_c, out_c) = (a.g, a.stage, a.in_c, a.out_c);
    let taps = g.kernel_h * g.kernel_w * in_c;
    if taps == 0 || out_c == 0 || output.is_empty() {
        return Setup::Done;
    }
    let window = (g.kernel_h, g.kernel_w, in_c);
    let runs = takes_runs(&g.window, window);
    if runs && !cfg!(feature = "kernel-conv-gather-runs") {
        return Setup::No;
    }
    if !cfg!(feature = "kernel-conv-rect") && takes_rect(&g.window, window) {
        return Setup::No;
    }
    let cols_len = 16 * taps.min(MAX_TAPS).div_ceil(4);
    let Some((cols, rest)) = scratch.split_at_mut_checked(cols_len) else {
        return Setup::No;
    };
    let Some(cols) = crate::cast::slice_mut::<[u32; 4]>(cols) else {
        return Setup::No;
    };
    let conv = Conv {
        g,
        input: a.input,
        filter: a.filter,
        in_c,
        out_c,
        taps,
        off2: (stage.input_offset as u16 as u32) * 0x1_0001,
        zero_point: (-stage.input_offset) as i8,
        stage,
    };
    let max_sum = max_product(stage).saturating_mul(taps as u64);
    Setup::Run(conv, cols, rest, max_sum)
}

impl Conv<'_> {
    /// Fills `cols` with taps `range` of the windows of pixels `p.0` (lanes 0, 1) and `p.1`
    /// (lanes 2, 3), plus the input offset; taps past the window's end, up to a whole group,
    /// are zero. `range.start` is a multiple of 4. Never inlined: in the pixel loop's frame its
    /// locals would add to every gather path's (measured: +72 B of stack when it was).
    #[inline(never)]
    fn gather(&self, p: (usize, usize), range: Range<usize>, cols: &mut Cols) {
        let len = range.end - range.start;
        let Some(groups) = cols.get_mut(..len.div_ceil(4)) else {
            return;
        };
        if let (Some(a), Some(b)) = (self.pixel_run(p.0, &range), self.pixel_run(p.1, &range)) {
            widen2(a, b, self.off2, groups);
            return;
        }
        let whole = range.start == 0 && range.end == self.taps && self.g.window.dilation_w == 1;
        if whole && self.in_c % 4 == 0 {
            // Not built only where `setup` found no window needs it (see `takes_rect`).
            if cfg!(feature = "kernel-conv-rect") {
                self.gather_rect(p, groups);
            }
            return;
        }
        if whole && len <= SCRATCH {
            self.gather_short(p, len, groups);
            return;
        }
        // Not built only where `conv2d` found no window needs it (see `takes_runs`).
        if !cfg!(feature = "kernel-conv-gather-runs") {
            return;
        }
        if self.in_c % 4 == 0 {
            self.gather_word_runs(p, range, groups);
        } else {
            self.gather_runs(p, range, groups);
        }
    }

    /// [`Self::gather`] for windows cut in runs whose channels are whole words: every run
    /// starts and ends on a group boundary, widened in place.
    #[inline(never)]
    fn gather_word_runs(&self, p: (usize, usize), range: Range<usize>, groups: &mut [[u32; 4]]) {
        self.each_run(p.0, range.clone(), |at, n, src| {
            let dst = &mut groups[at / 4..][..n / 4];
            match src {
                Some(x) => widen::<0>(x, self.off2, dst),
                None => zero::<0>(dst),
            }
        });
        if p.1 == p.0 {
            for g in groups.iter_mut() {
                [g[2], g[3]] = [g[0], g[1]];
            }
        } else {
            self.each_run(p.1, range, |at, n, src| {
                let dst = &mut groups[at / 4..][..n / 4];
                match src {
                    Some(x) => widen::<2>(x, self.off2, dst),
                    None => zero::<2>(dst),
                }
            });
        }
    }

    /// [`Self::gather`] for a whole window, dilation 1 across, whose channels are whole words:
    /// its rows on the input, widened in place; padding zeroed first. Out of line, as the
    /// other paths.
    #[inline(never)]
    fn gather_rect(&self, p: (usize, usize), groups: &mut [[u32; 4]]) {
        // The window's rows on the input, widened in place; padding zeroed first.
        for (pixel, lane) in [(p.0, 0), (p.1, 2)] {
            let r = self.rect(pixel);
            if lane == 0 {
                if !r.full {
                    zero::<0>(groups);
                }
                r.rows(self.input, |dst, x| {
                    if let Some(groups) = groups.get_mut(dst / 4..) {
                        widen::<0>(x, self.off2, groups);
                    }
                });
            } else {
                if !r.full {
                    zero::<2>(groups);
                }
                r.rows(self.input, |dst, x| {
                    if let Some(groups) = groups.get_mut(dst / 4..) {
                        widen::<2>(x, self.off2, groups);
                    }
                });
            }
        }
    }

    /// [`Self::gather`] for a whole window of at most [`SCRATCH`] taps whose channels are not
    /// whole words: its rows as int8 (padding: the zero point), then widened. Out of line, so
    /// the other paths' frames do not hold the int8 row.
    #[inline(never)]
    fn gather_short(&self, p: (usize, usize), len: usize, groups: &mut [[u32; 4]]) {
        let mut scratch = [0i8; SCRATCH];
        let Some(row) = scratch.get_mut(..len.div_ceil(4) * 4) else {
            return;
        };
        for (pixel, lane) in [(p.0, 0), (p.1, 2)] {
            let r = self.rect(pixel);
            // Padding holds the zero point; a window wholly on the input only has the
            // bytes past its end to pad.
            let pad = if r.full { len } else { 0 };
            if let Some(padding) = row.get_mut(pad..) {
                padding.fill(self.zero_point);
            }
            r.rows(self.input, |dst, x| {
                if let Some(d) = row.get_mut(dst..dst + x.len()) {
                    copy_short(d, x);
                }
            });
            if lane == 0 {
                widen::<0>(row, self.off2, groups);
            } else {
                widen::<2>(row, self.off2, groups);
            }
        }
    }

    /// [`Self::gather`] for any other window whose channels are not whole words: int8
    /// (padding: the zero point) [`SCRATCH`] taps at a time, padded to whole words, widened.
    #[inline(never)]
    fn gather_runs(&self, p: (usize, usize), range: Range<usize>, groups: &mut [[u32; 4]]) {
        let mut scratch = [0i8; SCRATCH];
        let mut start = range.start;
        while start < range.end {
            let n = SCRATCH.min(range.end - start);
            let dst = &mut groups[(start - range.start) / 4..][..n.div_ceil(4)];
            let row = &mut scratch[..n.div_ceil(4) * 4];
            for (pixel, lane) in [(p.0, 0), (p.1, 2)] {
                row.fill(self.zero_point);
                self.each_run(pixel, start..start + n, |at, n, src| {
                    if let (Some(x), Some(d)) = (src, row.get_mut(at..at + n)) {
                        copy_short(d, x);
                    }
                });
                if lane == 0 {
                    widen::<0>(row, self.off2, dst);
                } else {
                    widen::<2>(row, self.off2, dst);
                }
            }
            start += n;
        }
    }

    /// The rectangle of pixel `pixel`'s window that lies on the input (dilation 1 across).
    fn rect(&self, pixel: usize) -> Rect {
        let g = self.g;
        let w = &g.window;
        let ic = self.in_c;
        let (b, oy, ox) = out_pixel(g, pixel);
        let (y0, x0) = (oy * w.stride_h, ox * w.stride_w);
        let ky = match w.dilation_h {
            1 => dense_tap_range(y0, w.pad_top, g.in_h, g.kernel_h),
            d => tap_range(y0, w.pad_top, g.in_h, g.kernel_h, d),
        };
        let kx = dense_tap_range(x0, w.pad_left, g.in_w, g.kernel_w);
        let (iy, ix) = (y0 + ky.start * w.dilation_h, x0 + kx.start);
        Rect {
            first: ((b * g.in_h + iy - w.pad_top) * g.in_w + ix - w.pad_left) * ic,
            row_step: w.dilation_h * g.in_w * ic,
            tap: (ky.start * g.kernel_w + kx.start) * ic,
            tap_step: g.kernel_w * ic,
            rows: ky.len(),
            len: kx.len() * ic,
            full: ky.len() == g.kernel_h && kx.len() == g.kernel_w,
        }
    }

    /// Taps `range` of pixel `pixel`'s window, if the window is one pixel of the input and
    /// the range whole words: 1x1 convolutions without padding.
    #[inline(always)]
    fn pixel_run(&self, pixel: usize, range: &Range<usize>) -> Option<&[i8]> {
        let (g, ic) = (self.g, self.in_c);
        let w = &g.window;
        if g.kernel_h != 1 || g.kernel_w != 1 || w.pad_top != 0 || w.pad_left != 0 || ic % 4 != 0 {
            return None;
        }
        let at = if w.stride_h == 1 && w.stride_w == 1 && g.in_w == g.out_w && g.in_h == g.out_h {
            pixel
        } else {
            let (b, oy, ox) = out_pixel(g, pixel);
            (b * g.in_h + oy * w.stride_h) * g.in_w + ox * w.stride_w
        };
        self.input.get(at * ic + range.start..at * ic + range.end)
    }

    /// Calls `f(at, n, src)` for each run of `n` taps of pixel `pixel`'s window inside
    /// `range`, `at` counted from `range.start`: `src` holds the run's input values, or is
    /// `None` where the window lies on padding.
    fn each_run(
        &self,
        pixel: usize,
        range: Range<usize>,
        mut f: impl FnMut(usize, usize, Option<&[i8]>),
    ) {
        let g = self.g;
        let w = &g.window;
        let ic = self.in_c;
        let (b, oy, ox) = out_pixel(g, pixel);
        let (y0, x0) = (oy * w.stride_h, ox * w.stride_w);
        let ky = tap_range(y0, w.pad_top, g.in_h, g.kernel_h, w.dilation_h);
        let kx = tap_range(x0, w.pad_left, g.in_w, g.kernel_w, w.dilation_w);
        let row_len = g.kernel_w * ic;
        let image = b * g.in_h * g.in_w;
        // Taps [lo, hi) of the window, clipped to `range`; `src` starts at tap `lo`.
        let mut emit = |lo: usize, hi: usize, src: Option<&[i8]>| {
            let (s, e) = (lo.max(range.start), hi.min(range.end));
            if s < e {
                f(
                    s - range.start,
                    e - s,
                    src.and_then(|x| x.get(s - lo..e - lo)),
                );
            }
        };
        for r in 0..g.kernel_h {
            let lo = r * row_len;
            if lo >= range.end {
                break;
            }
            if lo + row_len <= range.start {
                continue;
            }
            if !ky.contains(&r) {
                emit(lo, lo + row_len, None);
                continue;
            }
            let in_row = image + (y0 + r * w.dilation_h - w.pad_top) * g.in_w;
            if w.dilation_w == 1 {
                // The valid taps of the row are one run of the input.
                let (a, z) = (lo + kx.start * ic, lo + kx.end * ic);
                emit(lo, a, None);
                if z > a {
                    let first = (in_row + x0 + kx.start - w.pad_left) * ic;
                    emit(a, z, self.input.get(first..first + (z - a)));
                }
                emit(z, lo + row_len, None);
            } else {
                for c in 0..g.kernel_w {
                    let (a, z) = (lo + c * ic, lo + (c + 1) * ic);
                    if kx.contains(&c) {
                        let ix = in_row + x0 + c * w.dilation_w - w.pad_left;
                        emit(a, z, self.input.get(ix * ic..(ix + 1) * ic));
                    } else {
                        emit(a, z, None);
                    }
                }
            }
        }
    }
}

/// `init + [A.row0, A.row1, B.row0, B.row1]` over a window of `taps` taps: row 0 is `w[0..]`,
/// row 1 is `w[stride..]`, `cols` holds `taps.div_ceil(4)` groups. A last partial group reads
/// whole weight words when `w` extends past them (the extra bytes meet zero columns) and a
/// zero-padded copy of the last few weights otherwise.
#[inline(always)]
fn mac_rows(cols: &[[u32; 4]], w: &[i8], stride: usize, taps: usize, init: [i32; 4]) -> [i32; 4] {
    if taps % 4 == 0 || w.len() >= stride + 4 * cols.len() {
        return mac_2x2(cols, w, stride, init);
    }
    let whole = taps / 4;
    let acc = mac_2x2(&cols[..whole], w, stride, init);
    let mut last = [0i8; 8];
    let n = taps % 4;
    let (r0, r1) = (w.get(4 * whole..), w.get(stride + 4 * whole..));
    if let (Some(r0), Some(r1)) = (r0.and_then(|r| r.get(..n)), r1.and_then(|r| r.get(..n))) {
        last[..n].copy_from_slice(r0);
        last[4..4 + n].copy_from_slice(r1);
    }
    mac_2x2(&cols[whole..], &last, 4, acc)
}

/// Widens `x` (whole words) plus the offset into lanes `L` and `L + 1` of `dst`.
#[inline(always)]
fn widen<const L: usize>(x: &[i8], off2: u32, dst: &mut [[u32; 4]]) {
    for (x, d) in x.chunks_exact(4).zip(dst) {
        let word = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
        d[L] = sxtab16(off2, word);
        d[L + 1] = sxtab16_ror8(off2, word);
    }
}

/// Output pixel `pixel`'s batch, row and column. Checked divisions: the shapes were
/// validated (no zero), so they cost a compare, not a panic path.
#[inline(always)]
fn out_pixel(g: &Geometry, pixel: usize) -> (usize, usize, usize) {
    let per_image = g.out_h * g.out_w;
    let (b, rest) = (
        pixel.checked_div(per_image).unwrap_or(0),
        pixel.checked_rem(per_image).unwrap_or(0),
    );
    let (oy, ox) = (
        rest.checked_div(g.out_w).unwrap_or(0),
        rest.checked_rem(g.out_w).unwrap_or(0),
    );
    (b, oy, ox)
}

/// Widens `a` and `b` (whole words) plus the offset into lanes 0, 1 and 2, 3 of `dst`.
#[inline(always)]
fn widen2(a: &[i8], b: &[i8], off2: u32, dst: &mut [[u32; 4]]) {
    for ((a, b), d) in a.chunks_exact(4).zip(b.chunks_exact(4)).zip(dst) {
        let wa = u32::from_le_bytes([a[0] as u8, a[1] as u8, a[2] as u8, a[3] as u8]);
        let wb = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
        *d = [
            sxtab16(off2, wa),
            sxtab16_ror8(off2, wa),
            sxtab16(off2, wb),
            sxtab16_ror8(off2, wb),
        ];
    }
}

/// The part of a window that lies on the input: `rows` runs of `len` input values, run `k`
/// at `input[first + k * row_step..]` and at tap `tap + k * tap_step` of the window.
struct Rect {
    first: usize,
    row_step: usize,
    tap: usize,
    tap_step: usize,
    rows: usize,
    len: usize,
    /// The whole window lies on the input.
    full: bool,
}

impl Rect {
    /// Calls `f(tap, values)` for each run.
    #[inline(always)]
    fn rows(&self, input: &[i8], mut f: impl FnMut(usize, &[i8])) {
        let (mut at, mut tap) = (self.first, self.tap);
        for _ in 0..self.rows {
            if let Some(x) = input.get(at..at + self.len) {
                f(tap, x);
            }
            at += self.row_step;
            tap += self.tap_step;
        }
    }
}

/// Copies a short run (a window row of a few channels) without a `memcpy` call: words, then
/// up to three bytes.
#[inline(always)]
fn copy_short(dst: &mut [i8], src: &[i8]) {
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    for i in 0..3 {
        if let (Some(d), Some(&s)) = (d.get_mut(i), s.get(i)) {
            *d = s;
        }
    }
}

/// Zeros lanes `L` and `L + 1` of `dst`: padding, whose value plus the offset is zero.
#[inline(always)]
fn zero<const L: usize>(dst: &mut [[u32; 4]]) {
    for d in dst {
        d[L] = 0;
        d[L + 1] = 0;
    }
}
