//! Arm DSP-extension arithmetic for the int8 kernels, and the inner loops built on it.
//!
//! This and `binary_fast` (ADD, SUB and MUL's loops) are the kernels' only modules with
//! `unsafe` code. Under `cfg(mote_dsp)` (set by
//! `core/build.rs` for ARMv7E-M, and for ARMv8-M Mainline built with the DSP extension) each
//! primitive is one instruction (`SXTAB16`, `SMMULR`) and each loop is hand-scheduled
//! assembly, in `simd/dsp.rs`; everywhere else (the host, thumbv6m) `simd/portable.rs` runs
//! the same functions in plain Rust with the same results, bit for bit. Every sum wraps modulo
//! 2^32 exactly like the instructions (whose Q flag nobody reads), so the order of the terms
//! never changes a result. The tests below compare the portable versions with plain integer
//! formulas; `tests/tests/kernel_equivalence.rs` runs the assembly in QEMU against the host.
//!
//! Every loop has a safe wrapper here that checks, once, every bound its assembly relies on
//! (or builds a checked table, [`PairTable`]), and does nothing when a check fails; callers
//! pass valid arguments, so that never happens.
//!
//! | loop | does | used by |
//! |---|---|---|
//! | [`mac_2x2`] | 2 pixels x 2 weight rows over q15 columns, 16 MACs in 16 instructions | conv (Rust paths) |
//! | [`gemm_pairs`] | [`mac_2x2`] for a table of channel pairs, requantized and stored | conv |
//! | [`gemm_direct`] | [`gemm_pairs`] for consecutive channels, constants derived in the loop | conv, usual layers |
//! | [`mac_1x4`] | 1 column x 4 weight rows, 16 MACs in 21 instructions | fully connected |
//! | [`gemv_quads`] | [`mac_1x4`] for consecutive quads of rows, requantized and stored | fully connected |
//! | [`gemv_quads_i8`] | [`gemv_quads`] widening the int8 input as it reads it (no column) | fully connected, long rows |
//! | [`Dw3x3`] | a row of 3x3 depthwise outputs, four channels, requantized and stored | depthwise |
//! | [`gather_words`] | strided words: one pixel's four channels at a time | depthwise |
//! | [`column_run`] | a run of `k x 1` depthwise outputs, four channels, requantized and stored | depthwise, `H x 1` maps |
//!
//! Vocabulary: an int8 *word* is four int8 values read little-endian from memory as a `u32`.
//! `SXTB16` takes bytes 0 and 2 of a word to the two signed halfwords of the result (low,
//! high); rotating the word by 8 first takes bytes 1 and 3. A *q15 group* is four int8 values
//! widened to int16 in that order: `[(x0, x2), (x1, x3)]`, two `u32`s. Multiplying it with
//! `SMLAD` against a weight word split the same way gives `x0*w0 + x2*w2` and `x1*w1 + x3*w3`.
//! Weights are read in place with `LDR`, which allows unaligned addresses on ARMv7-M and
//! ARMv8-M (with `CCR.UNALIGN_TRP` clear, the reset value); `LDM`/`LDRD` only read this
//! module's callers' word-aligned buffers.

/// `(x0 + off, x2 + off)` as two int16 halfwords, from the int8 word `x` and an offset
/// `off2 = off * 0x0001_0001` already in both halfwords.
#[inline(always)]
pub(crate) fn sxtab16(off2: u32, x: u32) -> u32 {
    imp::sxtab16(off2, x)
}

/// `(x1 + off, x3 + off)`: as [`sxtab16`] for the odd bytes.
#[inline(always)]
pub(crate) fn sxtab16_ror8(off2: u32, x: u32) -> u32 {
    imp::sxtab16_ror8(off2, x)
}

/// `(w0, w2)` sign-extended to two int16 halfwords.
#[inline(always)]
pub(crate) fn sxtb16(w: u32) -> u32 {
    imp::sxtab16(0, w)
}

