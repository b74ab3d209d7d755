//! Arm DSP-extension arithmetic for the int8 kernels, and the three inner loops that use it.
//!
//! This is the only module of the kernels with `unsafe` code. Under `cfg(mote_dsp)` (set by
//! `core/build.rs` for ARMv7E-M, and for ARMv8-M Mainline built with the DSP extension) each
//! primitive is one instruction (`SXTB16`, `SXTAB16`, `SMLAD`, `SMLABB`, `SMLATT`, `SMMULR`)
//! and each loop is hand-scheduled assembly; everywhere else (the host, thumbv6m) the same
//! functions are portable Rust with the same results, bit for bit. Every sum wraps modulo 2^32
//! exactly like the instructions (whose Q flag nobody reads), so the order of the terms never
//! changes a result. The property tests below compare both against plain integer formulas.
//!
//! Vocabulary: an int8 *word* is four int8 values read little-endian from memory as a `u32`.
//! `SXTB16` takes bytes 0 and 2 of a word to the two signed halfwords of the result (low,
//! high); rotating the word by 8 first takes bytes 1 and 3. A *q15 group* is four int8 values
//! widened to int16 in that order: `[(x0, x2), (x1, x3)]`, two `u32`s. Multiplying it with
//! `SMLAD` against a weight word split the same way gives `x0*w0 + x2*w2` and `x1*w1 + x3*w3`.

use core::marker::PhantomData;

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
/// [`super::fast_requant::Common`]'s output stage. `left` and `right` are below 32.
#[inline(always)]
pub(crate) fn requant_ssat(acc: i32, left: u32, mult: i32, add: i32, right: u32) -> i32 {
    imp::requant_ssat(acc, left, mult, add, right)
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
struct PairDesc {
    /// Address of row 0.
    w: *const i8,
    /// Row 1's address minus row 0's, wrapping.
    stride: usize,
    bias: [i32; 2],
    rq: [RequantSsat; 2],
    /// Output indices of the two channels.
    out: [usize; 2],
}

const EMPTY_PAIR: PairDesc = PairDesc {
    w: core::ptr::null(),
    stride: 0,
    bias: [0; 2],
    rq: [RequantSsat {
        mult: 0,
        left: 0,
        add: 0,
        right: 0,
    }; 2],
    out: [0; 2],
};

/// Up to `N` channel pairs for [`gemm_pairs`], each checked when added: both rows hold the
/// `4 * groups` bytes read, the output indices are below `out_len`.
#[derive(Debug)]
pub(crate) struct PairTable<'a, const N: usize> {
    pairs: [PairDesc; N],
    /// Each pair's rows (the portable code reads them here; the assembly through `pairs`).
    #[cfg(not(mote_dsp))]
    rows: [(&'a [i8], &'a [i8]); N],
    /// The rows are borrowed for the table's life.
    rows_borrowed: PhantomData<&'a [i8]>,
    len: usize,
    groups: usize,
    out_len: usize,
}

