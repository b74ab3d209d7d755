//! CONV_2D's usual layer without a table of channel constants: when every output channel takes
//! the assembly's output stage (see [`all_common`]) and has a bias, the loop reads consecutive
//! channels' rows, biases and multipliers in place and derives each channel's constants as it
//! goes ([`gemm_direct`]). Nothing per channel is held in RAM, so the kernel's frame stays
//! small; deriving the constants costs about a dozen instructions per channel pair and pixel
//! pair. The last channels, whose rows whole-word reads would run past the filter, go through
//! Rust with their stages computed once.

use super::{mac_rows, Conv, MAX_TAPS};
use crate::ops::fast_requant::{all_common, channel_stage};
use crate::ops::simd::gemm_direct;
use crate::ops::{Int8Stage, Requant};

/// Most channels at the filter's end done in Rust (whole-word reads of a window that is not
/// whole words run up to three bytes past a row: at most three rows, plus an odd one).
const TAIL: usize = 4;

/// How many channel pairs [`gemm_direct`] takes for a layer with windows of `taps` taps and
/// `out_c` filter rows, if it runs this way: biases, every channel common, windows of at
/// most [`MAX_TAPS`] taps, two pixels or more, at most [`TAIL`] channels left for Rust. What
/// the scratch sizing asks; the kernel asks [`Conv::direct_pairs`], the same test.
pub(super) fn direct_pairs(
    taps: usize,
    (filter, out_c): (&[i8], usize),
    (bias, requant, max_sum): (Option<&[i32]>, Requant, u64),
    st: &Int8Stage,
    pixels: usize,
) -> Option<usize> {
    pairs_for(taps, (filter, out_c), (bias?, requant, max_sum), st, pixels)
}

#[inline(always)]
fn pairs_for(
    taps: usize,
    (filter, out_c): (&[i8], usize),
    (bias, requant, max_sum): (&[i32], Requant, u64),
    st: &Int8Stage,
    pixels: usize,
) -> Option<usize> {
    if taps > MAX_TAPS || out_c < 2 || pixels < 2 || bias.len() < out_c {
        return None;
    }
    let stage_of = |c: usize| channel_stage(c, (Some(bias), requant), st, max_sum);
    if !(0..out_c).all(|c| all_common([&stage_of(c)], st)) {
        return None;
    }
    // The loop's pairs: each reads `4 * groups` bytes of its second row.
    let groups = taps.div_ceil(4);
    let fits = |pairs: usize| (2 * pairs - 1) * taps + 4 * groups <= filter.len();
    let mut pairs = out_c / 2;
    while pairs > 0 && !fits(pairs) {
        pairs -= 1;
    }
    (out_c - 2 * pairs <= TAIL).then_some(pairs)
}

/// Whether the layer runs the table-free loop with channels left for Rust (feature
/// `kernel-conv-tail`): an odd channel count, or windows not whole words.
pub(super) fn takes_tail(
    taps: usize,
    (filter, out_c): (&[i8], usize),
    consts: (Option<&[i32]>, Requant, u64),
    st: &Int8Stage,
    pixels: usize,
) -> bool {
    direct_pairs(taps, (filter, out_c), consts, st, pixels).is_some_and(|pairs| 2 * pairs < out_c)
}

impl Conv<'_> {
    /// Every output through [`gemm_direct`], if [`direct_pairs`] says the layer runs this
    /// way (`false`, nothing written, otherwise): its pairs at a time, the rest in Rust.
    /// `cols` holds `taps.div_ceil(4)` groups.
    pub(super) fn direct(
        &self,
        (bias, requant, max_sum): (Option<&[i32]>, Requant, u64),
        cols: &mut [[u32; 4]],
        output: &mut [i8],
    ) -> bool {
        let (taps, out_c) = (self.taps, self.out_c);
        let Some(bias) = bias else { return false };
        let pixels = output.len() / out_c.max(1);
        let Some(pairs) = self.direct_pairs((bias, requant, max_sum), pixels) else {
            return false;
        };
        if 2 * pairs < out_c && !cfg!(feature = "kernel-conv-tail") {
            return false;
        }
        let groups = taps.div_ceil(4);
        let mut p = 0;
        while p < pixels {
            // An odd last pixel is paired with the one before it, which is written again with
            // the same bytes.
            let a = if p + 1 < pixels { p } else { p - 1 };
            self.gather((a, a + 1), 0..taps, cols);
            let Some(cols) = cols.get(..groups) else {
                return false;
            };
            let Some(two) = output.get_mut(a * out_c..(a + 2) * out_c) else {
                return true;
            };
            let (out_a, out_b) = two.split_at_mut(out_c);
            let zp = self.stage.output_offset;
            let consts = (bias, requant);
            gemm_direct(cols, (self.filter, taps), consts, zp, (out_a, out_b), pairs);
            // Opaque to the optimizer: a loop-invariant test here gets the whole loop
            // unswitched and peeled, four copies of it in flash (measured: +1.7 KB).
            if cfg!(feature = "kernel-conv-tail") {
                for c in core::hint::black_box(2 * pairs)..out_c {
                    self.tail_channel(c, (bias, requant, max_sum), cols, (out_a, out_b));
                }
            }
            p = a + 2;
        }
        true
    }

    /// [`direct_pairs`] for this layer. Out of line: its stages stay out of the loop's frame.
    #[inline(never)]
    fn direct_pairs(&self, consts: (&[i32], Requant, u64), pixels: usize) -> Option<usize> {
        pairs_for(
            self.taps,
            (self.filter, self.out_c),
            consts,
            self.stage,
            pixels,
        )
    }

    /// Channel `c` of a pixel pair, in Rust, its stage computed again each time: at most
    /// [`TAIL`] channels, in layers whose windows are not whole words, cheaper than holding
    /// them. Out of line, so the loop's frame does not hold a stage.
    #[inline(never)]
    fn tail_channel(
        &self,
        c: usize,
        (bias, requant, max_sum): (&[i32], Requant, u64),
        cols: &[[u32; 4]],
        (out_a, out_b): (&mut [i8], &mut [i8]),
    ) {
        let (taps, st) = (self.taps, self.stage);
        let s = channel_stage(c, (Some(bias), requant), st, max_sum);
        let w = self.filter.get(c * taps..).unwrap_or_default();
        let acc = mac_rows(cols, w, 0, taps, [s.bias; 4]);
        if let (Some(a), Some(b)) = (out_a.get_mut(c), out_b.get_mut(c)) {
            *a = s.out(acc[0], st);
            *b = s.out(acc[2], st);
        }
    }
}