/// `(w1, w3)` sign-extended to two int16 halfwords.
#[inline(always)]
pub(crate) fn sxtb16_ror8(w: u32) -> u32 {
    imp::sxtab16_ror8(0, w)
}

/// `round(a * b / 2^32)` with ties up: `(a * b + 2^31) >> 32`.
#[inline(always)]
pub(crate) fn smmulr(a: i32, b: i32) -> i32 {
    imp::smmulr(a, b)
}

/// `clamp((y + (y >> 31) + add) >> right, -128, 127)` with `y = smmulr(acc << left, mult)`:
/// the output stage the assembly loops run (six instructions, in their `requant_in_place`),
/// as a formula for the portable code and the tests. `left` and `right` are below 32.
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn requant_ssat(acc: i32, left: u32, mult: i32, add: i32, right: u32) -> i32 {
    portable::requant_ssat(acc, left, mult, add, right)
}

/// Four sums at once: pixels A and B of a q15 column pair times two int8 weight rows.
///
/// `cols[g] = [A(x0,x2), A(x1,x3), B(x0,x2), B(x1,x3)]` for taps `4g..4g + 4`; row 0 is
/// `w[0..]`, row 1 is `w[stride..]`. Returns `acc + [A.row0, A.row1, B.row0, B.row1]` over the
/// first `cols.len()` groups, or fewer if `w` is too short to hold them (callers pass enough).
#[inline]
pub(crate) fn mac_2x2(cols: &[[u32; 4]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
    let groups = cols.len().min(w.len().saturating_sub(stride) / 4);
    debug_assert_eq!(groups, cols.len(), "mac_2x2: weight rows too short");
    if groups == 0 {
        return acc;
    }
    imp::mac_2x2(&cols[..groups], w, stride, acc)
}

/// One channel's requantization constants for [`gemm_pairs`]: the output is
/// [`requant_ssat`]`(acc, left, mult, add, right)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct RequantSsat {
    pub(crate) mult: i32,
    pub(crate) left: u32,
    pub(crate) add: i32,
    pub(crate) right: u32,
}

/// One channel pair of a [`PairTable`]; the assembly reads these 14 words in this order.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct PairDesc {
    /// Address of row 0.
    w: *const i8,
    /// Row 1's address minus row 0's, wrapping.
    stride: usize,
    bias: [i32; 2],
    rq: [RequantSsat; 2],
    /// Output indices of the two channels.
    out: [usize; 2],
}

// SAFETY: `repr(C)`, made of a raw pointer, usizes, i32s and u32s, each field a multiple of
// the pointer's size from the start (no padding); every bit pattern is a valid value (a raw
// pointer is only ever dereferenced by `gemm_pairs` after `PairTable::push` wrote it).
unsafe impl crate::cast::Pod for PairDesc {}

/// Up to `N` channel pairs for [`gemm_pairs`], each checked when added: both rows hold the
/// `4 * groups` bytes read, the output indices are below `out_len`. The descriptors live
/// where the caller puts them (a kernel's arena scratch).
#[derive(Debug)]
pub(crate) struct PairTable<'a, const N: usize> {
    pairs: &'a mut [PairDesc; N],
    /// Each pair's rows (the portable code reads them here; the assembly through `pairs`).
    #[cfg(not(mote_dsp))]
    rows: [(&'a [i8], &'a [i8]); N],
    len: usize,
    groups: usize,
    out_len: usize,
}

impl<'a, const N: usize> PairTable<'a, N> {
    /// An empty table in `pairs` (whatever they hold) for windows of `groups` q15 groups,
    /// writing outputs `0..out_len`.
    pub(crate) fn new(pairs: &'a mut [PairDesc; N], groups: usize, out_len: usize) -> Self {
        Self {
            pairs,
            #[cfg(not(mote_dsp))]
            rows: [(&[], &[]); N],
            len: 0,
            groups,
            out_len,
        }
    }

