//! The fast int8 FULLY_CONNECTED: four weight rows at a time against the input row widened to
//! int16 (plus the input offset; two MACs an instruction), requantized by the same exact stages
//! as the convolutions.
//!
//! The usual layer (rows a multiple of 4 long, one multiplier for all outputs, and the
//! assembly's output stage exact for all of them, see [`shared_stage`]) runs its output quads
//! in one assembly loop with the requantization inside: over the row widened once into scratch
//! ([`gemv_quads`]) when it is at most [`CHUNK`] features, else widening the input as it reads
//! it ([`gemv_quads_i8`], no scratch: two more instructions per four MACs). Otherwise each row is widened into scratch in slices of
//! [`CHUNK`] features, with the sums of a block of outputs kept in an array ([`mac_1x4`]), and
//! a row length that is not a multiple of 4 leaves a tail of one to three products per output,
//! done in Rust.

use super::fast_requant::{all_common, channel_stages, max_product, ChannelStage};
use super::simd::{gemv_quads, gemv_quads_i8, mac_1x4, sxtab16, sxtab16_ror8, RequantSsat};
use super::{Int8Stage, Requant};

/// MACs from which a layer is worth this kernel's flash (feature `kernel-fc-fast`, about
/// 3 KB): a smaller one costs at most a few ten thousand instructions more in the compact
/// loop. Keyword spotting's, VWW's and ResNet-8's classifiers are all smaller.
pub(crate) const FAST_MIN_MACS: usize = 4096;

/// Input features widened at once into scratch (`2 * CHUNK` bytes) by the general path.
const CHUNK: usize = 320;
/// Outputs whose constants and sums are held at once.
const BLOCK: usize = 16;
/// Zero biases for a block of a layer without biases (in flash, not on the stack).
static ZEROS: [i32; BLOCK] = [0; BLOCK];

/// The output stage every output shares when the layer takes the assembly loop: rows of whole
/// words, one multiplier, its stage exact in the assembly (see [`all_common`]) for every bias
/// (`|b| < room`, checked as `b + room - 1 < 2 * room - 1` unsigned).
fn shared_stage(
    stage: &Int8Stage,
    in_f: usize,
    bias: Option<&[i32]>,
    requant: Requant,
) -> Option<ChannelStage> {
    let max_sum = max_product(stage).saturating_mul(in_f as u64);
    let shared = match *requant {
        [q] if in_f % 4 == 0 => ChannelStage::new(0, q, stage, max_sum),
        _ => return None,
    };
    let room = shared.bias_room(max_sum).min(1 << 30);
    let fits = |b: &i32| (*b as u32).wrapping_add(room - 1) < 2 * room - 1;
    let exact = all_common([&shared], stage) && room > 0 && bias.is_none_or(|b| b.iter().all(fits));
    exact.then_some(shared)
}

/// Scratch bytes [`fully_connected`] needs for rows of `in_f` features: one widened chunk,
/// except for the assembly loop over rows longer than [`CHUNK`], which needs none.
pub(crate) fn scratch_bytes(
    stage: &Int8Stage,
    in_f: usize,
    bias: Option<&[i32]>,
    requant: Requant,
) -> usize {
    scratch_len(shared_stage(stage, in_f, bias, requant).is_some(), in_f)
}

/// [`scratch_bytes`] once [`shared_stage`] is known (it reads every bias: once a layer).
fn scratch_len(shared: bool, in_f: usize) -> usize {
    match shared {
        true => col_len(shared, in_f),
        // The general path's block of stages: in the arena, not in its frame.
        false => col_len(shared, in_f) + BLOCK * size_of::<ChannelStage>(),
    }
}

/// Bytes of the widened input: a chunk of it, except for the assembly loop over rows longer
/// than [`CHUNK`], which reads the input in place.
fn col_len(shared: bool, in_f: usize) -> usize {
    match shared && in_f > CHUNK {
        true => 0,
        false => 2 * in_f.min(CHUNK).next_multiple_of(4),
    }
}

