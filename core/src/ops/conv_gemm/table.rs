//! CONV_2D's table path, for any layer the direct path does not take: a block of
//! [`OC_BLOCK`] output channels at a time, their constants and the assembly's pair
//! descriptors planned into the layer's scratch ([`Tables`]), then every pixel pair of the
//! block through [`gemm_pairs`] (or, for other pairs and long windows, [`mac_rows`]).

use super::{mac_rows, short_rows, Cols, Conv, MAX_TAPS, OC_BLOCK};
use crate::ops::fast_requant::{all_common, channel_stages, ChannelStage, Kind};
use crate::ops::simd::{gemm_pairs, PairDesc, PairTable};
use crate::ops::Requant;

/// A block's tables for the table path, in the layer's scratch (not in a kernel frame): the
/// assembly's pair descriptors, every channel's stage, and the pairs (block-relative
/// channel indices) the assembly runs and those Rust runs.
pub(super) struct Tables<'s> {
    descs: &'s mut [PairDesc; PAIRS],
    stages: &'s mut [ChannelStage; OC_BLOCK],
    pairs: &'s mut [[u8; 2]; PAIRS + 1],
    rest: &'s mut [[u8; 2]; PAIRS + 1],
}

impl<'s> Tables<'s> {
    /// Bytes a layer reserves: each part a multiple of 8 bytes, plus what aligning the
    /// descriptors may skip (they hold pointers: 8-byte aligned on a 64-bit host).
    pub(super) const BYTES: usize = PAIRS * size_of::<PairDesc>()
        + OC_BLOCK * size_of::<ChannelStage>()
        + 2 * (2 * (PAIRS + 1)).next_multiple_of(8)
        + (align_of::<PairDesc>() - 4);

    /// The tables at the front of `bytes` (word-aligned), or `None` if it is too short.
    fn carve(bytes: &'s mut [u8]) -> Option<Self> {
        let skip = bytes.as_ptr().align_offset(align_of::<PairDesc>());
        let mut rest = bytes.get_mut(skip..)?;
        let descs = crate::cast::take_mut::<PairDesc>(&mut rest, PAIRS)?;
        let stages = crate::cast::take_mut::<ChannelStage>(&mut rest, OC_BLOCK)?;
        let pairs = crate::cast::take_mut::<[u8; 2]>(&mut rest, PAIRS + 1)?;
        let others = crate::cast::take_mut::<[u8; 2]>(&mut rest, PAIRS + 1)?;
        Some(Self {
            descs: descs.try_into().ok()?,
            stages: stages.try_into().ok()?,
            pairs: pairs.try_into().ok()?,
            rest: others.try_into().ok()?,
        })
    }
}

/// Channel pairs of one kind (for the assembly or not) a block holds at most; with one odd
/// channel of each kind paired with itself, a block holds `PAIRS + 1`.
const PAIRS: usize = OC_BLOCK / 2;

/// One block of output channels.
struct Block<'s> {
    /// The block's first channel.
    first: usize,
    /// Constants of each channel of the block.
    stages: &'s [ChannelStage],
    /// The channels that need their sums (not [`Kind::Constant`]), block-relative, in pairs;
    /// an odd last one is paired with itself.
    pairs: &'s [[u8; 2]],
    /// Whether some channel is [`Kind::Constant`].
    constants: bool,
    /// The pairs the assembly loop runs, and the others (which run in Rust).
    table: (PairTable<'s, PAIRS>, &'s [[u8; 2]]),
}

