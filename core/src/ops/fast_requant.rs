//! The int8 output stage of the fast kernels: TFLite-Micro's double-rounding requantization in
//! six instructions for the usual channel, exact for every accumulator a layer can produce.
//!
//! The reference ([`QuantizedMultiplier::apply`], then the output zero point and the clamp) is
//! `rdbp(srdhm(acc << left, m), right) + zp`. With `a = acc << left`:
//! - `srdhm(a, m) = floor((a * m + 2^30) / 2^31)` for every `a, m` but the one saturating pair
//!   (gemmlowp's nudge, then truncating division, is exactly this floor), which is
//!   `SMMULR(2a, m) = floor((2a * m + 2^31) / 2^32)` whenever `2a` fits in an i32.
//! - `rdbp(y, e) = (y + 2^(e-1) - [y < 0]) >> e` for `e >= 1` (ties away from zero), `y` for
//!   `e = 0`; and `(v >> e) + zp = (v + (zp << e)) >> e` since `zp << e` is a multiple of `2^e`.
//!
//! So a [`Kind::Fast`] channel computes `((y + ((y >> 31) & neg)) + add) >> right` with
//! `y = SMMULR(acc << (left + 1), m)`, `neg = -[right > 0]` and `add = 2^(right-1) + (zp <<
//! right)`; it is one when `|bias| + max |sum of products|` is below `2^(30 - left)` (so `2a`
//! fits, nothing wraps, and `|y| <= 2^30`) and `right <= 21` (so the additions cannot
//! overflow either). Otherwise, as the reference is monotonic in the accumulator, a channel
//! whose lowest and highest possible accumulators give the same output always gives it
//! ([`Kind::Constant`]: no multiplications at all; VWW's dead channels, bias -2^30 and a tiny
//! multiplier). Any other channel is [`Kind::Slow`]: the reference function on the exact
//! accumulator.

use super::output_stage::requantize;
use super::simd::{smmulr, RequantSsat};
use super::Int8Stage;
use crate::quant::QuantizedMultiplier;

/// How a channel's outputs are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// The six-instruction stage.
    #[default]
    Fast,
    /// Every output is `value`, whatever the inputs.
    Constant,
    /// The reference requantization.
    Slow,
}

/// One output channel's constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct ChannelStage {
    /// Added to the channel's sum of products before requantizing.
    pub(crate) bias: i32,
    mult: i32,
    /// Rounding constant plus the output zero point, both scaled by `2^right`.
    add: i32,
    q: QuantizedMultiplier,
    /// The multiplier's left shift, plus one for the doubling.
    left: u8,
    right: u8,
    /// The channel's [`Kind`] as its `u8` (see [`Self::kind`]): the stage is plain data, so
    /// kernels may keep it in arena scratch.
    kind: u8,
    /// The output of a [`Kind::Constant`] channel.
    pub(crate) value: i8,
}

impl Default for ChannelStage {
    fn default() -> Self {
        Self {
            bias: 0,
            mult: 0,
            left: 1,
            add: 0,
            right: 0,
            kind: Kind::Constant as u8,
            value: 0,
            q: QuantizedMultiplier {
                multiplier: 0,
                shift: 0,
            },
        }
    }
}

// SAFETY: `repr(C)`, fields i32, u8 and i8 (24 bytes, no padding); every bit pattern is a
// valid stage (an unknown kind code reads as `Kind::Fast`).
unsafe impl crate::cast::Pod for ChannelStage {}
const _: () = assert!(core::mem::size_of::<ChannelStage>() == 24);

impl ChannelStage {
    /// How the channel's outputs are computed.
    pub(crate) fn kind(&self) -> Kind {
        match self.kind {
            1 => Kind::Constant,
            2 => Kind::Slow,
            _ => Kind::Fast,
        }
    }