    /// Adds the pair with weight rows `rows` (each at least `4 * groups` bytes), biases,
    /// constants and output indices; `false` (and nothing added) if it does not fit the checks
    /// or the table is full.
    pub(crate) fn push(
        &mut self,
        rows: (&'a [i8], &'a [i8]),
        bias: [i32; 2],
        rq: [RequantSsat; 2],
        out: [usize; 2],
    ) -> bool {
        let need = self.groups.saturating_mul(4);
        let fits = rows.0.len() >= need && rows.1.len() >= need;
        if !fits || self.len == N || out[0] >= self.out_len || out[1] >= self.out_len {
            return false;
        }
        let (w, w1) = (rows.0.as_ptr(), rows.1.as_ptr());
        self.pairs[self.len] = PairDesc {
            w,
            // Row 1 as an offset from row 0, wrapping: the assembly adds them back.
            stride: (w1 as usize).wrapping_sub(w as usize),
            bias,
            rq,
            out,
        };
        #[cfg(not(mote_dsp))]
        {
            self.rows[self.len] = rows;
        }
        self.len += 1;
        true
    }
}

/// For each pair of `table`: the sums of pixels A and B of `cols` (as [`mac_2x2`]) over both
/// rows plus the biases, requantized by [`requant_ssat`], stored to `out_a` and `out_b` at the
/// pair's output indices. Does nothing unless `cols` holds exactly the table's groups and
/// both outputs hold its indices.
pub(crate) fn gemm_pairs<const N: usize>(
    cols: &[[u32; 4]],
    table: &PairTable<N>,
    out_a: &mut [i8],
    out_b: &mut [i8],
) {
    let ok = table.groups >= 1
        && cols.len() == table.groups
        && out_a.len() >= table.out_len
        && out_b.len() >= table.out_len;
    if ok && table.len > 0 {
        imp::gemm_pairs(cols, table, out_a, out_b);
    }
}

/// Four sums at once: one q15 column times four int8 weight rows.
///
/// `col[g] = [(x0, x2), (x1, x3)]` for taps `4g..4g + 4`; row `k` is `w[k * stride..]`.
/// Returns `acc + [row0, row1, row2, row3]` over the first `col.len()` groups, or fewer if `w`
/// is too short to hold them (callers pass enough).
#[inline]
pub(crate) fn mac_1x4(col: &[[u32; 2]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
    let rows = stride.saturating_mul(3);
    let groups = col.len().min(w.len().saturating_sub(rows) / 4);
    debug_assert_eq!(groups, col.len(), "mac_1x4: weight rows too short");
    if groups == 0 {
        return acc;
    }
    imp::mac_1x4(&col[..groups], w, stride, acc)
}

/// `dst[i] = ` the int8 word at `src[i * stride..][..4]`, for every `i`: one pixel's four
/// channels at a time. Does nothing if `src` is too short.
pub(crate) fn gather_words(src: &[i8], stride: usize, dst: &mut [u32]) {
    let need = dst
        .len()
        .checked_sub(1)
        .and_then(|last| last.checked_mul(stride))
        .and_then(|s| s.checked_add(4));
    if need.is_some_and(|n| n <= src.len()) {
        imp::gather_words(src, stride, dst);
    }
}

/// A [`Dw3x3`] kernel's four channels' biases and output-stage constants and its nine widened
/// taps (`[sxtb16(w), sxtb16_ror8(w)]` for tap `3 * ky + kx`): 38 words the caller keeps in
/// the layer's scratch, so they are not in a kernel frame.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct Dw3x3Consts {
    pub(crate) bias: [i32; 4],
    pub(crate) rq: [RequantSsat; 4],
    pub(crate) wq: [[u32; 2]; 9],
}

// SAFETY: `repr(C)` and made of i32 and u32 only: no padding, every bit pattern valid.
unsafe impl crate::cast::Pod for Dw3x3Consts {}

