//! The DSP-extension versions. Registers r6 and r7 cannot be asm operands (LLVM's base and
//! frame pointers), so the loops that need 14 registers save them on the stack and restore
//! them before the block ends.

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

/// A multiply-accumulate instruction `$insn r, a, b, acc` as a function.
macro_rules! multiply_accumulate {
    ($name:ident, $insn:literal) => {
        #[inline(always)]
        pub(super) fn $name(a: u32, b: u32, acc: i32) -> i32 {
            let r;
            // SAFETY: register-only arithmetic; no memory or stack touched. The instruction
            // sets the Q flag on overflow, which nothing reads (the sum wraps like the
            // portable one).
            unsafe {
                asm!(concat!($insn, " {r}, {a}, {b}, {c}"), r = lateout(reg) r, a = in(reg) a,
                     b = in(reg) b, c = in(reg) acc, options(pure, nomem, nostack));
            }
            r
        }
    };
}

multiply_accumulate!(smlad, "smlad");
multiply_accumulate!(smlabb, "smlabb");
multiply_accumulate!(smlatt, "smlatt");

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

/// r6 = the address (Thumb bit set) of the copy of the two-group loop at `3:` to enter so
/// that `$groups` groups (a register) run: the second copy for an odd count (the copies are
/// the same size). Clobbers r7 and r12.
#[rustfmt::skip]
macro_rules! loop_entry {
    ($groups:literal) => {
        concat!(
            "and r6, ", $groups, ", #1\n",
            "adr r7, 3f\n",
            "mov r12, #(4f - 3f)\n",
            "mla r6, r6, r12, r7\n",
            "orr r6, r6, #1\n",
        )
    };
}