impl<'a, const N: usize> PairTable<'a, N> {
    /// An empty table for windows of `groups` q15 groups, writing outputs `0..out_len`.
    pub(crate) fn new(groups: usize, out_len: usize) -> Self {
        Self {
            pairs: [EMPTY_PAIR; N],
            #[cfg(not(mote_dsp))]
            rows: [(&[], &[]); N],
            rows_borrowed: PhantomData,
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

/// The assembly's view of a [`Dw3x3`] row: 29 words, `repr(C)`, offsets fixed.
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
    bias: [i32; 4],
    rq: [RequantSsat; 4],
}

/// A 3x3 depthwise convolution of four channels along output rows, requantized by
/// [`requant_ssat`]: the input rows are words (the four channels of one pixel), padded so that
/// every window lies on them.
#[derive(Debug)]
pub(crate) struct Dw3x3 {
    args: DwArgs,
    /// Words from one window to the next (the horizontal stride).
    stride: usize,
    /// Pixels a row (at least 1), words a row reads from its start, output bytes it writes.
    n: usize,
    need: usize,
    out_need: usize,
}

impl Dw3x3 {
    /// The row kernel for `n` output pixels a row, horizontal stride `stride` (in pixels),
    /// input offset `off2` (both halfwords), channel biases and constants, and `out_stride`
    /// bytes between output pixels. `None` if `n` is zero or the sizes overflow.
    pub(crate) fn new(
        (n, stride): (usize, usize),
        off2: u32,
        (bias, rq): ([i32; 4], [RequantSsat; 4]),
        out_stride: usize,
    ) -> Option<Self> {
        let last = n.checked_sub(1)?;
        let need = last.checked_mul(stride)?.checked_add(3)?;
        let out_need = last.checked_mul(out_stride)?.checked_add(4)?;
        Some(Self {
            args: DwArgs {
                rows: [core::ptr::null(); 3],
                wq: core::ptr::null(),
                off2,
                n: 0,
                step: stride.checked_mul(4)?,
                out: core::ptr::null_mut(),
                out_stride,
                bias,
                rq,
            },
            stride,
            n,
            need,
            out_need,
        })
    }

    /// One output row with taps `wq` (`[sxtb16(w), sxtb16_ror8(w)]` for tap `3 * ky + kx`):
    /// window row `ky` of pixel `i` is words `i * stride..i * stride + 3` of
    /// `ring[rows[ky]..]`, the pixel's four outputs `out[i * out_stride..][..4]`. Does nothing
    /// if a row or `out` is too short.
    pub(crate) fn row(
        &mut self,
        wq: &[[u32; 2]; 9],
        ring: &[u32],
        rows: [usize; 3],
        out: &mut [i8],
    ) {
        let Some(room) = ring.len().checked_sub(self.need) else {
            return;
        };
        if rows.iter().any(|&r| r > room) || out.len() < self.out_need {
            return;
        }
        imp::dw3x3_row(self, wq, rows.map(|r| ring.as_ptr().wrapping_add(r)), out);
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
    let n = quads.saturating_mul(4);
    let span = n
        .checked_sub(1)
        .and_then(|last| last.checked_mul(in_f))
        .and_then(|s| s.checked_add(4 * col.len()));
    let ok = !col.is_empty()
        && 4 * col.len() <= in_f
        && span.is_some_and(|s| s <= rows.len())
        && bias.len() >= n
        && out.len() >= n;
    if ok {
        imp::gemv_quads(col, (rows, in_f), (bias, rq), out, quads);
    }
}

/// Portable versions: plain Rust, bit-identical to the DSP instructions.
#[cfg_attr(mote_dsp, allow(dead_code))]
mod portable {
    /// Sign-extended byte `i` of `x`.
    #[inline(always)]
    fn byte(x: u32, i: u32) -> i32 {
        i32::from((x >> (8 * i)) as u8 as i8)
    }

    #[inline(always)]
    fn halves(x: u32) -> (i32, i32) {
        (
            i32::from(x as u16 as i16),
            i32::from((x >> 16) as u16 as i16),
        )
    }

    #[inline(always)]
    fn pack(lo: i32, hi: i32) -> u32 {
        u32::from(lo as u16) | (u32::from(hi as u16) << 16)
    }

    #[inline(always)]
    pub(super) fn sxtab16(off2: u32, x: u32) -> u32 {
        let (lo, hi) = halves(off2);
        pack(lo.wrapping_add(byte(x, 0)), hi.wrapping_add(byte(x, 2)))
    }

    #[inline(always)]
    pub(super) fn sxtab16_ror8(off2: u32, x: u32) -> u32 {
        sxtab16(off2, x.rotate_right(8))
    }

    #[inline(always)]
    pub(super) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let ((a0, a1), (b0, b1)) = (halves(a), halves(b));
        acc.wrapping_add(a0 * b0).wrapping_add(a1 * b1)
    }

    #[inline(always)]
    pub(super) fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(halves(a).0 * halves(b).0)
    }

    #[inline(always)]
    pub(super) fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(halves(a).1 * halves(b).1)
    }