    /// The constants for a channel with this bias and multiplier whose sums of products are at
    /// most `max_sum` in magnitude. `stage` was validated by `check_int8`. Once per channel
    /// and layer, so kept out of line (one copy in flash).
    #[inline(never)]
    pub(crate) fn new(bias: i32, q: QuantizedMultiplier, stage: &Int8Stage, max_sum: u64) -> Self {
        let slow = Self {
            bias,
            kind: Kind::Slow as u8,
            q,
            ..Self::default()
        };
        if !(-31..=30).contains(&q.shift) || !(-128..=127).contains(&stage.output_offset) {
            return slow;
        }
        let left = q.shift.max(0) as u32;
        let right = q.shift.min(0).unsigned_abs();
        let bound = u64::from(bias.unsigned_abs()).saturating_add(max_sum);
        if right > 21 || bound >= 1u64 << (30 - left) {
            // Not the fast stage: a constant channel, if its extremes say so, else slow.
            // Lowest and highest accumulators, if the reference computes them without wrapping.
            let reach = i64::try_from(max_sum).unwrap_or(i64::MAX);
            let (lo, hi) = (
                i64::from(bias).saturating_sub(reach),
                i64::from(bias).saturating_add(reach),
            );
            // `acc << left` fits in an i32 exactly when `acc` lies within the i32 range shifted
            // right (both ends are exact: the low end is a power of two).
            let unwrapped = |acc: i64| {
                (i64::from(i32::MIN) >> left..=i64::from(i32::MAX) >> left).contains(&acc)
            };
            if unwrapped(lo) && unwrapped(hi) {
                let (lo, hi) = (
                    requantize_slow(lo as i32, q, stage),
                    requantize_slow(hi as i32, q, stage),
                );
                if lo == hi {
                    return Self {
                        kind: Kind::Constant as u8,
                        value: lo,
                        ..slow
                    };
                }
            }
            return slow;
        }
        Self {
            bias,
            mult: q.multiplier,
            left: left as u8 + 1,
            add: ((1i32 << right) >> 1) + (stage.output_offset << right),
            right: right as u8,
            kind: Kind::Fast as u8,
            value: 0,
            q,
        }
    }

    /// The requantized value before the clamp of a [`Kind::Fast`] channel, for a sum that
    /// already includes the bias.
    #[inline(always)]
    fn apply(&self, acc: i32) -> i32 {
        // Ties away from zero need a nudge for negatives, when there is a shift.
        let neg = -i32::from(self.right > 0);
        let y = smmulr(acc << self.left, self.mult);
        (y + ((y >> 31) & neg) + self.add) >> self.right
    }

    /// A [`Kind::Fast`] stage's constants `(left, mult, add, right)`: the output before the
    /// clamp is `(y + ((y >> 31) & -[right > 0]) + add) >> right` with
    /// `y = smmulr(acc << left, mult)`. `None` for other kinds.
    pub(crate) fn fast_parts(&self) -> Option<(u32, i32, i32, u32)> {
        (self.kind() == Kind::Fast).then_some((
            self.left.into(),
            self.mult,
            self.add,
            self.right.into(),
        ))
    }

    /// The bound on `|bias|` below which this [`Kind::Fast`] stage, computed for some bias,
    /// is also the stage of a channel with that bias (and the same multiplier and sum bound):
    /// where the fast stage's bound holds. Zero for other kinds.
    pub(crate) fn bias_room(&self, max_sum: u64) -> u32 {
        let limit = 1u64 << (30 - u32::from(self.left.saturating_sub(1)).min(30));
        match self.kind() {
            Kind::Fast => limit.saturating_sub(max_sum) as u32,
            _ => 0,
        }
    }

    /// The constants of the assembly loops' output stage.
    pub(crate) fn ssat(&self) -> RequantSsat {
        RequantSsat {
            mult: self.mult,
            left: self.left.into(),
            add: self.add,
            right: self.right.into(),
        }
    }

    /// Whether the assembly loops' output stage is exact for this channel (see [`all_common`]).
    fn is_common(&self) -> bool {
        self.kind() == Kind::Fast && self.right > 0
    }
}

/// The largest `|x + input_offset| * |w|` for int8 `x` and `w`.
pub(crate) fn max_product(stage: &Int8Stage) -> u64 {
    let off = i64::from(stage.input_offset);
    let x = (off - 128).abs().max((off + 127).abs()) as u64;
    x * 128
}

