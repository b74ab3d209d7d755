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
use crate::ops::Requant;

/// Most channels at the filter's end done in Rust (whole-word reads of a window that is not
/// whole words run up to three bytes past a row: at most three rows, plus an odd one).
const TAIL: usize = 4;

impl Conv<'_> {
    /// Every output through [`gemm_direct`], if the layer allows it (`false`, nothing
    /// written, otherwise): biases, every channel common, windows of at most [`MAX_TAPS`]
    /// taps, two pixels or more. `cols` holds `taps.div_ceil(4)` groups.
    pub(super) fn direct(
        &self,
        (bias, requant, max_sum): (Option<&[i32]>, Requant, u64),
        cols: &mut [[u32; 4]],
        output: &mut [i8],
    ) -> bool {
        let (taps, out_c, st) = (self.taps, self.out_c, self.stage);
        let Some(bias) = bias else { return false };
        let pixels = output.len() / out_c.max(1);
        if taps > MAX_TAPS || out_c < 2 || pixels < 2 || bias.len() < out_c {
            return false;
        }
        let stage_of = |c: usize| channel_stage(c, (Some(bias), requant), st, max_sum);
        let common = (0..out_c).all(|c| all_common([&stage_of(c)], st));
        if !common {
            return false;
        }
        // The loop's pairs: each reads `4 * groups` bytes of its second row.
        let groups = taps.div_ceil(4);
        let fits = |pairs: usize| (2 * pairs - 1) * taps + 4 * groups <= self.filter.len();
        let mut pairs = out_c / 2;
        while pairs > 0 && !fits(pairs) {
            pairs -= 1;
        }
        let first_tail = 2 * pairs;
        if out_c - first_tail > TAIL {
            return false;
        }
        let mut p = 0;
        while p < pixels {
            // An odd last pixel is paired with the one before it, which is written again with
            // the same bytes.
            let a = if p + 1 < pixels { p } else { p - 1 };
            self.gather((a, a + 1), 0..taps, cols);
            let cols = &cols[..groups];
            let Some(two) = output.get_mut(a * out_c..(a + 2) * out_c) else {
                return true;
            };
            let (out_a, out_b) = two.split_at_mut(out_c);
            let zp = st.output_offset;
            let consts = (bias, requant);
            gemm_direct(cols, (self.filter, taps), consts, zp, (out_a, out_b), pairs);
            // The tail's stages again each time: at most three channels, in layers whose
            // windows are not whole words, cheaper than holding them in this frame.
            for c in first_tail..out_c {
                let s = stage_of(c);
                let w = self.filter.get(c * taps..).unwrap_or_default();
                let acc = mac_rows(cols, w, 0, taps, [s.bias; 4]);
                out_a[c] = s.out(acc[0], st);
                out_b[c] = s.out(acc[2], st);
            }
            p = a + 2;
        }
        true
    }
}