/// The assembly's view of a [`Dw3x3`] row: 11 words, `repr(C)`, offsets fixed.
#[derive(Debug)]
#[repr(C)]
struct DwArgs {
    /// Window rows 0, 1, 2 at the current pixel (byte offset 0).
    rows: [*const u32; 3],
    /// The nine widened taps (12).
    wq: *const [u32; 2],
    off2: u32,
    /// Pixels left (20).
    n: usize,
    /// Bytes from one window to the next (24).
    step: usize,
    /// The current pixel's first output (28).
    out: *mut i8,
    out_stride: usize,
    /// The four biases (36) and the four channels' [`RequantSsat`]s (40).
    bias: *const i32,
    rq: *const RequantSsat,
}

/// A 3x3 depthwise convolution of four channels along output rows, requantized by
/// [`requant_ssat`]: the input rows are words (the four channels of one pixel), padded so that
/// every window lies on them.
#[derive(Debug)]
pub(crate) struct Dw3x3<'c> {
    args: DwArgs,
    consts: &'c Dw3x3Consts,
    /// Words from one window to the next (the horizontal stride).
    stride: usize,
    /// Pixels a row (at least 1), words a row reads from its start, output bytes it writes.
    n: usize,
    need: usize,
    out_need: usize,
}

impl<'c> Dw3x3<'c> {
    /// The row kernel for `n` output pixels a row, horizontal stride `stride` (in pixels),
    /// input offset `off2` (both halfwords), the channels' constants and taps, and
    /// `out_stride` bytes between output pixels. `None` if `n` is zero or the sizes overflow.
    pub(crate) fn new(
        (n, stride): (usize, usize),
        off2: u32,
        consts: &'c Dw3x3Consts,
        out_stride: usize,
    ) -> Option<Self> {
        let last = n.checked_sub(1)?;
        let need = last.checked_mul(stride)?.checked_add(3)?;
        let out_need = last.checked_mul(out_stride)?.checked_add(4)?;
        Some(Self {
            args: DwArgs {
                rows: [core::ptr::null(); 3],
                wq: consts.wq.as_ptr(),
                off2,
                n: 0,
                step: stride.checked_mul(4)?,
                out: core::ptr::null_mut(),
                out_stride,
                bias: consts.bias.as_ptr(),
                rq: consts.rq.as_ptr(),
            },
            consts,
            stride,
            n,
            need,
            out_need,
        })
    }

    /// One output row: window row `ky` of pixel `i` is words `i * stride..i * stride + 3` of
    /// `ring[rows[ky]..]`, the pixel's four outputs `out[i * out_stride..][..4]`. Does nothing
    /// if a row or `out` is too short.
    pub(crate) fn row(&mut self, ring: &[u32], rows: [usize; 3], out: &mut [i8]) {
        let Some(room) = ring.len().checked_sub(self.need) else {
            return;
        };
        if rows.iter().any(|&r| r > room) || out.len() < self.out_need {
            return;
        }
        imp::dw3x3_row(self, rows.map(|r| ring.as_ptr().wrapping_add(r)), out);
    }
}

/// The assembly's view of a [`column_run`]: 28 words, `repr(C)`, offsets fixed.
#[derive(Debug)]
#[repr(C)]
// The portable loop reads only the constants.
#[cfg_attr(not(mote_dsp), allow(dead_code))]
pub(crate) struct ColumnArgs {
    /// Tap 0 of the current output's window (byte offset 0).
    x: *const i8,
    /// The current output's four bytes (4), and where the outputs end (8).
    y: *mut i8,
    y_end: *mut i8,
    /// Bytes from one output to the next (12).
    out_step: usize,
    /// The four channels' sums before any tap (16).
    bias: [i32; 4],
    /// The four channels' output stages (32).
    rq: [RequantSsat; 4],
    /// The widened taps (96), their count (100), bytes from one tap's input to the next
    /// (104), and from past a window's last tap to the next window's first (108, wrapping).
    w: *const [u32; 2],
    taps: usize,
    step: usize,
    skip: usize,
}