impl ChannelStage {
    /// The int8 output for a sum that already includes the bias, for any kind of channel and
    /// activation range: what the Rust paths use. The assembly loops take the constants of the
    /// usual channel instead ([`ChannelStage::ssat`], see [`all_common`]).
    #[inline]
    pub(crate) fn out(&self, acc: i32, stage: &Int8Stage) -> i8 {
        match self.kind() {
            Kind::Fast => {
                let v = self.apply(acc);
                v.max(stage.act_min.into()).min(stage.act_max.into()) as i8
            }
            Kind::Constant => self.value,
            Kind::Slow => requantize_slow(acc, self.q, stage),
        }
    }
}

/// The reference output stage, out of line: the rare channels that need it share one copy
/// instead of one inlined into every kernel loop.
#[inline(never)]
fn requantize_slow(acc: i32, q: QuantizedMultiplier, stage: &Int8Stage) -> i8 {
    requantize(acc, q, stage)
}

/// Whether the assembly loops' output stage ([`requant_ssat`] with [`ChannelStage::ssat`]) is
/// exact for every output of channels with these stages: every channel is [`Kind::Fast`] and
/// shifts right (`right >= 1`, so the sign nudge needs no mask), and the activation range is
/// all of int8 (one `SSAT`). ReLU and ReLU6 outputs with zero point -128 and scale 6/255 or
/// more, and linear outputs, are.
///
/// [`requant_ssat`]: super::simd::requant_ssat
pub(crate) fn all_common<'a>(
    stages: impl IntoIterator<Item = &'a ChannelStage>,
    stage: &Int8Stage,
) -> bool {
    stage.act_min == i8::MIN
        && stage.act_max == i8::MAX
        && stages.into_iter().all(ChannelStage::is_common)
}

/// Fills `out` with the stages of channels `first..first + out.len()`. `requant` holds one
/// multiplier per channel or one for all (checked by `check_int8`), `bias` one per channel.
#[inline(never)]
pub(crate) fn channel_stages(
    out: &mut [ChannelStage],
    first: usize,
    bias: Option<&[i32]>,
    requant: &[QuantizedMultiplier],
    stage: &Int8Stage,
    max_sum: u64,
) {
    let bias_all = bias;
    let bias = |c: usize| bias.and_then(|b| b.get(c)).copied().unwrap_or(0);
    if let [q] = *requant {
        // One multiplier: the channels differ only by their bias. A fast stage stays fast for
        // any bias within its bound, so only the others need the whole classification.
        let shared = ChannelStage::new(0, q, stage, max_sum);
        let room = shared.bias_room(max_sum);
        for (i, s) in out.iter_mut().enumerate() {
            let b = bias(first + i);
            *s = if b.unsigned_abs() < room {
                ChannelStage { bias: b, ..shared }
            } else {
                ChannelStage::new(b, q, stage, max_sum)
            };
        }
        return;
    }
    for (i, s) in out.iter_mut().enumerate() {
        *s = channel_stage(first + i, (bias_all, requant), stage, max_sum);
    }
}

