//! The fast int8 FULLY_CONNECTED: each input row widened once to int16 (plus the input
//! offset), then four weight rows at a time against it (two MACs an instruction), requantized
//! by the same exact stages as the convolutions.
//!
//! The usual layer (rows of at most [`CHUNK`] features, a multiple of 4, one multiplier for
//! all outputs, and the assembly's output stage exact for all of them, see [`all_common`])
//! runs its output quads in one assembly loop with the requantization inside
//! ([`gemv_quads`]). Otherwise rows are done in slices of [`CHUNK`] features with the sums of
//! a block of outputs kept in an array ([`mac_1x4`]), and a row length that is not a multiple
//! of 4 leaves a tail of one to three products per output, done in Rust.

use super::fast_requant::{all_common, channel_stages, max_product, ChannelStage};
use super::simd::{gemv_quads, mac_1x4, sxtab16, sxtab16_ror8};
use super::{Int8Stage, Requant};

/// Input features widened at once (`2 * CHUNK` bytes of scratch). Rows up to this long run
/// the one-pass assembly loop; 320 keeps the widest MLPerf layer (640 features, the
/// autoencoder) within a small arena at about 5% more time for that layer.
const CHUNK: usize = 320;

/// Scratch bytes [`fully_connected`] needs for rows of `in_f` features: one widened chunk.
pub(crate) fn scratch_bytes(in_f: usize) -> usize {
    2 * in_f.min(CHUNK).next_multiple_of(4)
}
/// Outputs whose constants and sums are held at once.
const BLOCK: usize = 16;

/// Runs the layer (shapes and buffers validated by the caller): `input` is rows of `in_f`,
/// `weights` `out_f` rows of `in_f`, `output` rows of `out_f`; `false` (and nothing
/// written) if `scratch` is shorter than [`scratch_bytes`] or not word-aligned.
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
    let Some(col) = scratch
        .get_mut(..scratch_bytes(in_f))
        .and_then(crate::cast::slice_mut::<[u32; 2]>)
    else {
        return false;
    };
    let fc = Fc {
        in_f,
        off2: (stage.input_offset as u16 as u32) * 0x1_0001,
        stage,
    };
    let max_sum = max_product(stage).saturating_mul(in_f as u64);
    let mut stages = [ChannelStage::default(); BLOCK];
    let one_slice = in_f <= CHUNK && in_f % 4 == 0;
    // The usual layer: one multiplier for all outputs, so one set of constants, shared.
    let shared = match *requant {
        [q] if one_slice => Some(ChannelStage::new(0, q, stage, max_sum)),
        _ => None,
    }
    .filter(|s| all_common([s], stage));
    let shared_rq = [shared.map(|s| s.ssat()).unwrap_or_default(); 4];
    // ... if every bias keeps it exact (see `ChannelStage::new`): `|b| < room`, checked once
    // as `b + room - 1 < 2 * room - 1` unsigned.
    let shared = shared.filter(|s| {
        let room = s.bias_room(max_sum).min(1 << 30);
        let fits = |b: &i32| (*b as u32).wrapping_add(room - 1) < 2 * room - 1;
        room > 0 && bias.is_none_or(|b| b.iter().all(fits))
    });
    let rows = input.chunks_exact(in_f).zip(output.chunks_exact_mut(out_f));
    if shared.is_some() {
        // All whole quads of outputs in one assembly loop (a block at a time without biases),
        // the last one to three in Rust.
        let (quads, zeros) = (out_f / 4, [0i32; BLOCK]);
        let done = 4 * quads;
        for (x, y) in rows {
            fc.widen(x, col);
            let whole = &col[..in_f / 4];
            match bias {
                Some(b) => gemv_quads(whole, (weights, in_f), (b, &shared_rq), y, quads),
                None => {
                    for (j, y) in y[..done].chunks_mut(BLOCK).enumerate() {
                        let w = weights.get(j * BLOCK * in_f..).unwrap_or_default();
                        gemv_quads(whole, (w, in_f), (&zeros, &shared_rq), y, y.len() / 4);
                    }
                }
            }
            let stages = &mut stages[..out_f - done];
            channel_stages(stages, done, bias, requant, stage, max_sum);
            let rest = weights.get(done * in_f..).unwrap_or_default();
            fc.quads(whole, rest, stages, &mut y[done..]);
        }
        return true;
    }
    for (x, y) in rows {
        for first in (0..out_f).step_by(BLOCK) {
            let n = BLOCK.min(out_f - first);
            let w = weights.get(first * in_f..).unwrap_or_default();
            let y = &mut y[first..first + n];
            let stages = &mut stages[..n];
            channel_stages(stages, first, bias, requant, stage, max_sum);
            fc.block(x, w, stages, col, y);
        }
    }
    true
}

/// A layer's row length, input offset and stage.
struct Fc<'a> {
    in_f: usize,
    off2: u32,
    stage: &'a Int8Stage,
}

impl Fc<'_> {
    /// Widens `x`'s whole words (plus the offset) into `col`.
    fn widen(&self, x: &[i8], col: &mut [[u32; 2]]) {
        for (g, x) in col.iter_mut().zip(x.chunks_exact(4)) {
            let word = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
            *g = [sxtab16(self.off2, word), sxtab16_ror8(self.off2, word)];
        }
    }

    /// Outputs `y` (one per stage, rows `rows[j * in_f..]`) of a whole widened row `col`.
    fn quads(&self, col: &[[u32; 2]], rows: &[i8], stages: &[ChannelStage], y: &mut [i8]) {
        for (j, (y, s)) in y.iter_mut().zip(stages).enumerate() {
            let w = rows.get(j * self.in_f..).unwrap_or_default();
            *y = s.out(mac_1x4(col, w, 0, [s.bias; 4])[0], self.stage);
        }
    }

    /// A block of outputs `y` for input row `x`, in slices of [`CHUNK`] features.
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