/// Runs the layer (shapes and buffers validated by the caller): `input` is rows of `in_f`,
/// `weights` `out_f` rows of `in_f`, `output` rows of `out_f`; `false` (and nothing
/// written) if `scratch` is shorter than [`scratch_bytes`] or not word-aligned, or the layer
/// needs the general path and it is not built.
#[allow(clippy::too_many_arguments)]
// Never inlined: inlined, its stack buffers would add up with the other kernels' in the caller.
#[inline(never)]
pub(crate) fn fully_connected(
    stage: &Int8Stage,
    input: &[i8],
    in_f: usize,
    weights: &[i8],
    bias: Option<&[i32]>,
    requant: Requant,
    out_f: usize,
    output: &mut [i8],
    scratch: &mut [u8],
) -> bool {
    if in_f == 0 || out_f == 0 {
        return true;
    }
    let shared = shared_stage(stage, in_f, bias, requant);
    let Some((col, stages)) = scratch
        .get_mut(..scratch_len(shared.is_some(), in_f))
        .map(|s| s.split_at_mut(col_len(shared.is_some(), in_f)))
    else {
        return false;
    };
    let (Some(col), Some(stages)) = (
        crate::cast::slice_mut::<[u32; 2]>(col),
        crate::cast::slice_mut::<ChannelStage>(stages),
    ) else {
        return false;
    };
    let fc = Fc {
        in_f,
        off2: (stage.input_offset as u16 as u32) * 0x1_0001,
        stage,
    };
    let layer = (weights, bias, requant, out_f);
    match shared {
        Some(shared) => fc.shared(shared, input, layer, col, output),
        None if cfg!(feature = "kernel-fc-general") => {
            fc.general(input, layer, (col, stages), output)
        }
        None => return false,
    }
    true
}

/// Whether the layer needs the general path (feature `kernel-fc-general`): no output stage
/// shared by every output.
pub(crate) fn takes_general(
    stage: &Int8Stage,
    in_f: usize,
    bias: Option<&[i32]>,
    requant: Requant,
) -> bool {
    shared_stage(stage, in_f, bias, requant).is_none()
}

/// A layer's constants: weights, biases, requantization, outputs per row.
type Consts<'a> = (&'a [i8], Option<&'a [i32]>, Requant<'a>, usize);

/// A layer's row length, input offset and stage.
struct Fc<'a> {
    in_f: usize,
    off2: u32,
    stage: &'a Int8Stage,
}