impl Conv<'_> {
    /// Any layer, a block of [`OC_BLOCK`] output channels at a time with [`Tables`] of their
    /// constants; `rest` is the scratch after the columns (the filter's zero-padded last rows,
    /// then the tables). `false`, nothing written, if it is too short or the path is not built
    /// (feature `kernel-conv-table`). Inlined into [`conv2d_table`](super::conv2d_table), its one caller: one frame.
    #[inline(always)]
    pub(super) fn blocks(
        &self,
        (bias, requant, max_sum): (Option<&[i32]>, Requant, u64),
        cols: &mut Cols,
        rest: &mut [u8],
        output: &mut [i8],
    ) -> bool {
        if !cfg!(feature = "kernel-conv-table") {
            return false;
        }
        let (tails, tables) = rest.split_at_mut(rest.len().saturating_sub(Tables::BYTES));
        let (Some(tails), Some(mut tables)) =
            (crate::cast::slice_mut::<i8>(tails), Tables::carve(tables))
        else {
            return false;
        };
        let (filter, taps, out_c) = (self.filter, self.taps, self.out_c);
        // Rows from `short_from` on end less than a whole group before the filter does (a window
        // not of whole words): copied and zero-padded to whole groups.
        let groups = taps.div_ceil(4);
        let short_from = short_rows(taps, out_c);
        if taps % 4 != 0 && taps <= MAX_TAPS {
            let src = filter.chunks_exact(taps).skip(short_from);
            for (dst, src) in tails.chunks_exact_mut(4 * groups).zip(src) {
                dst[..taps].copy_from_slice(src);
                dst[taps..].fill(0);
            }
        }
        let tails: &[i8] = tails;
        for first in (0..out_c).step_by(OC_BLOCK) {
            // Here, not in `plan_block`: its frame and this one's callees' are not stacked.
            let len = OC_BLOCK.min(out_c - first);
            channel_stages(
                &mut tables.stages[..len],
                first,
                bias,
                requant,
                self.stage,
                max_sum,
            );
            let blk = self.plan_block(first, len, tails, &mut tables);
            self.block(&blk, cols, output);
        }
        true
    }

    /// Block `first..first + len`'s pair tables, in `tables` (which holds the block's
    /// stages). Not inlined: its frame (the planning's spills) is gone before the pixels'
    /// kernels run.
    #[inline(never)]
    fn plan_block<'t>(
        &self,
        first: usize,
        len: usize,
        tails: &'t [i8],
        tables: &'t mut Tables<'_>,
    ) -> Block<'t>
    where
        Self: 't,
    {
        let (filter, taps, out_c, stage) = (self.filter, self.taps, self.out_c, self.stage);
        let groups = taps.div_ceil(4);
        let short_from = short_rows(taps, out_c);
        let Tables {
            descs,
            stages: all_stages,
            pairs: all_pairs,
            rest: all_rest,
        } = tables;
        let stages = &all_stages[..len];
        // Pairs of the channels that need sums: those the assembly's output stage takes
        // first, then the others (each odd one out paired with itself).
        let (mut n, mut n_asm) = (0, 0);
        for asm in [true, false] {
            let mut these = (0..len).filter(|&j| {
                let s = &stages[j];
                s.kind() != Kind::Constant && all_common([s], stage) == asm
            });
            while let Some(j0) = these.next() {
                let j1 = these.next().unwrap_or(j0);
                all_pairs[n] = [j0 as u8, j1 as u8];
                n += 1;
            }
            if asm {
                n_asm = n;
            }
        }
        let pairs = &all_pairs[..n];
        let constants = stages.iter().any(|s| s.kind() == Kind::Constant);
        // The assembly loop takes every pair, reading rows as whole words: the filter's last
        // rows, where whole words would run past its end, from zero-padded copies.
        let rows = filter.get(first * taps..).unwrap_or_default();
        let row = |j: usize| match rows.get(j * taps..) {
            Some(r) if r.len() >= 4 * groups => r,
            _ => {
                let k = (first + j).saturating_sub(short_from);
                tails.get(k * 4 * groups..).unwrap_or_default()
            }
        };
        let mut table = PairTable::new(descs, groups, len);
        let mut r = 0;
        for (i, &[j0, j1]) in pairs.iter().enumerate() {
            let (j0, j1) = (usize::from(j0), usize::from(j1));
            let (s0, s1) = (&stages[j0], &stages[j1]);
            let (bias, rq) = ([s0.bias, s1.bias], [s0.ssat(), s1.ssat()]);
            let asm = i < n_asm && taps <= MAX_TAPS;
            if !asm || !table.push((row(j0), row(j1)), bias, rq, [j0, j1]) {
                all_rest[r] = [j0 as u8, j1 as u8];
                r += 1;
            }
        }
        Block {
            first,
            stages,
            pairs,
            constants,
            table: (table, &all_rest[..r]),
        }
    }
}