    #[inline(always)]
    pub(super) fn smmulr(a: i32, b: i32) -> i32 {
        ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
    }

    #[inline(always)]
    pub(super) fn requant_ssat(acc: i32, left: u32, mult: i32, add: i32, right: u32) -> i32 {
        let y = smmulr(acc.wrapping_shl(left), mult);
        (y.wrapping_add(y >> 31).wrapping_add(add) >> (right & 31)).clamp(-128, 127)
    }

    /// The int8 word at `w[i..i + 4]`.
    #[inline(always)]
    fn word(w: &[i8], i: usize) -> u32 {
        u32::from_le_bytes([w[i] as u8, w[i + 1] as u8, w[i + 2] as u8, w[i + 3] as u8])
    }

    pub(super) fn mac_2x2(cols: &[[u32; 4]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
        mac_rows(cols, w, &w[stride..], acc)
    }

    /// [`super::mac_2x2`] with the two rows as slices.
    fn mac_rows(cols: &[[u32; 4]], r0: &[i8], r1: &[i8], acc: [i32; 4]) -> [i32; 4] {
        let [mut a0, mut a1, mut b0, mut b1] = acc;
        for (g, x) in cols.iter().enumerate() {
            let (w0, w1) = (word(r0, 4 * g), word(r1, 4 * g));
            let (w0e, w0o, w1e, w1o) = (
                sxtab16(0, w0),
                sxtab16_ror8(0, w0),
                sxtab16(0, w1),
                sxtab16_ror8(0, w1),
            );
            a0 = smlad(x[1], w0o, smlad(x[0], w0e, a0));
            a1 = smlad(x[1], w1o, smlad(x[0], w1e, a1));
            b0 = smlad(x[3], w0o, smlad(x[2], w0e, b0));
            b1 = smlad(x[3], w1o, smlad(x[2], w1e, b1));
        }
        [a0, a1, b0, b1]
    }

    #[cfg(not(mote_dsp))]
    pub(super) fn gemm_pairs<const N: usize>(
        cols: &[[u32; 4]],
        table: &super::PairTable<N>,
        out_a: &mut [i8],
        out_b: &mut [i8],
    ) {
        for (d, &(r0, r1)) in table.pairs[..table.len].iter().zip(&table.rows) {
            let [b0, b1] = d.bias;
            let acc = mac_rows(cols, r0, r1, [b0, b1, b0, b1]);
            let out = |r: &super::RequantSsat, acc| {
                requant_ssat(acc, r.left, r.mult, r.add, r.right) as i8
            };
            out_a[d.out[0]] = out(&d.rq[0], acc[0]);
            out_a[d.out[1]] = out(&d.rq[1], acc[1]);
            out_b[d.out[0]] = out(&d.rq[0], acc[2]);
            out_b[d.out[1]] = out(&d.rq[1], acc[3]);
        }
    }

    pub(super) fn mac_1x4(col: &[[u32; 2]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
        let mut acc = acc;
        for (g, x) in col.iter().enumerate() {
            for (k, a) in acc.iter_mut().enumerate() {
                let wk = word(w, k * stride + 4 * g);
                *a = smlad(x[1], sxtab16_ror8(0, wk), smlad(x[0], sxtab16(0, wk), *a));
            }
        }
        acc
    }

    pub(super) fn dw3x3_row(
        k: &mut super::Dw3x3,
        wq: &[[u32; 2]; 9],
        rows: [*const u32; 3],
        out: &mut [i8],
    ) {
        // The portable code reads through the rows the safe wrapper checked, as slices.
        // SAFETY: `Dw3x3::row` checked each row pointer has `need` words of the ring after it.
        let rows = rows.map(|r| unsafe { core::slice::from_raw_parts(r, k.need) });
        let a = &k.args;
        for i in 0..k.n {
            let [mut c0, mut c1, mut c2, mut c3] = a.bias;
            for (t, w) in wq.iter().enumerate() {
                let x = rows[t / 3][i * k.stride + t % 3];
                let (xe, xo) = (sxtab16(a.off2, x), sxtab16_ror8(a.off2, x));
                c0 = smlabb(xe, w[0], c0);
                c2 = smlatt(xe, w[0], c2);
                c1 = smlabb(xo, w[1], c1);
                c3 = smlatt(xo, w[1], c3);
            }
            let o = &mut out[i * a.out_stride..][..4];
            for ((o, acc), r) in o.iter_mut().zip([c0, c1, c2, c3]).zip(&a.rq) {
                *o = requant_ssat(acc, r.left, r.mult, r.add, r.right) as i8;
            }
        }
    }

    pub(super) fn gather_words(src: &[i8], stride: usize, dst: &mut [u32]) {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = word(src, i * stride);
        }
    }

    pub(super) fn gemv_quads(
        col: &[[u32; 2]],
        (rows, in_f): (&[i8], usize),
        (bias, rq): (&[i32], &[super::RequantSsat; 4]),
        out: &mut [i8],
        quads: usize,
    ) {
        for q in 0..quads {
            let j = 4 * q;
            let init = [bias[j], bias[j + 1], bias[j + 2], bias[j + 3]];
            let acc = mac_1x4(col, &rows[j * in_f..], in_f, init);
            for k in 0..4 {
                let r = &rq[k];
                out[j + k] = requant_ssat(acc[k], r.left, r.mult, r.add, r.right) as i8;
            }
        }
    }
}

#[cfg(not(mote_dsp))]
use portable as imp;

#[cfg(mote_dsp)]
use dsp as imp;

/// The DSP-extension versions. Registers r6 and r7 cannot be asm operands (LLVM's base and
/// frame pointers), so the loops that need 14 registers save them on the stack and restore
/// them before the block ends.
#[cfg(mote_dsp)]
mod dsp {
    use core::arch::asm;