/// The stage of channel `c` alone, as [`channel_stages`] gives it.
pub(crate) fn channel_stage(
    c: usize,
    (bias, requant): (Option<&[i32]>, &[QuantizedMultiplier]),
    stage: &Int8Stage,
    max_sum: u64,
) -> ChannelStage {
    let b = bias.and_then(|b| b.get(c)).copied().unwrap_or(0);
    let zero = QuantizedMultiplier {
        multiplier: 0,
        shift: 0,
    };
    let q = requant.get(c).or(requant.first()).copied().unwrap_or(zero);
    ChannelStage::new(b, q, stage, max_sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::simd::requant_ssat;
    use crate::test_support::{stage, Rng};

    #[test]
    fn every_kind_matches_the_reference_stage() {
        let mut rng = Rng(0x0dd_ba11_c0ff_ee00);
        let mut kinds = [0; 3];
        for case in 0..200_000 {
            let shift = rng.int(-31, 30) as i32;
            let multiplier = match rng.next() % 8 {
                0 => 0,
                1 => i32::MAX,
                2 => rng.next() as i32,
                _ => rng.int(1 << 30, i32::MAX as i64) as i32,
            };
            let q = QuantizedMultiplier { multiplier, shift };
            let st = rng.stage();
            let bias = match rng.next() % 4 {
                0 => rng.next() as i32,
                1 => rng.int(-(1 << 30) - 99, -(1 << 30) + 99) as i32,
                _ => rng.int(-(1 << 20), 1 << 20) as i32,
            };
            let max_sum = [0u64, 1 << 10, 1 << 20, 1 << 28][(rng.next() % 4) as usize];
            let cs = ChannelStage::new(bias, q, &st, max_sum);
            kinds[cs.kind() as usize] += 1;
            let reach = max_sum as i64;
            let sums = [
                -reach,
                reach,
                0,
                -1,
                1,
                rng.int(-reach, reach),
                rng.int(-reach, reach),
            ];
            for s in sums.map(|s| s.clamp(-reach, reach)) {
                // The kernels' accumulator: the exact sum, wrapped like int32 arithmetic.
                let acc = (s + i64::from(bias)) as i32;
                let want = requantize(acc, q, &st);
                let got = cs.out(acc, &st);
                assert_eq!(got, want, "case {case}: acc {acc} {q:?} {st:?} {cs:?}");
                if all_common([&cs], &st) {
                    let r = cs.ssat();
                    let got = requant_ssat(acc, r.left, r.mult, r.add, r.right) as i8;
                    assert_eq!(got, want, "case {case}: acc {acc} {q:?}");
                }
            }
        }
        assert!(kinds.iter().all(|&k| k > 10_000), "{kinds:?}");
    }

    #[test]
    fn ties_round_like_the_reference() {
        // Every accumulator in a window around the multiples of small powers of two.
        for shift in [-8, -3, -1, 0, 1, 2] {
            for multiplier in [1 << 30, (1 << 30) + 1, i32::MAX, 1_500_000_000] {
                let q = QuantizedMultiplier { multiplier, shift };
                for zp in [-128, -5, 0, 127] {
                    let mut st = stage(0, zp);
                    (st.act_min, st.act_max) = (i8::MIN, i8::MAX);
                    let cs = ChannelStage::new(0, q, &st, 1 << 16);
                    assert_eq!(cs.kind(), Kind::Fast);
                    for acc in -70_000..70_000 {
                        assert_eq!(cs.apply(acc), q.apply(acc) + zp, "{acc} {q:?} {zp}");
                    }
                }
            }
        }
    }

    #[test]
    fn classifies_channels() {
        let q = |multiplier, shift| QuantizedMultiplier { multiplier, shift };
        let st = stage(0, -128);
        let kind = |b, q, s| ChannelStage::new(b, q, &st, s).kind();
        assert_eq!(kind(0, q(1 << 30, -21), 1 << 28), Kind::Fast);
        assert_eq!(kind(0, q(1 << 30, -22), 1 << 28), Kind::Slow);
        assert_eq!(kind(0, q(1 << 30, 0), (1 << 30) - 1), Kind::Fast);
        assert_eq!(kind(0, q(1 << 30, 0), 1 << 30), Kind::Slow);
        assert_eq!(kind(0, q(1 << 30, 31), 0), Kind::Slow);
        // VWW's dead channels: bias -2^30, a tiny multiplier: every output is -128.
        let dead = ChannelStage::new(-(1 << 30), q(1_895_044_315, -27), &st, 1 << 23);
        assert_eq!((dead.kind(), dead.value), (Kind::Constant, -128));
        // A zero multiplier makes the zero point, even where the fast stage cannot go.
        let zero = ChannelStage::new(1 << 30, q(0, 0), &stage(0, 7), 1 << 20);
        assert_eq!((zero.kind(), zero.value), (Kind::Constant, 7));
    }
}
