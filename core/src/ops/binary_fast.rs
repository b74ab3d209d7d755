//! The inner loops of same-shape int8 ADD, SUB and MUL, and the byte clamp they share.
//!
//! Each loop ends in the output stage of `fast_requant` with two of its steps merged: `SMMLAR`
//! adds the rounding-and-zero-point constant `add` to `SMMULR`'s product, and the sign nudge is
//! taken from the multiplied value `v` rather than from the product `y`. The two nudges differ
//! only when `v < 0` and `y = 0`; then the value before the shift is `add - 1` instead of
//! `add = 2^(right-1) + (zp << right)`, and both shift to `zp` (`right >= 1`, which the loops
//! require). The clamp to int8 is `SSAT`; a narrower activation range is a second pass
//! ([`clamp`]), four bytes at a time.
//!
//! Under `cfg(mote_dsp)` the loops are assembly, four elements an iteration; elsewhere (the
//! host, thumbv6m) the same formulas run in Rust, and the tests compare those with the
//! reference arithmetic. `tests/tests/binary_qemu.rs` runs the assembly in QEMU.

#[cfg(mote_dsp)]
use core::arch::asm;

use super::simd::smmulr;

/// The output stage's constants (see `fast_requant`): multiplier, `2^(right-1) + (zp <<
/// right)`, and `right`, which must be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stage {
    pub(crate) mult: i32,
    pub(crate) add: i32,
    pub(crate) right: u32,
}

impl Stage {
    /// The int8 output for the multiplied value `v` (already shifted left by the stage's
    /// `left`), clamped to all of int8.
    #[inline(always)]
    pub(crate) fn out(&self, v: i32) -> i8 {
        let z = smmulr(v, self.mult)
            .wrapping_add(self.add)
            .wrapping_add(v >> 31);
        (z >> (self.right & 31)).clamp(-128, 127) as i8
    }
}

/// `out[i] = stage(t[a[i]] + t[256 + b[i]])` (tables indexed by the int8 value's bits), for
/// ADD and SUB from their two rescaling tables, over `out` in rows of `row` elements: each
/// input is either as long as `out` (it advances) or one row long (it repeats every row: a
/// per-channel operand). The caller guarantees `stage.right >= 1` and that no sum of two
/// entries overflows; other lengths write nothing.
pub(crate) fn add_tabled(
    t: &[i32; 512],
    stage: Stage,
    (a, b): (&[i8], &[i8]),
    out: &mut [i8],
    row: usize,
) {
    let n = out.len();
    let fits = |len: usize| len == n || len == row;
    if row == 0 || n % row != 0 || !fits(a.len()) || !fits(b.len()) {
        return;
    }
    let same = a.len() == n && b.len() == n;
    // Same shapes: one row of the leading multiple of four, the rest element by element.
    let (row, done) = match same {
        true => (n & !3, n & !3),
        false => (row, n),
    };
    let words = row % 4 == 0 && add_tabled_words(t, stage, (a, b), &mut out[..done], row);
    let (t1, t2) = t.split_at(256);
    let from = if words { done } else { 0 };
    for (i, o) in out.iter_mut().enumerate().skip(from) {
        let (x, y) = (a[i % a.len()], b[i % b.len()]);
        *o = stage.out(t1[usize::from(x as u8)].wrapping_add(t2[usize::from(y as u8)]));
    }
}