impl Conv<'_> {
    /// Every pixel's outputs for one block of channels.
    fn block(&self, blk: &Block, cols: &mut Cols, output: &mut [i8]) {
        let (out_c, range) = (self.out_c, blk.first..blk.first + blk.stages.len());
        let pixels = output.len() / out_c;
        if pixels == 1 {
            return self.one_pixel(blk, cols, &mut output[range]);
        }
        // An odd last pixel is paired with the one before it, which is written again (the
        // same bytes): no pixel needs a spare output.
        let even = pixels & !1;
        let (head, last) = output.split_at_mut(even * out_c);
        for (p, pair) in head.chunks_exact_mut(2 * out_c).enumerate() {
            let (a, b) = pair.split_at_mut(out_c);
            let outs = (&mut a[range.clone()], &mut b[range.clone()]);
            self.pixel_pair((2 * p, 2 * p + 1), blk, cols, outs);
        }
        if let Some(last) = last.get_mut(..out_c) {
            let before = &mut head[(even - 1) * out_c..];
            let outs = (&mut before[range.clone()], &mut last[range]);
            self.pixel_pair((even - 1, even), blk, cols, outs);
        }
    }

    /// [`Self::block`] for an output of one pixel, run as a pair of it with itself. Not
    /// inlined: the other output it needs is not in the usual layer's frame.
    #[inline(never)]
    fn one_pixel(&self, blk: &Block, cols: &mut Cols, output: &mut [i8]) {
        let mut spare = [0i8; OC_BLOCK];
        let spare = &mut spare[..output.len()];
        self.pixel_pair((0, 0), blk, cols, (output, spare));
    }

    /// The block's outputs for pixels `p.0` and `p.1` (which may be the same pixel).
    fn pixel_pair(
        &self,
        p: (usize, usize),
        blk: &Block,
        cols: &mut Cols,
        (out_a, out_b): (&mut [i8], &mut [i8]),
    ) {
        if blk.constants {
            for (j, s) in blk.stages.iter().enumerate() {
                if s.kind() == Kind::Constant {
                    out_a[j] = s.value;
                    out_b[j] = s.value;
                }
            }
        }
        let (taps, st) = (self.taps, self.stage);
        if blk.pairs.is_empty() {
            return;
        }
        let rows = self.filter.get(blk.first * taps..).unwrap_or_default();
        if taps <= MAX_TAPS {
            self.gather(p, 0..taps, cols);
            let cols = &cols[..taps.div_ceil(4)];
            let (table, pairs) = &blk.table;
            gemm_pairs(cols, table, out_a, out_b);
            for &[j0, j1] in *pairs {
                let (j0, j1) = (usize::from(j0), usize::from(j1));
                let (s0, s1) = (&blk.stages[j0], &blk.stages[j1]);
                let w = rows.get(j0 * taps..).unwrap_or_default();
                let init = [s0.bias, s1.bias, s0.bias, s1.bias];
                let acc = mac_rows(cols, w, (j1 - j0) * taps, taps, init);
                out_a[j0] = s0.out(acc[0], st);
                out_a[j1] = s1.out(acc[1], st);
                out_b[j0] = s0.out(acc[2], st);
                out_b[j1] = s1.out(acc[3], st);
            }
            return;
        }
        self.long_window(p, blk, cols, (out_a, out_b));
    }

    /// [`Self::pixel_pair`] for windows longer than [`MAX_TAPS`]: slices of `MAX_TAPS` taps,
    /// sums kept per channel. Not inlined, so the usual path's frame does not hold the sums.
    #[inline(never)]
    fn long_window(
        &self,
        p: (usize, usize),
        blk: &Block,
        cols: &mut Cols,
        (out_a, out_b): (&mut [i8], &mut [i8]),
    ) {
        let (taps, st) = (self.taps, self.stage);
        let rows = self.filter.get(blk.first * taps..).unwrap_or_default();
        let mut sums = [[0i32; 2]; OC_BLOCK];
        for (s, st) in sums.iter_mut().zip(blk.stages) {
            *s = [st.bias; 2];
        }
        let mut start = 0;
        while start < taps {
            let len = MAX_TAPS.min(taps - start);
            self.gather(p, start..start + len, cols);
            let cols = &cols[..len.div_ceil(4)];
            for &[j0, j1] in blk.pairs {
                let (j0, j1) = (usize::from(j0), usize::from(j1));
                let w = rows.get(j0 * taps + start..).unwrap_or_default();
                let init = [sums[j0][0], sums[j1][0], sums[j0][1], sums[j1][1]];
                let acc = mac_rows(cols, w, (j1 - j0) * taps, len, init);
                sums[j0] = [acc[0], acc[2]];
                sums[j1] = [acc[1], acc[3]];
            }
            start += len;
        }
        for &j in blk.pairs.iter().flatten() {
            let (j, s) = (usize::from(j), &blk.stages[usize::from(j)]);
            out_a[j] = s.out(sums[j][0], st);
            out_b[j] = s.out(sums[j][1], st);
        }
    }
}