/// Four channels of `n` outputs of a depthwise convolution along one axis, every window on
/// the input. Output `i`'s sums start at `bias` and add, for each tap `k`, the int8 word
/// `x[i * advance + k * step..][..4]` sign-extended (no input offset: callers fold it into
/// `bias`) times `w[k]` (`(w0, w2)`, `(w1, w3)`), channel by channel; they are requantized by
/// [`requant_ssat`] with `rq` into `y[i * out_step..][..4]`. Does nothing unless `n` and `w`
/// are nonempty, `out_step` is at least 4 and every read and write is in bounds.
pub(crate) fn column_run(
    x: &[i8],
    (n, advance, step): (usize, usize, usize),
    w: &[[u32; 2]],
    (bias, rq): ([i32; 4], &[RequantSsat; 4]),
    (y, out_step): (&mut [i8], usize),
) {
    let reach = n.checked_sub(1).and_then(|last| {
        let taps = w.len().checked_sub(1)?.checked_mul(step)?;
        last.checked_mul(advance)?.checked_add(taps)?.checked_add(4)
    });
    let out_reach = n
        .checked_sub(1)
        .and_then(|last| last.checked_mul(out_step)?.checked_add(4));
    let (Some(reach), Some(out_reach)) = (reach, out_reach) else {
        return;
    };
    if reach > x.len() || out_reach > y.len() || out_step < 4 {
        return;
    }
    let y_end = y.as_mut_ptr().wrapping_add(n * out_step);
    let mut args = ColumnArgs {
        x: x.as_ptr(),
        y: y.as_mut_ptr(),
        y_end,
        out_step,
        bias,
        rq: *rq,
        w: w.as_ptr(),
        taps: w.len(),
        step,
        skip: advance.wrapping_sub(w.len().wrapping_mul(step)),
    };
    imp::column_run(&mut args, x, (n, advance, step), w, y);
}

/// A convolution's channel pairs without a table: for `k < pairs`, channels `2k` and `2k + 1`
/// of pixels A and B, as [`mac_2x2`] over `cols` with rows `filter[2k * taps..]` and
/// `filter[(2k + 1) * taps..]` plus `bias[2k]`, `bias[2k + 1]`, requantized by
/// [`requant_ssat`] with `left = 1`, `right = -shift`, `add = 2^(right - 1) + (zp << right)`
/// from each channel's multiplier (`requant[c]`, or `requant[0]` for all when it holds one):
/// exact for channels whose [`ChannelStage`](super::fast_requant::ChannelStage) is common.
/// Outputs go to `out_a[..2 * pairs]` and `out_b[..2 * pairs]`. Does nothing unless every
/// read row, bias, multiplier and output is in bounds.
pub(crate) fn gemm_direct(
    cols: &[[u32; 4]],
    (filter, taps): (&[i8], usize),
    (bias, requant): (&[i32], &[crate::quant::QuantizedMultiplier]),
    zp: i32,
    (out_a, out_b): (&mut [i8], &mut [i8]),
    pairs: usize,
) {
    let n = pairs.saturating_mul(2);
    let rows_end = n
        .checked_sub(1)
        .and_then(|last| last.checked_mul(taps))
        .and_then(|s| s.checked_add(4 * cols.len()));
    let ok = !cols.is_empty()
        && pairs >= 1
        && rows_end.is_some_and(|end| end <= filter.len())
        && bias.len() >= n
        && (requant.len() == 1 || requant.len() >= n)
        && out_a.len() >= n
        && out_b.len() >= n;
    if ok {
        imp::gemm_direct(
            cols,
            (filter, taps),
            (bias, requant),
            zp,
            (out_a, out_b),
            pairs,
        );
    }
}

/// Fully connected outputs four at a time: output `j` is [`requant_ssat`] with `rq[j % 4]` of
/// `bias[j]` plus the dot product of the q15 column `col` (as [`mac_1x4`]) with weight row
/// `rows[j * in_f..]`, for `j < 4 * quads`. Does nothing unless `col` is nonempty and at most
/// `in_f / 4` groups, and the rows, biases and outputs hold `4 * quads` rows.
pub(crate) fn gemv_quads(
    col: &[[u32; 2]],
    (rows, in_f): (&[i8], usize),
    (bias, rq): (&[i32], &[RequantSsat; 4]),
    out: &mut [i8],
    quads: usize,
) {
    if quads_fit(4 * col.len(), (rows, in_f), bias, out, quads) {
        imp::gemv_quads(col, (rows, in_f), (bias, rq), out, quads);
    }
}