/// The assembly part of [`add_tabled`]: rows of a multiple of four elements. Returns whether
/// it ran.
#[cfg(mote_dsp)]
fn add_tabled_words(
    t: &[i32; 512],
    stage: Stage,
    (a, b): (&[i8], &[i8]),
    out: &mut [i8],
    row: usize,
) -> bool {
    let n = out.len();
    let rewind = |len: usize| if len == row && n > row { row } else { 0 };
    let advances = |len: usize| len >= n || len == row;
    if n == 0 || row == 0 || n % row != 0 || stage.right == 0 || !advances(a.len()) {
        return false;
    }
    if !advances(b.len()) {
        return false;
    }
    // Rewinds of each input at a row's end (its row length if it repeats), and the row length.
    let rows = [rewind(a.len()), rewind(b.len()), row];
    // One element: two bytes, their table entries, the output stage, one byte out.
    macro_rules! element {
        () => {
            "ldrb r11, [r0], #1
             ldrb r12, [r1], #1
             ldr r11, [r4, r11, lsl #2]
             ldr r12, [r5, r12, lsl #2]
             add r11, r11, r12
             smmlar r12, r11, r8, r9
             add r12, r12, r11, asr #31
             asr r12, r12, r10
             ssat r12, #8, r12
             strb r12, [r2], #1"
        };
    }
    // SAFETY: r2 writes the `n` bytes of `out` row by row (`row` bytes, a non-zero multiple of
    // 4, until lr), stopping at r3 = `out + n`, a multiple of `row` away. r0/r1 read a byte of
    // `a`/`b` per output byte, and at each row's end step back by their rewind: an input as
    // long as `out` never steps back, one a row long steps back to its start, so every read
    // is inside its slice. The table reads index 256 words from r4 and from r5 = r4 + 1024
    // with a byte (0..=255): inside the 512-word table. r6 and r7 (not allowed as operands)
    // are saved and restored, and so is the stack pointer; the other registers changed are
    // named.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "ldrd r6, r7, [r11]",
            "ldr r11, [r11, #8]",
            "push {{r11}}",
            "1:",
            "ldr lr, [sp]",
            "add lr, lr, r2",
            "2:",
            element!(),
            element!(),
            element!(),
            element!(),
            "cmp r2, lr",
            "bne 2b",
            "sub r0, r0, r6",
            "sub r1, r1, r7",
            "cmp r2, r3",
            "bne 1b",
            "add sp, #4",
            "pop {{r6, r7}}",
            inout("r0") a.as_ptr() => _,
            inout("r1") b.as_ptr() => _,
            inout("r2") out.as_mut_ptr() => _,
            in("r3") out.as_mut_ptr().add(n),
            in("r4") t.as_ptr(),
            in("r5") t.as_ptr().add(256),
            in("r8") stage.mult,
            in("r9") stage.add,
            in("r10") stage.right,
            inout("r11") rows.as_ptr() => _,
            out("r12") _,
            out("lr") _,
        );
    }
    true
}

#[cfg(not(mote_dsp))]
fn add_tabled_words(_: &[i32; 512], _: Stage, _: (&[i8], &[i8]), _: &mut [i8], _: usize) -> bool {
    false
}

/// The offsets and stage of a same-shape int8 MUL whose multiplier is below one half (its
/// `left` is 1 and its `right` at least 1): `out = stage(2 * (x + oa) * (y + ob))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MulStage {
    /// Minus input 1's zero point, in -127..=128.
    pub(crate) oa: i32,
    /// Minus input 2's zero point, in -127..=128.
    pub(crate) ob: i32,
    pub(crate) stage: Stage,
}

impl MulStage {
    #[inline(always)]
    fn out(&self, x: i8, y: i8) -> i8 {
        let p = (i32::from(x) + self.oa) * (i32::from(y) + self.ob);
        self.stage.out(p << 1)
    }
}

/// `out[i] = m(a[i], b[i])` for same-length slices.
pub(crate) fn mul(m: MulStage, a: &[i8], b: &[i8], out: &mut [i8]) {
    let n = out.len().min(a.len()).min(b.len());
    let done = mul_words(m, &a[..n], &b[..n], &mut out[..n]);
    for ((o, &x), &y) in out[done..n].iter_mut().zip(&a[done..n]).zip(&b[done..n]) {
        *o = m.out(x, y);
    }
}