    #[inline(always)]
    pub(super) fn sxtab16(off2: u32, x: u32) -> u32 {
        let r;
        // SAFETY: register-only arithmetic; no memory, stack or flags touched.
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}", r = lateout(reg) r, a = in(reg) off2, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    #[inline(always)]
    pub(super) fn sxtab16_ror8(off2: u32, x: u32) -> u32 {
        let r;
        // SAFETY: register-only arithmetic; no memory, stack or flags touched.
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}, ror #8", r = lateout(reg) r, a = in(reg) off2,
                 x = in(reg) x, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    #[inline(always)]
    pub(super) fn smmulr(a: i32, b: i32) -> i32 {
        let r;
        // SAFETY: register-only arithmetic; no memory, stack or flags touched.
        unsafe {
            asm!("smmulr {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    #[inline(always)]
    pub(super) fn requant_ssat(acc: i32, left: u32, mult: i32, add: i32, right: u32) -> i32 {
        let r;
        // SAFETY: register-only arithmetic; no memory, stack or flags touched (SSAT sets only
        // the sticky Q flag).
        unsafe {
            asm!(
                "lsl {r}, {acc}, {left}",
                "smmulr {r}, {r}, {mult}",
                "add {r}, {r}, {r}, asr #31",
                "add {r}, {r}, {add}",
                "asr {r}, {r}, {right}",
                "ssat {r}, #8, {r}",
                r = out(reg) r,
                acc = in(reg) acc,
                left = in(reg) left,
                mult = in(reg) mult,
                add = in(reg) add,
                right = in(reg) right,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        r
    }

    /// One q15 group of [`super::mac_2x2`]: r0 columns, r1 row 0, r2 stride, r8..r11 sums.
    macro_rules! group_2x2 {
        () => {
            "ldm r0!, {{r4, r5, r6, r7}}
             ldr lr, [r1, r2]
             sxtb16 r12, lr
             sxtb16 lr, lr, ror #8
             smlad r9, r4, r12, r9
             smlad r9, r5, lr, r9
             smlad r11, r6, r12, r11
             smlad r11, r7, lr, r11
             ldr lr, [r1], #4
             sxtb16 r12, lr
             sxtb16 lr, lr, ror #8
             smlad r8, r4, r12, r8
             smlad r8, r5, lr, r8
             smlad r10, r6, r12, r10
             smlad r10, r7, lr, r10"
        };
    }

    pub(super) fn mac_2x2(cols: &[[u32; 4]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
        let [mut a0, mut a1, mut b0, mut b1] = acc;
        // SAFETY: the caller checked `1 <= cols.len()` and `stride + 4 * cols.len() <= w.len()`,
        // so the loop reads `cols` (16 bytes a group, `[u32; 4]` is word aligned for LDM) and
        // both weight rows (LDR, unaligned allowed) in bounds, and writes no memory. Two groups
        // an iteration; an odd count enters at the second. r6/r7 are pushed and popped.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "tst r3, #1",
                "add r3, r0, r3, lsl #4",
                "bne 3f",
                "2:",
                group_2x2!(),
                "3:",
                group_2x2!(),
                "cmp r0, r3",
                "bne 2b",
                "pop {{r6, r7}}",
                inout("r0") cols.as_ptr() => _,
                inout("r1") w.as_ptr() => _,
                in("r2") stride,
                inout("r3") cols.len() => _,
                inout("r8") a0,
                inout("r9") a1,
                inout("r10") b0,
                inout("r11") b1,
                out("r4") _,
                out("r5") _,
                out("r12") _,
                out("lr") _,
                options(readonly),
            );
        }
        [a0, a1, b0, b1]
    }

    /// Requantizes accumulator register `$r` in place ([`super::requant_ssat`]) with
    /// registers `$m`, `$l`, `$a`, `$s` holding mult, left, add, right.
    #[rustfmt::skip]
    macro_rules! requant_in_place {
        ($r:literal, $m:literal, $l:literal, $a:literal, $s:literal) => {
            concat!(
                "lsl ", $r, ", ", $r, ", ", $l, "\n",
                "smmulr ", $r, ", ", $r, ", ", $m, "\n",
                "add ", $r, ", ", $r, ", ", $r, ", asr #31\n",
                "add ", $r, ", ", $r, ", ", $a, "\n",
                "asr ", $r, ", ", $r, ", ", $s, "\n",
                "ssat ", $r, ", #8, ", $r, "\n",
            )
        };
    }

    pub(super) fn gemm_pairs<const N: usize>(
        cols: &[[u32; 4]],
        table: &super::PairTable<N>,
        out_a: &mut [i8],
        out_b: &mut [i8],
    ) {
        let pairs = table.pairs[..table.len].as_ptr_range();
        // SAFETY: the caller checked `cols.len() == table.groups >= 1` and that both outputs
        // hold every index the table stores; `PairTable::push` checked that each pair's two
        // rows (row 0 at `w`, row 1 at `w + stride`, wrapping) hold the `4 * groups` bytes
        // read, and the table borrows them. So every
        // LDM of `cols` (word aligned), LDR of a row (unaligned allowed) and STRB of an output
        // is in bounds. The descriptors are read in place (14 words each, `repr(C)`). Scratch
        // state lives in 24 bytes pushed below the stack pointer, popped with r6/r7 at the end.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "and r6, r1, #1",
                "add r1, r0, r1, lsl #4",
                // sp+0 columns, +4 next pair, +8 pairs end, +12 out_a, +16 out_b, +20 odd.
                "push {{r0, r2, r3, r4, r5, r6}}",
                "mov r3, r1",
                "mov r12, r2",
                "2:",
                "ldm r12!, {{r1, r2, r8, r9}}",
                "str r12, [sp, #4]",
                "mov r10, r8",
                "mov r11, r9",
                "ldr r0, [sp]",
                "ldr r12, [sp, #20]",
                "cmp r12, #0",
                "bne 4f",
                "3:",
                group_2x2!(),
                "4:",
                group_2x2!(),
                "cmp r0, r3",
                "bne 3b",
                "ldr r12, [sp, #4]",
                "ldm r12!, {{r4, r5, r6, r7}}",
                requant_in_place!("r8", "r4", "r5", "r6", "r7"),
                requant_in_place!("r10", "r4", "r5", "r6", "r7"),
                "ldm r12!, {{r4, r5, r6, r7}}",
                requant_in_place!("r9", "r4", "r5", "r6", "r7"),
                requant_in_place!("r11", "r4", "r5", "r6", "r7"),
                "ldm r12!, {{r4, r5}}",
                "ldrd r6, r7, [sp, #12]",
                "strb r8, [r6, r4]",
                "strb r9, [r6, r5]",
                "strb r10, [r7, r4]",
                "strb r11, [r7, r5]",
                "ldr r4, [sp, #8]",
                "cmp r12, r4",
                "bne 2b",
                "add sp, #24",
                "pop {{r6, r7}}",
                inout("r0") cols.as_ptr() => _,
                inout("r1") cols.len() => _,
                inout("r2") pairs.start => _,
                inout("r3") pairs.end => _,
                inout("r4") out_a.as_mut_ptr() => _,
                inout("r5") out_b.as_mut_ptr() => _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            );
        }
    }

    /// One q15 group of [`super::mac_1x4`]: r0 column, r1 row 0, r6 row 2, r2 stride.
    macro_rules! group_1x4 {
        () => {
            "ldrd r4, r5, [r0], #8
             ldr lr, [r1, r2]
             sxtb16 r12, lr
             sxtb16 lr, lr, ror #8
             smlad r9, r4, r12, r9
             smlad r9, r5, lr, r9
             ldr lr, [r1], #4
             sxtb16 r12, lr
             sxtb16 lr, lr, ror #8
             smlad r8, r4, r12, r8
             smlad r8, r5, lr, r8
             ldr lr, [r6, r2]
             sxtb16 r12, lr
             sxtb16 lr, lr, ror #8
             smlad r11, r4, r12, r11
             smlad r11, r5, lr, r11
             ldr lr, [r6], #4
             sxtb16 r12, lr
             sxtb16 lr, lr, ror #8
             smlad r10, r4, r12, r10
             smlad r10, r5, lr, r10"
        };
    }

    pub(super) fn mac_1x4(col: &[[u32; 2]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: the caller checked `1 <= col.len()` and `3 * stride + 4 * col.len() <=
        // w.len()`, so every read (LDRD of the word-aligned column, LDR of the four rows) is in
        // bounds, and nothing is written but the stack slot of r6/r7, restored before the end.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "add r6, r1, r2, lsl #1",
                "tst r3, #1",
                "add r3, r0, r3, lsl #3",
                "bne 3f",
                "2:",
                group_1x4!(),
                "3:",
                group_1x4!(),
                "cmp r0, r3",
                "bne 2b",
                "pop {{r6, r7}}",
                inout("r0") col.as_ptr() => _,
                inout("r1") w.as_ptr() => _,
                in("r2") stride,
                inout("r3") col.len() => _,
                inout("r8") a0,
                inout("r9") a1,
                inout("r10") a2,
                inout("r11") a3,
                out("r4") _,
                out("r5") _,
                out("r12") _,
                out("lr") _,
                options(readonly),
            );
        }
        [a0, a1, a2, a3]
    }

    /// One tap of [`super::Dw3x3`], its int8 word in r12: r4 offset, r3 weights.
    macro_rules! tap_4ch {
        () => {
            "sxtab16 r5, r4, r12
             sxtab16 r12, r4, r12, ror #8
             ldrd lr, r6, [r3], #8
             smlabb r8, r5, lr, r8
             smlatt r10, r5, lr, r10
             smlabb r9, r12, r6, r9
             smlatt r11, r12, r6, r11"
        };
    }

    pub(super) fn dw3x3_row(
        k: &mut super::Dw3x3,
        wq: &[[u32; 2]; 9],
        rows: [*const u32; 3],
        out: &mut [i8],
    ) {
        k.args.rows = rows;
        k.args.out = out.as_mut_ptr();
        k.args.n = k.n;
        k.args.wq = wq.as_ptr();
        let args: *mut super::DwArgs = &mut k.args;
        // SAFETY: `Dw3x3::new` made `n >= 1`, and `Dw3x3::row` checked that each row pointer
        // has the `(n - 1) * stride + 3` words of the ring after it that the windows read (LDR
        // with immediate offsets 0, 4, 8; the ring is word aligned) and that `out` holds the
        // `(n - 1) * out_stride + 4` bytes the STRBs write. `wq`
        // (72 bytes, LDRD of word-aligned pairs) is borrowed for the call. The
        // assembly reads and updates `DwArgs` in place (`n`, `out`), which we hold exclusively,
        // and restores r6/r7 from the stack.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "mov r7, r0",
                "ldm r7, {{r0, r1, r2}}",
                "ldr r4, [r7, #16]",
                "2:",
                "ldr r3, [r7, #12]",
                "add lr, r7, #36",
                "ldm lr, {{r8, r9, r10, r11}}",
                "ldr r12, [r0]",
                tap_4ch!(),
                "ldr r12, [r0, #4]",
                tap_4ch!(),
                "ldr r12, [r0, #8]",
                tap_4ch!(),
                "ldr r12, [r1]",
                tap_4ch!(),
                "ldr r12, [r1, #4]",
                tap_4ch!(),
                "ldr r12, [r1, #8]",
                tap_4ch!(),
                "ldr r12, [r2]",
                tap_4ch!(),
                "ldr r12, [r2, #4]",
                tap_4ch!(),
                "ldr r12, [r2, #8]",
                tap_4ch!(),
                "ldr r12, [r7, #24]",
                "add r0, r0, r12",
                "add r1, r1, r12",
                "add r2, r2, r12",
                "add lr, r7, #52",
                "ldm lr!, {{r3, r4, r5, r6}}",
                requant_in_place!("r8", "r3", "r4", "r5", "r6"),
                "ldm lr!, {{r3, r4, r5, r6}}",
                requant_in_place!("r9", "r3", "r4", "r5", "r6"),
                "ldm lr!, {{r3, r4, r5, r6}}",
                requant_in_place!("r10", "r3", "r4", "r5", "r6"),
                "ldm lr!, {{r3, r4, r5, r6}}",
                requant_in_place!("r11", "r3", "r4", "r5", "r6"),
                "ldr r12, [r7, #28]",
                "strb r8, [r12]",
                "strb r9, [r12, #1]",
                "strb r10, [r12, #2]",
                "strb r11, [r12, #3]",
                "ldr r3, [r7, #32]",
                "add r12, r12, r3",
                "str r12, [r7, #28]",
                "ldr r4, [r7, #16]",
                "ldr r12, [r7, #20]",
                "subs r12, r12, #1",
                "str r12, [r7, #20]",
                "bne 2b",
                "pop {{r6, r7}}",
                inout("r0") args => _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            );
        }
    }