impl Fc<'_> {
    /// The usual layer (see [`shared_stage`]): all whole quads of outputs in one assembly loop
    /// (a block at a time without biases), over the row widened once into `col` or, when
    /// `col` is empty, read in place; the last one to three outputs in Rust. Not inlined, so
    /// the general path's arrays are not in its frame.
    #[inline(never)]
    fn shared(
        &self,
        shared: ChannelStage,
        input: &[i8],
        (weights, bias, _, out_f): Consts,
        col: &mut [[u32; 2]],
        output: &mut [i8],
    ) {
        let (in_f, stage) = (self.in_f, self.stage);
        let quads = out_f / 4;
        let shared_rq = [shared.ssat(); 4];
        let done = 4 * quads;
        let run = |col: &[[u32; 2]], x: &[i8], (w, b): (&[i8], &[i32]), y: &mut [i8], n| {
            self.quads((col, x), (w, b, &shared_rq), y, n);
        };
        for (x, y) in input.chunks_exact(in_f).zip(output.chunks_exact_mut(out_f)) {
            if !col.is_empty() {
                self.widen(x, col);
            }
            match bias {
                Some(b) => run(col, x, (weights, b), y, quads),
                None => {
                    for (j, y) in y[..done].chunks_mut(BLOCK).enumerate() {
                        let w = weights.get(j * BLOCK * in_f..).unwrap_or_default();
                        let n = y.len() / 4;
                        run(col, x, (w, &ZEROS), y, n);
                    }
                }
            }
            // One multiplier and every bias within the shared stage's room: each output's
            // stage is the shared one with its bias.
            let rest = weights.get(done * in_f..).unwrap_or_default();
            for (j, y) in y[done..].iter_mut().enumerate() {
                let mut s = shared;
                s.bias = bias.and_then(|b| b.get(done + j)).copied().unwrap_or(0);
                let w = rest.get(j * in_f..).unwrap_or_default();
                let dot = x.iter().zip(w).fold(s.bias, |acc, (&x, &w)| {
                    acc.wrapping_add((i32::from(x) + stage.input_offset) * i32::from(w))
                });
                *y = s.out(dot, stage);
            }
        }
    }

    /// `n` quads of outputs `y` of row `x` through the assembly loop, over `col` or, when it
    /// is empty, reading `x` in place. Out of line: one copy of each loop in flash for the
    /// shared path's two callers (inlined, four: +1.5 KB).
    #[inline(never)]
    fn quads(
        &self,
        (col, x): (&[[u32; 2]], &[i8]),
        (w, b, rq): (&[i8], &[i32], &[RequantSsat; 4]),
        y: &mut [i8],
        n: usize,
    ) {
        if col.is_empty() {
            gemv_quads_i8((x, self.off2), (w, self.in_f), (b, rq), y, n);
        } else {
            gemv_quads(col, (w, self.in_f), (b, rq), y, n);
        }
    }

    /// Any other layer: blocks of outputs, their stages in `stages` (scratch, [`BLOCK`] of
    /// them), each row widened into `col` a slice at a time.
    #[inline(never)]
    fn general(
        &self,
        input: &[i8],
        (weights, bias, requant, out_f): Consts,
        (col, stages): (&mut [[u32; 2]], &mut [ChannelStage]),
        output: &mut [i8],
    ) {
        let (in_f, stage) = (self.in_f, self.stage);
        let max_sum = max_product(stage).saturating_mul(in_f as u64);
        let rows = input.chunks_exact(in_f).zip(output.chunks_exact_mut(out_f));
        for (x, y) in rows {
            for first in (0..out_f).step_by(BLOCK) {
                let n = BLOCK.min(out_f - first);
                let w = weights.get(first * in_f..).unwrap_or_default();
                let y = &mut y[first..first + n];
                let Some(stages) = stages.get_mut(..n) else {
                    return;
                };
                channel_stages(stages, first, bias, requant, stage, max_sum);
                self.block(x, w, stages, col, y);
            }
        }
    }

    /// Widens `x`'s whole words (plus the offset) into `col`.
    fn widen(&self, x: &[i8], col: &mut [[u32; 2]]) {
        for (g, x) in col.iter_mut().zip(x.chunks_exact(4)) {
            let word = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
            *g = [sxtab16(self.off2, word), sxtab16_ror8(self.off2, word)];
        }
    }

    /// A block of outputs `y` for input row `x`, in slices of [`CHUNK`] features.
    #[inline(never)]
    fn block(
        &self,
        x: &[i8],
        rows: &[i8],
        stages: &[ChannelStage],
        col: &mut [[u32; 2]],
        y: &mut [i8],
    ) {
        let (in_f, n) = (self.in_f, stages.len());
        let mut sums = [0i32; BLOCK];
        for (s, st) in sums.iter_mut().zip(stages) {
            *s = st.bias;
        }
        let mut start = 0;
        while start < in_f {
            let len = CHUNK.min(in_f - start);
            let whole = len / 4;
            self.widen(&x[start..start + len], col);
            let col = &col[..whole];
            for (j, quad) in sums[..n].chunks_mut(4).enumerate() {
                let w = rows.get(4 * j * in_f + start..).unwrap_or_default();
                if let [s0, s1, s2, s3] = quad {
                    [*s0, *s1, *s2, *s3] = mac_1x4(col, w, in_f, [*s0, *s1, *s2, *s3]);
                } else {
                    // The last one to three rows, one at a time.
                    for (k, s) in quad.iter_mut().enumerate() {
                        let w = w.get(k * in_f..).unwrap_or_default();
                        *s = mac_1x4(col, w, 0, [*s; 4])[0];
                    }
                }
            }
            // The last one to three features: in Rust.
            if len % 4 != 0 {
                let tail = &x[start + 4 * whole..start + len];
                let off = i32::from(self.off2 as u16 as i16);
                for (j, s) in sums[..n].iter_mut().enumerate() {
                    let w = rows.get(j * in_f + start + 4 * whole..).unwrap_or_default();
                    for (&x, &w) in tail.iter().zip(w) {
                        *s = s.wrapping_add((i32::from(x) + off) * i32::from(w));
                    }
                }
            }
            start += len;
        }
        for ((y, s), st) in y.iter_mut().zip(&sums).zip(stages) {
            *y = st.out(*s, self.stage);
        }
    }
}