/// The assembly part of [`mul`]: the leading multiple of four elements. Returns how many it
/// wrote.
#[cfg(mote_dsp)]
fn mul_words(m: MulStage, a: &[i8], b: &[i8], out: &mut [i8]) -> usize {
    let n = out.len() & !3;
    let offset_ok = |o: i32| (-127..=128).contains(&o);
    if n == 0 || a.len() < n || b.len() < n || m.stage.right == 0 {
        return 0;
    }
    if !(offset_ok(m.oa) && offset_ok(m.ob)) {
        return 0;
    }
    // The offsets in both halfwords: SXTAB16 adds them to two sign-extended bytes at once.
    let both = |o: i32| (o as u32 & 0xFFFF) * 0x0001_0001;
    // The output stage of the product in `$p`, stored at byte `$at` of the word.
    macro_rules! out {
        ($p:literal, $at:literal) => {
            concat!(
                "smmlar r6, ",
                $p,
                ", r8, r9\n",
                "add r6, r6, ",
                $p,
                ", asr #31\n",
                "asr r6, r6, r10\n",
                "ssat r6, #8, r6\n",
                "strb r6, [r2, #",
                $at,
                "]\n",
            )
        };
    }
    // Bytes 0 and 2 of the words in r11 (input 1) and r12 (input 2), or 1 and 3 with `ror #8`:
    // offset, widened to halfwords, input 2's doubled (at most 512: no overflow), multiplied.
    macro_rules! pair {
        ($ror:literal, $lo:literal, $hi:literal) => {
            concat!(
                "sxtab16 lr, r4, r11",
                $ror,
                "\n",
                "sxtab16 r6, r5, r12",
                $ror,
                "\n",
                "sadd16 r6, r6, r6\n",
                "smulbb r7, lr, r6\n",
                "smultt lr, lr, r6\n",
                out!("r7", $lo),
                out!("lr", $hi),
            )
        };
    }
    // SAFETY: r0/r1 read `n` bytes of `a`/`b` a word at a time (LDR allows unaligned
    // addresses on ARMv7E-M), r2 writes bytes 0..4 of each of `n / 4` words of `out`,
    // stopping at r3 = `out + n`, a non-zero multiple of 4 away. r6 and r7 (not allowed as
    // operands) are saved and restored around the loop; other registers changed are named.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "1:",
            "ldr r11, [r0], #4",
            "ldr r12, [r1], #4",
            pair!("", "0", "2"),
            pair!(", ror #8", "1", "3"),
            "adds r2, #4",
            "cmp r2, r3",
            "bne 1b",
            "pop {{r6, r7}}",
            inout("r0") a.as_ptr() => _,
            inout("r1") b.as_ptr() => _,
            inout("r2") out.as_mut_ptr() => _,
            in("r3") out.as_mut_ptr().add(n),
            in("r4") both(m.oa),
            in("r5") both(m.ob),
            in("r8") m.stage.mult,
            in("r9") m.stage.add,
            in("r10") m.stage.right,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
    n
}

#[cfg(not(mote_dsp))]
fn mul_words(_: MulStage, _: &[i8], _: &[i8], _: &mut [i8]) -> usize {
    0
}

/// Clamps every byte of `out` to `lo..=hi` (a fused activation narrower than int8).
pub(crate) fn clamp(out: &mut [i8], lo: i8, hi: i8) {
    if (lo, hi) == (i8::MIN, i8::MAX) {
        return;
    }
    let done = clamp_words(out, lo, hi);
    for o in out.iter_mut().skip(done) {
        *o = (*o).max(lo).min(hi);
    }
}

#[cfg(mote_dsp)]
fn clamp_words(out: &mut [i8], lo: i8, hi: i8) -> usize {
    let n = out.len() & !3;
    if n == 0 || lo > hi {
        return 0;
    }
    let four = |v: i8| u32::from(v as u8) * 0x0101_0101;
    // SAFETY: r0 reads and writes `n / 4` words of `out` (unaligned word accesses are allowed
    // on ARMv7E-M), stopping at r3 = `out + n`, a non-zero multiple of 4 away. SSUB8 sets the
    // GE flag of each byte where the first operand is at least the second, and SEL takes
    // those bytes from its first operand.
    unsafe {
        asm!(
            "1:",
            "ldr r12, [r0]",
            "ssub8 lr, r12, r1",
            "sel r12, r12, r1",
            "ssub8 lr, r12, r2",
            "sel r12, r2, r12",
            "str r12, [r0], #4",
            "cmp r0, r3",
            "bne 1b",
            inout("r0") out.as_mut_ptr() => _,
            in("r1") four(lo),
            in("r2") four(hi),
            in("r3") out.as_mut_ptr().add(n),
            out("r12") _,
            out("lr") _,
            options(nostack),
        );
    }
    n
}

#[cfg(not(mote_dsp))]
fn clamp_words(_: &mut [i8], _: i8, _: i8) -> usize {
    0
}