/// Whether the quad loops may read `bytes` (> 0, at most `in_f`) of each of `4 * quads` rows
/// and write as many outputs from as many biases.
fn quads_fit(
    bytes: usize,
    (rows, in_f): (&[i8], usize),
    bias: &[i32],
    out: &[i8],
    quads: usize,
) -> bool {
    let n = quads.saturating_mul(4);
    let span = n
        .checked_sub(1)
        .and_then(|last| last.checked_mul(in_f))
        .and_then(|s| s.checked_add(bytes));
    bytes > 0
        && bytes <= in_f
        && span.is_some_and(|s| s <= rows.len())
        && bias.len() >= n
        && out.len() >= n
}

/// [`gemv_quads`] reading the int8 input `x` in place, widened with the offset in both
/// halfwords of `off2` as it is read (as [`sxtab16`] and [`sxtab16_ror8`]): no column to
/// hold, two more instructions a group. Does nothing unless `x` is nonempty, whole words and
/// at most `in_f` long, and the rows, biases and outputs hold `4 * quads` rows.
pub(crate) fn gemv_quads_i8(
    (x, off2): (&[i8], u32),
    (rows, in_f): (&[i8], usize),
    (bias, rq): (&[i32], &[RequantSsat; 4]),
    out: &mut [i8],
    quads: usize,
) {
    if x.len() % 4 == 0 && quads_fit(x.len(), (rows, in_f), bias, out, quads) {
        imp::gemv_quads_i8((x, off2), (rows, in_f), (bias, rq), out, quads);
    }
}

/// Portable versions: plain Rust, bit-identical to the DSP instructions.
#[cfg_attr(mote_dsp, allow(dead_code))]
mod portable;

#[cfg(not(mote_dsp))]
use portable as imp;

#[cfg(mote_dsp)]
use dsp as imp;

/// The DSP-extension versions. Registers r6 and r7 cannot be asm operands (LLVM's base and
/// frame pointers), so the loops that need 14 registers save them on the stack and restore
/// them before the block ends.
#[cfg(mote_dsp)]
mod dsp;

/// `acc + lo(a) * lo(b) + hi(a) * hi(b)`, wrapping: one `SMLAD`.
#[inline(always)]
pub(crate) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    imp::smlad(a, b, acc)
}

/// `acc + lo(a) * lo(b)`, wrapping.
#[inline(always)]
pub(crate) fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
    imp::smlabb(a, b, acc)
}