/// Two copies of [`group_2x2`] at `3:` and `4:`, looping until r0 reaches r3. (Four copies
/// save half a compare-and-branch a group, 1.4% of KWS's instructions, for 112 more bytes of
/// flash.)
macro_rules! groups_2x2_loop {
    () => {
        concat!(
            // `adr` reaches only word-aligned labels reliably (LLVM assembled a halfword-
            // aligned `3:` to the word below it: a jump into the middle of an instruction).
            ".p2align 2\n",
            "3:\n",
            group_2x2!(),
            "\n4:\n",
            group_2x2!(),
            "\ncmp r0, r3\n",
            "bne 3b\n",
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
    // read, and the table borrows them. So every LDM of `cols` (word aligned), LDR of a row
    // (unaligned allowed) and STRB of an output is in bounds. The descriptors are read in
    // place (14 words each, `repr(C)`). Scratch state lives in 24 bytes pushed below the
    // stack pointer, popped with r6/r7 at the end. The one computed branch (`ldr pc`) lands
    // on the group copy that leaves an even number of groups; the loop ends exactly at the
    // columns' end, `groups` groups later.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            // Two groups an iteration, entered at the copy that leaves an even number.
            loop_entry!("r1"),
            "add r1, r0, r1, lsl #4",
            // sp+0 columns, +4 next pair, +8 pairs end, +12 out_a, +16 out_b, +20 entry.
            "push {{r0, r2, r3, r4, r5, r6}}",
            "mov r3, r1",
            "mov r12, r2",
            "2:",
            "ldm r12!, {{r1, r2, r8, r9}}",
            "str r12, [sp, #4]",
            "mov r10, r8",
            "mov r11, r9",
            "ldr r0, [sp]",
            "ldr pc, [sp, #20]",
            groups_2x2_loop!(),
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

/// One channel's output stage for [`gemm_direct`] from its multiplier and shift at r12 (then
/// advanced by the step at sp+16): r4 = multiplier, r5 = right = -shift, r6 = add =
/// `2^(right-1) + (zp << right)` with the zero point at sp+20. Needs r7 = 1; clobbers lr.
#[rustfmt::skip]
macro_rules! channel_stage {
    () => {
        concat!(
            "ldrd r4, r5, [r12]\n",
            "ldr lr, [sp, #16]\n",
            "add r12, r12, lr\n",
            "rsb r5, r5, #0\n",
            "ldr r6, [sp, #20]\n",
            "lsl r6, r6, r5\n",
            "lsl lr, r7, r5\n",
            "add r6, r6, lr, lsr #1\n",
        )
    };
}

// Out of line: the optimizer otherwise peels the pixel loop around it and keeps two copies
// of the assembly (measured: +400 B).
#[inline(never)]
pub(super) fn gemm_direct(
    cols: &[[u32; 4]],
    (filter, taps): (&[i8], usize),
    (bias, requant): (&[i32], &[crate::quant::QuantizedMultiplier]),
    zp: i32,
    (out_a, out_b): (&mut [i8], &mut [i8]),
    pairs: usize,
) {
    // Loop state, copied below the stack pointer: columns, row 0 of the pair, next biases,
    // next multiplier, multiplier step, zero point, next outputs A and B, pairs, groups.
    let step = if requant.len() > 1 { 8 } else { 0 };
    let args: [u32; 10] = [
        cols.as_ptr() as u32,
        filter.as_ptr() as u32,
        bias.as_ptr() as u32,
        requant.as_ptr() as u32,
        step,
        zp as u32,
        out_a.as_mut_ptr() as u32,
        out_b.as_mut_ptr() as u32,
        pairs as u32,
        cols.len() as u32,
    ];
    // SAFETY: the caller checked `1 <= pairs`, `cols.len() >= 1`, that every pair's two rows
    // (`filter[2k * taps..]` and the next, each `4 * cols.len()` bytes, LDR unaligned allowed)
    // lie in `filter`, that `bias` (LDRD, word aligned) holds `2 * pairs` entries, `requant`
    // one or `2 * pairs` (LDRD of multiplier and shift, `repr(C)` pairs of i32) and both
    // outputs (STRB) `2 * pairs` bytes. `args` is read once. The state lives in 40 bytes below
    // the stack pointer, released with r6/r7 popped at the end. The computed branch lands on
    // the word-aligned group copy that leaves an even number of groups.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "sub sp, #40",
            "ldm r12!, {{r4, r5, r6, r7, r8, r9, r10, r11}}",
            "mov lr, sp",
            "stm lr, {{r4, r5, r6, r7, r8, r9, r10, r11}}",
            "ldm r12, {{r4, r5}}",
            "str r4, [sp, #32]",
            loop_entry!("r5"),
            "str r6, [sp, #36]",
            "ldr r0, [sp]",
            "add r3, r0, r5, lsl #4",
            "2:",
            "ldr r12, [sp, #8]",
            "ldrd r8, r9, [r12], #8",
            "str r12, [sp, #8]",
            "mov r10, r8",
            "mov r11, r9",
            "ldr r1, [sp, #4]",
            "ldr r0, [sp]",
            "ldr pc, [sp, #36]",
            groups_2x2_loop!(),
            // The next pair's rows start two rows on.
            "ldr r1, [sp, #4]",
            "add r1, r1, r2, lsl #1",
            "str r1, [sp, #4]",
            // Channel 0 (r8, r10), then channel 1 (r9, r11); left is 1 (r7).
            "ldr r12, [sp, #12]",
            "mov r7, #1",
            channel_stage!(),
            requant_in_place!("r8", "r4", "r7", "r6", "r5"),
            requant_in_place!("r10", "r4", "r7", "r6", "r5"),
            channel_stage!(),
            requant_in_place!("r9", "r4", "r7", "r6", "r5"),
            requant_in_place!("r11", "r4", "r7", "r6", "r5"),
            "str r12, [sp, #12]",
            "ldrd r6, r7, [sp, #24]",
            "strb r8, [r6], #1",
            "strb r9, [r6], #1",
            "strb r10, [r7], #1",
            "strb r11, [r7], #1",
            "strd r6, r7, [sp, #24]",
            "ldr r4, [sp, #32]",
            "subs r4, r4, #1",
            "str r4, [sp, #32]",
            "bne 2b",
            "add sp, #40",
            "pop {{r6, r7}}",
            inout("r12") args.as_ptr() => _,
            in("r2") taps,
            out("r0") _,
            out("r1") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("lr") _,
        );
    }
}

/// The products of one q15 group (r4 values 0, 2; r5 values 1, 3) with four weight rows: r1
/// row 0 and r6 row 2 (both advanced a word), r2 stride; sums in r8..r11.
macro_rules! products_1x4 {
    () => {
        "ldr lr, [r1, r2]
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

/// One q15 group of [`super::mac_1x4`]: r0 column, r1 row 0, r6 row 2, r2 stride.
macro_rules! group_1x4 {
    () => {
        concat!("ldrd r4, r5, [r0], #8\n", products_1x4!())
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

pub(super) fn dw3x3_row(k: &mut super::Dw3x3, rows: [*const u32; 3], out: &mut [i8]) {
    k.args.rows = rows;
    k.args.out = out.as_mut_ptr();
    k.args.n = k.n;
    let args: *mut super::DwArgs = &mut k.args;
    // SAFETY: `Dw3x3::new` made `n >= 1`, and `Dw3x3::row` checked that each row pointer
    // has the `(n - 1) * stride + 3` words of the ring after it that the windows read (LDR
    // with immediate offsets 0, 4, 8; the ring is word aligned) and that `out` holds the
    // `(n - 1) * out_stride + 4` bytes the STRBs write. The taps (72 bytes, LDRD of
    // word-aligned pairs), biases and constants (LDM) are the `Dw3x3Consts` the kernel
    // borrows for its life. The assembly reads and updates `DwArgs` in place (`n`, `out`),
    // which we hold exclusively, and restores r6/r7 from the stack.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "mov r7, r0",
            "ldm r7, {{r0, r1, r2}}",
            "ldr r4, [r7, #16]",
            "2:",
            "ldr r3, [r7, #12]",
            "ldr lr, [r7, #36]",
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
            "ldr lr, [r7, #40]",
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

/// One tap of four channels for [`column_run`]: r12 the input (advanced by lr), r10 the
/// widened taps (advanced), sums c0, c1, c2, c3 in r4, r5, r8, r9; clobbers r1, r3, r6, r7.
/// Sets no flags.
macro_rules! column_tap {
    () => {
        "ldr r6, [r12]
         add r12, r12, lr
         sxtb16 r7, r6
         sxtb16 r6, r6, ror #8
         ldrd r1, r3, [r10], #8
         smlabb r4, r7, r1, r4
         smlatt r8, r7, r1, r8
         smlabb r5, r6, r3, r5
         smlatt r9, r6, r3, r9"
    };
}

const _: () = {
    use super::ColumnArgs as A;
    use core::mem::offset_of;
    assert!(offset_of!(A, x) == 0 && offset_of!(A, y) == 4 && offset_of!(A, y_end) == 8);
    assert!(offset_of!(A, out_step) == 12 && offset_of!(A, bias) == 16);
    assert!(offset_of!(A, rq) == 32 && offset_of!(A, w) == 96 && offset_of!(A, taps) == 100);
    assert!(offset_of!(A, step) == 104 && offset_of!(A, skip) == 108);
    assert!(size_of::<super::RequantSsat>() == 16);
};

pub(super) fn column_run(
    args: &mut super::ColumnArgs,
    _x: &[i8],
    _n: (usize, usize, usize),
    _w: &[[u32; 2]],
    _y: &mut [i8],
) {
    let args: *mut super::ColumnArgs = args;
    // SAFETY: `simd::column_run` built `args` from `x`, `w` and `y` after checking `n >= 1`,
    // `w` nonempty, `out_step >= 4`, `(n - 1) * advance + (taps - 1) * step + 4 <= x.len()`
    // and `(n - 1) * out_step + 4 <= y.len()`. Output `i`'s window reads the words at
    // `x + i * advance + k * step` for `k < taps` (LDR, unaligned allowed): r12 starts at
    // `x`, gains `step` a tap and `skip = advance - taps * step` (wrapping) after a window,
    // so these are the addresses read, all inside `x`. Each window reads the `taps` pairs of
    // `w` (LDRD, word aligned) from its start. The four STRBs write `y + i * out_step +
    // 0..4`, inside `y`; the loop stops when `y + n * out_step` is reached (`out_step > 0`).
    // `ColumnArgs` (word aligned, borrowed exclusively) is only read. r6/r7 are restored.
    unsafe {
        asm!(
            "push {{r6, r7}}",
            "ldr r12, [r0]",
            "ldr r2, [r0, #4]",
            "ldr lr, [r0, #104]",
            "2:",
            "ldrd r4, r5, [r0, #16]",
            "ldrd r8, r9, [r0, #24]",
            "ldr r10, [r0, #96]",
            "ldr r11, [r0, #100]",
            // Carry: an odd tap count; zero: no pair of taps.
            "lsrs r11, r11, #1",
            "bcc 3f",
            column_tap!(),
            "3:",
            "beq 5f",
            "4:",
            column_tap!(),
            column_tap!(),
            "subs r11, r11, #1",
            "bne 4b",
            "5:",
            "add r10, r0, #32",
            "ldm r10!, {{r1, r3, r6, r7}}",
            requant_in_place!("r4", "r1", "r3", "r6", "r7"),
            "ldm r10!, {{r1, r3, r6, r7}}",
            requant_in_place!("r5", "r1", "r3", "r6", "r7"),
            "ldm r10!, {{r1, r3, r6, r7}}",
            requant_in_place!("r8", "r1", "r3", "r6", "r7"),
            "ldm r10!, {{r1, r3, r6, r7}}",
            requant_in_place!("r9", "r1", "r3", "r6", "r7"),
            "strb r4, [r2]",
            "strb r5, [r2, #1]",
            "strb r8, [r2, #2]",
            "strb r9, [r2, #3]",
            "ldrd r1, r3, [r0, #8]",
            "add r2, r2, r3",
            "ldr r3, [r0, #108]",
            "add r12, r12, r3",
            "cmp r2, r1",
            "bne 2b",
            "pop {{r6, r7}}",
            in("r0") args,
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

/// One group of [`gemv_quads_i8`]: four int8 inputs at r0 widened with the offset in r3 into
/// r4 (values 0, 2) and r5 (values 1, 3), then [`products_1x4`].
macro_rules! group_1x4_i8 {
    () => {
        concat!(
            "ldr r5, [r0], #4\n",
            "sxtab16 r4, r3, r5\n",
            "sxtab16 r5, r3, r5, ror #8\n",
            products_1x4!()
        )
    };
}

/// The fully connected quad loop over groups that `$group` loads from r0 (advancing it
/// `1 << $shift` bytes a group; r3 holds the input offset for it), for the operands given.
/// Loop state lives in 36 bytes pushed below the stack pointer, popped with r6/r7 at the end.
macro_rules! gemv_quads_loop {
    ($group:ident, $shift:literal, $src:expr, $groups:expr, $off2:expr, $rows:expr, $in_f:expr,
     $bias:expr, $rq:expr, $out:expr, $quads:expr) => {
        asm!(
            "push {{r6, r7}}",
            "bic r7, r3, #3",
            concat!("add r7, r0, r7, lsl #", $shift),
            concat!("add r3, r0, r3, lsl #", $shift),
            // sp+0 source, +4 row 0, +8 source end, +12 bias, +16 constants, +20 end of the
            // whole quads of groups, +24 output, +28 quads left, +32 input offset.
            "push {{r0, r1, r3, r4, r5, r7, r8, r9, r10}}",
            "2:",
            "ldr r12, [sp, #12]",
            "ldm r12!, {{r8, r9, r10, r11}}",
            "str r12, [sp, #12]",
            "ldrd r0, r1, [sp]",
            "ldr r3, [sp, #32]",
            "add r6, r1, r2, lsl #1",
            // Four groups at a time up to r7, then one at a time up to the source's end.
            "ldr r7, [sp, #20]",
            "cmp r0, r7",
            "beq 4f",
            "3:",
            $group!(),
            $group!(),
            $group!(),
            $group!(),
            "cmp r0, r7",
            "bne 3b",
            "4:",
            "ldr r7, [sp, #8]",
            "cmp r0, r7",
            "beq 6f",
            "5:",
            $group!(),
            "cmp r0, r7",
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
            "add sp, #36",
            "pop {{r6, r7}}",
            inout("r0") $src => _,
            inout("r1") $rows => _,
            inout("r2") $in_f => _,
            inout("r3") $groups => _,
            inout("r4") $bias => _,
            inout("r5") $rq => _,
            inout("r8") $out => _,
            inout("r9") $quads => _,
            inout("r10") $off2 => _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        )
    };
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
    // `4 * quads` entries; `rq` is the four constants (LDM) every quad reads again; the
    // column is read with LDRD (word aligned).
    unsafe {
        gemv_quads_loop!(
            group_1x4,
            3,
            col.as_ptr(),
            col.len(),
            0u32,
            rows.as_ptr(),
            in_f,
            bias.as_ptr(),
            rq.as_ptr(),
            out.as_mut_ptr(),
            quads
        );
    }
}

pub(super) fn gemv_quads_i8(
    (x, off2): (&[i8], u32),
    (rows, in_f): (&[i8], usize),
    (bias, rq): (&[i32], &[super::RequantSsat; 4]),
    out: &mut [i8],
    quads: usize,
) {
    // SAFETY: the caller checked `4 <= x.len() <= in_f` with `x.len()` a multiple of 4, that
    // `rows` holds the `4 * quads` rows of `in_f` bytes read (each row's first `x.len()`
    // bytes; LDR of the input and of the rows, unaligned allowed), and that `bias` (LDM, word
    // aligned) and `out` (STRB) hold `4 * quads` entries; `rq` is the four constants (LDM)
    // every quad reads again.
    unsafe {
        gemv_quads_loop!(
            group_1x4_i8,
            2,
            x.as_ptr(),
            x.len() / 4,
            off2,
            rows.as_ptr(),
            in_f,
            bias.as_ptr(),
            rq.as_ptr(),
            out.as_mut_ptr(),
            quads
        );
    }
}