/// `out[i] = table[xs[i] as u8]` for same-length slices.
pub(crate) fn lookup(table: &[i8; 256], xs: &[i8], out: &mut [i8]) {
    let n = out.len().min(xs.len());
    let done = lookup_words(table, &xs[..n], &mut out[..n]);
    for (o, &x) in out[done..n].iter_mut().zip(&xs[done..n]) {
        *o = table[usize::from(x as u8)];
    }
}

/// The assembly part of [`lookup`]: the leading multiple of eight elements. Returns how many
/// it wrote.
#[cfg(mote_dsp)]
fn lookup_words(table: &[i8; 256], xs: &[i8], out: &mut [i8]) -> usize {
    let n = out.len() & !7;
    if n == 0 || xs.len() < n {
        return 0;
    }
    macro_rules! element {
        () => {
            "ldrb r12, [r0], #1
             ldrb r12, [r2, r12]
             strb r12, [r1], #1"
        };
    }
    // SAFETY: r0 reads `n` bytes of `xs`, r1 writes `n` bytes of `out`, stopping at r3 =
    // `out + n`, a non-zero multiple of 8 away; the table read is at a byte (0..=255) from
    // the start of the 256-byte table. Only the named registers and the flags change.
    unsafe {
        asm!(
            "1:",
            element!(),
            element!(),
            element!(),
            element!(),
            element!(),
            element!(),
            element!(),
            element!(),
            "cmp r1, r3",
            "bne 1b",
            inout("r0") xs.as_ptr() => _,
            inout("r1") out.as_mut_ptr() => _,
            in("r2") table.as_ptr(),
            in("r3") out.as_mut_ptr().add(n),
            out("r12") _,
            options(nostack),
        );
    }
    n
}

#[cfg(not(mote_dsp))]
fn lookup_words(_: &[i8; 256], _: &[i8], _: &mut [i8]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Rng;

    /// `fast_requant`'s stage with the nudge from `y`, then the clamp.
    fn with_y_nudge(v: i32, s: Stage) -> i8 {
        let y = smmulr(v, s.mult);
        ((y + (y >> 31) + s.add) >> s.right).clamp(-128, 127) as i8
    }

    /// Taking the nudge from the multiplied value instead of the product changes no output,
    /// for every multiplier (also below 2^30), shift and zero point, on values around zero
    /// and at the ends of the stage's range.
    #[test]
    fn nudge_from_the_value_equals_the_nudge_from_the_product() {
        let mut rng = Rng(0x4D0D_6E01);
        for case in 0..4000 {
            let right = 1 + (rng.next() % 21) as u32;
            let zp = (rng.next() % 256) as i32 - 128;
            let mult = match case % 3 {
                0 => 1 << 30,
                1 => (rng.next() as u32 >> 1) as i32,
                _ => (1 << 30) + (rng.next() as u32 >> 2) as i32,
            };
            let s = Stage {
                mult,
                add: (1 << (right - 1)) + (zp << right),
                right,
            };
            for v in (-300..300).chain([-(1 << 30), (1 << 30) - 2]) {
                let v = v * 2
                    + if case % 7 == 0 {
                        0
                    } else {
                        (rng.next() % 2) as i32 * 2
                    };
                assert_eq!(s.out(v), with_y_nudge(v, s), "{s:?} v {v}");
            }
            let v = ((rng.next() as u32) >> 1) as i32 - (1 << 30);
            assert_eq!(s.out(v), with_y_nudge(v, s), "{s:?} v {v}");
        }
    }

    #[test]
    fn clamp_limits_every_byte() {
        let mut rng = Rng(0xC1A3_0001);
        for len in [0, 1, 3, 4, 7, 64, 67] {
            let values: std::vec::Vec<i8> = (0..len).map(|_| rng.next() as i8).collect();
            for (lo, hi) in [(-128, 127), (0, 127), (-20, 100), (5, 5), (-128, -100)] {
                let mut out = values.clone();
                clamp(&mut out, lo, hi);
                let want: std::vec::Vec<i8> = values.iter().map(|v| (*v).clamp(lo, hi)).collect();
                assert_eq!(out, want);
            }
        }
    }
}