/// `acc + hi(a) * hi(b)`, wrapping.
#[inline(always)]
pub(crate) fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
    imp::smlatt(a, b, acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Rng;
    use std::vec::Vec;

    fn bytes(x: u32) -> [i32; 4] {
        x.to_le_bytes().map(|b| i32::from(b as i8))
    }

    fn halves(x: u32) -> (i32, i32) {
        (i32::from(x as i16), i32::from((x >> 16) as i16))
    }

    #[test]
    fn primitives_match_integer_formulas() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for _ in 0..20_000 {
            let (x, y, z) = (rng.next() as u32, rng.next() as u32, rng.next() as i32);
            let off = rng.int(-127, 128) as i32;
            let off2 = (off as u16 as u32) * 0x1_0001;
            let b = bytes(x);
            assert_eq!(halves(sxtab16(off2, x)), (b[0] + off, b[2] + off));
            assert_eq!(halves(sxtab16_ror8(off2, x)), (b[1] + off, b[3] + off));
            assert_eq!(halves(sxtb16(x)), (b[0], b[2]));
            assert_eq!(halves(sxtb16_ror8(x)), (b[1], b[3]));
            let ((x0, x1), (y0, y1)) = (halves(x), halves(y));
            let dual = i64::from(z) + i64::from(x0 * y0) + i64::from(x1 * y1);
            assert_eq!(portable::smlad(x, y, z), dual as i32);
            assert_eq!(smlabb(x, y, z), z.wrapping_add(x0 * y0));
            assert_eq!(smlatt(x, y, z), z.wrapping_add(x1 * y1));
            let (a, m) = (x as i32, y as i32);
            let want = ((i128::from(a) * i128::from(m) + (1 << 31)) >> 32) as i32;
            assert_eq!(smmulr(a, m), want);
            let (left, right) = (rng.size(0, 31) as u32, rng.size(0, 31) as u32);
            let add = rng.next() as i32 >> rng.size(1, 31);
            let y = i64::from(smmulr(a.wrapping_shl(left), m));
            let v = (y + (y >> 31) + i64::from(add)) as i32 >> right;
            assert_eq!(requant_ssat(a, left, m, add, right), v.clamp(-128, 127));
        }
        // Extremes: SMLAD's sum of two (-32768)^2 products wraps.
        assert_eq!(portable::smlad(0x8000_8000, 0x8000_8000, 0), i32::MIN);
        assert_eq!(smmulr(i32::MIN, i32::MIN), 1 << 30);
    }

    /// `x` (int8 with offset) as q15 groups, zero-padded to whole groups.
    fn q15(x: &[i8], off: i32) -> Vec<[u32; 2]> {
        let pad = |i: usize| x.get(i).map_or(0, |&v| i32::from(v) + off) as u16 as u32;
        (0..x.len().div_ceil(4))
            .map(|g| {
                let i = 4 * g;
                [pad(i) | pad(i + 2) << 16, pad(i + 1) | pad(i + 3) << 16]
            })
            .collect()
    }

    /// Two pixels' q15 groups as a column pair: pixel A in lanes 0, 1, pixel B in 2, 3.
    fn column_pair(a: &[[u32; 2]], b: &[[u32; 2]]) -> Vec<[u32; 4]> {
        a.iter()
            .zip(b)
            .map(|(a, b)| [a[0], a[1], b[0], b[1]])
            .collect()
    }

    fn dot(x: &[i8], off: i32, w: &[i8]) -> i32 {
        x.iter()
            .zip(w)
            .map(|(&x, &w)| (i32::from(x) + off) * i32::from(w))
            .sum()
    }

    /// The table-free convolution loop: each channel pair's sums from [`mac_2x2`], each
    /// channel's constants derived from its multiplier, shift and the zero point.
    #[test]
    fn gemm_direct_is_mac_2x2_with_derived_constants() {
        use crate::quant::QuantizedMultiplier;
        let mut rng = Rng(0xd1ec_7000_5eed_0001);
        for case in 0..300 {
            let (groups, pairs) = (rng.size(1, 20), rng.size(1, 6));
            let taps = 4 * groups - rng.size(0, 3);
            let off = rng.int(-127, 128) as i32;
            let (xa, xb) = (rng.i8s(taps), rng.i8s(taps));
            let (qa, qb) = (q15(&xa, off), q15(&xb, off));
            let cols = column_pair(&qa, &qb);
            let filter = rng.i8s(2 * pairs * taps + 4);
            let bias: Vec<i32> = (0..2 * pairs)
                .map(|_| rng.int(-9000, 9000) as i32)
                .collect();
            let per_channel = case % 2 == 0;
            let requant: Vec<QuantizedMultiplier> = (0..if per_channel { 2 * pairs } else { 1 })
                .map(|_| QuantizedMultiplier {
                    multiplier: 0x4000_0000 + rng.int(0, 0x3fff_ffff) as i32,
                    shift: -(rng.size(1, 21) as i32),
                })
                .collect();
            let zp = rng.int(-128, 127) as i32;
            let (mut a, mut b) = (vec![0i8; 2 * pairs], vec![0i8; 2 * pairs]);
            let consts = (&bias[..], &requant[..]);
            gemm_direct(&cols, (&filter, taps), consts, zp, (&mut a, &mut b), pairs);
            for c in 0..2 * pairs {
                let q = requant[if per_channel { c } else { 0 }];
                let right = (-q.shift) as u32;
                let add = (1 << right >> 1) + (zp << right);
                let acc = mac_2x2(&cols, &filter[c * taps..], 0, [bias[c]; 4]);
                let want = |acc: i32| requant_ssat(acc, 1, q.multiplier, add, right) as i8;
                assert_eq!(
                    (a[c], b[c]),
                    (want(acc[0]), want(acc[2])),
                    "case {case} channel {c}"
                );
            }
        }
    }

    /// The fully connected loop gives the same bytes over a widened column and over the int8
    /// input read in place.
    #[test]
    fn gemv_quads_in_place_equals_over_a_column() {
        let mut rng = Rng(0x0fc0_fc0f_1234_5678);
        for case in 0..500 {
            let (groups, quads) = (rng.size(1, 40), rng.size(1, 6));
            let in_f = 4 * groups + 4 * rng.size(0, 2);
            let off = rng.int(-127, 128) as i32;
            let x = rng.i8s(4 * groups);
            let rows = rng.i8s(4 * quads * in_f);
            let bias: Vec<i32> = (0..4 * quads)
                .map(|_| rng.int(-5000, 5000) as i32)
                .collect();
            let rq = [0, 1, 2, 3].map(|k| RequantSsat {
                mult: 0x4000_0000 + 0x0100_0000 * k,
                left: 1,
                add: 1 << 9,
                right: 10,
            });
            let off2 = (off as u16 as u32) * 0x1_0001;
            let (mut a, mut b) = (vec![0i8; 4 * quads], vec![1i8; 4 * quads]);
            gemv_quads(&q15(&x, off), (&rows, in_f), (&bias, &rq), &mut a, quads);
            gemv_quads_i8((&x, off2), (&rows, in_f), (&bias, &rq), &mut b, quads);
            assert_eq!(a, b, "case {case}");
            // And both are the requantized dot products.
            for (j, &got) in a.iter().enumerate() {
                let acc = bias[j] + dot(&x, off, &rows[j * in_f..]);
                let r = &rq[j % 4];
                assert_eq!(
                    i32::from(got),
                    requant_ssat(acc, r.left, r.mult, r.add, r.right)
                );
            }
        }
    }

    #[test]
    fn mac_kernels_match_dot_products() {
        let mut rng = Rng(0x1357_9bdf_2468_ace0);
        for case in 0..2_000 {
            let groups = rng.size(1, 9);
            let stride = 4 * groups + rng.size(0, 6);
            let (off, len) = (rng.int(-127, 128) as i32, 4 * groups);
            let (xa, xb) = (rng.i8s(len), rng.i8s(len));
            let extra = rng.size(0, 3);
            let w = rng.i8s(3 * stride + len + extra);
            let acc = [rng.int(-999, 999) as i32, 7, -5, 1 << 20];
            let (qa, qb) = (q15(&xa, off), q15(&xb, off));
            let cols = column_pair(&qa, &qb);
            let row = |k: usize| &w[k * stride..][..len];
            let want = [
                acc[0] + dot(&xa, off, row(0)),
                acc[1] + dot(&xa, off, row(1)),
                acc[2] + dot(&xb, off, row(0)),
                acc[3] + dot(&xb, off, row(1)),
            ];
            assert_eq!(mac_2x2(&cols, &w, stride, acc), want, "case {case}");
            let want: Vec<i32> = (0..4).map(|k| acc[k] + dot(&xa, off, row(k))).collect();
            assert_eq!(mac_1x4(&qa, &w, stride, acc).to_vec(), want, "case {case}");
            // Rows sharing one weight row (stride 0) are fine too.
            let same = mac_2x2(&cols, &w, 0, [0; 4]);
            assert_eq!(same[0], same[1]);
        }
    }
}