    pub(super) fn gather_words(src: &[i8], stride: usize, dst: &mut [u32]) {
        // SAFETY: the caller checked `dst` is nonempty and `(dst.len() - 1) * stride + 4 <=
        // src.len()`: every LDR (unaligned allowed) reads inside `src`, every STR writes
        // inside `dst` (word aligned).
        unsafe {
            asm!(
                "2:",
                "ldr {w}, [{s}]",
                "add {s}, {s}, {stride}",
                "str {w}, [{d}], #4",
                "cmp {d}, {end}",
                "bne 2b",
                s = inout(reg) src.as_ptr() => _,
                d = inout(reg) dst.as_mut_ptr() => _,
                end = in(reg) dst.as_mut_ptr_range().end,
                stride = in(reg) stride,
                w = out(reg) _,
                options(nostack),
            );
        }
    }

    pub(super) fn gemv_quads(
        col: &[[u32; 2]],
        (rows, in_f): (&[i8], usize),
        (bias, rq): (&[i32], &[super::RequantSsat; 4]),
        out: &mut [i8],
        quads: usize,
    ) {
        // SAFETY: the caller checked `1 <= col.len() <= in_f / 4`, that `rows` holds the
        // `4 * quads` rows of `in_f` bytes read (each row's first `4 * col.len()` bytes, LDR
        // unaligned allowed), and that `bias` (LDM, word aligned) and `out` (STRB) hold
        // `4 * quads` entries; `rq` is the four constants (LDM) every quad reads again. Loop state lives in 32 bytes pushed below the stack pointer,
        // popped with r6/r7 at the end.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "bic r7, r3, #3",
                "add r7, r0, r7, lsl #3",
                "add r3, r0, r3, lsl #3",
                // sp+0 column, +4 row 0, +8 column end, +12 bias, +16 constants, +20 end of
                // the whole quads of groups, +24 output, +28 quads left.
                "push {{r0, r1, r3, r4, r5, r7, r8, r9}}",
                "2:",
                "ldr r12, [sp, #12]",
                "ldm r12!, {{r8, r9, r10, r11}}",
                "str r12, [sp, #12]",
                "ldrd r0, r1, [sp]",
                "ldr r3, [sp, #8]",
                "add r6, r1, r2, lsl #1",
                // Four groups at a time up to r7, then one at a time up to r3.
                "ldr r7, [sp, #20]",
                "cmp r0, r7",
                "beq 4f",
                "3:",
                group_1x4!(),
                group_1x4!(),
                group_1x4!(),
                group_1x4!(),
                "cmp r0, r7",
                "bne 3b",
                "4:",
                "cmp r0, r3",
                "beq 6f",
                "5:",
                group_1x4!(),
                "cmp r0, r3",
                "bne 5b",
                "6:",
                "ldr r1, [sp, #4]",
                "add r1, r1, r2, lsl #2",
                "str r1, [sp, #4]",
                "ldr r12, [sp, #16]",
                "ldm r12!, {{r3, r4, r5, r6}}",
                requant_in_place!("r8", "r3", "r4", "r5", "r6"),
                "ldm r12!, {{r3, r4, r5, r6}}",
                requant_in_place!("r9", "r3", "r4", "r5", "r6"),
                "ldm r12!, {{r3, r4, r5, r6}}",
                requant_in_place!("r10", "r3", "r4", "r5", "r6"),
                "ldm r12!, {{r3, r4, r5, r6}}",
                requant_in_place!("r11", "r3", "r4", "r5", "r6"),
                "ldr r12, [sp, #24]",
                "strb r8, [r12]",
                "strb r9, [r12, #1]",
                "strb r10, [r12, #2]",
                "strb r11, [r12, #3]",
                "add r12, r12, #4",
                "str r12, [sp, #24]",
                "ldr r12, [sp, #28]",
                "subs r12, r12, #1",
                "str r12, [sp, #28]",
                "bne 2b",
                "add sp, #32",
                "pop {{r6, r7}}",
                inout("r0") col.as_ptr() => _,
                inout("r1") rows.as_ptr() => _,
                inout("r2") in_f => _,
                inout("r3") col.len() => _,
                inout("r4") bias.as_ptr() => _,
                inout("r5") rq.as_ptr() => _,
                inout("r8") out.as_mut_ptr() => _,
                inout("r9") quads => _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            );
        }
    }
}

/// `acc + lo(a) * lo(b)`, wrapping.
#[inline(always)]
pub(crate) fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
    // One instruction would do, but only the portable formula runs outside the 3x3 loop.
    portable::smlabb(a, b, acc)
}

/// `acc + hi(a) * hi(b)`, wrapping.
#[inline(always)]
pub(crate) fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
    portable::smlatt(a, b, acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fully_connected::tests::Rng;
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

    fn dot(x: &[i8], off: i32, w: &[i8]) -> i32 {
        x.iter()
            .zip(w)
            .map(|(&x, &w)| (i32::from(x) + off) * i32::from(w))
            .sum()
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
            let cols: Vec<[u32; 4]> = qa
                .iter()
                .zip(&qb)
                .map(|(a, b)| [a[0], a[1], b[0], b[1]])
                .collect();
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
