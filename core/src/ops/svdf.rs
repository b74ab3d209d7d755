//! SVDF (singular value decomposition filter), the int8 kernel of TFLite-Micro's
//! `EvalIntegerSvdfReference`, bit for bit: a streaming layer that keeps, per batch and per
//! filter, the last `memory` feature values in a variable (state) tensor.
//!
//! Each invoke shifts the whole state one element to the left, computes every filter's feature
//! `weights_feature · (x - zp_in)`, requantizes it (`s_in * s_wf / s_state`, the scales
//! multiplied in float32 as TFLite-Micro's Prepare does), saturates it to the state's type,
//! adds the state's zero point (wrapping: the pinned TFLite-Micro adds it after the clamp,
//! later versions before it; `svdf_int8_rank2_batch2` tells them apart) and writes it as the
//! newest element of the filter's row; then each unit sums its `rank` filters' time products
//! `weights_time · (state - zp_state)` onto its bias and requantizes (`s_state * s_wt / s_out`)
//! to int8. The time weights and the state are both int16 or both int8. As in TFLite-Micro
//! the integer kernel clamps to int8 only: the fused activation is not applied.
//!
//! The record reads `[input, weights_feature, time_and_bias, state]`: the lowering folds the
//! time weights (padded to a word) and the optional int32 bias into one computed constant,
//! and the builder leaves the original two out of the blob. Scratch: where the input rows are
//! whole words and the filters come in fours, the features run four filters at a time against
//! the input row widened once to int16 pairs (the fully connected kernel's `SMLAD` loop), in
//! `2 * input_size` bytes of planned scratch; otherwise (or with less scratch planned) a plain
//! loop gives the same sums. Each unit adds its filters' time products as it goes, where
//! TFLite-Micro keeps them in two int32 buffers first (`[batch, filters]` and
//! `[batch, units]`); the sums are the same (int32 addition wraps, in any order).

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::simd::{mac_1x4, sxtab16, sxtab16_ror8};
use crate::cast;
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Model, Scratch, TensorInfo};
use crate::quant::QuantizedMultiplier;
use crate::Error;

record_params! {
    /// SVDF's record parameters; its two requantizations (feature, output) are the record's
    /// constants.
    pub struct SvdfParams {
        /// Filters per unit.
        pub rank: usize,
        /// Feature values each filter remembers.
        pub memory: usize,
    }
}

/// The time weights, in the state's type.
#[derive(Debug, Clone, Copy)]
pub enum TimeWeights<'a> {
    /// int16 time weights and state.
    I16(&'a [i16]),
    /// int8 time weights and state.
    I8(&'a [i8]),
}

/// SVDF, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Svdf<'a> {
    /// Filters per unit, and memory.
    pub params: SvdfParams,
    /// `[filters, input_size]`.
    pub weights_feature: &'a [i8],
    /// `[filters, memory]`.
    pub weights_time: TimeWeights<'a>,
    /// One per unit.
    pub bias: Option<&'a [i32]>,
    /// `s_in * s_wf / s_state`, then `s_state * s_wt / s_out`.
    pub scales: [QuantizedMultiplier; 2],
    /// Zero points of the input, the state and the output.
    pub zero_points: [i32; 3],
    /// Input tensor.
    pub input: u16,
    /// State tensor (variable).
    pub state: u16,
    /// Output tensor.
    pub output: u16,
    /// The fast feature path's widened input (empty: the plain loop).
    pub scratch: Scratch,
}

/// The constant the lowering computes: the time weights' little-endian bytes, zero-padded to
/// a word, then the bias's (int32), if there is one.
fn time_and_bias<'t>(
    time: &'t TimeConstant<'t>,
    bias: Option<&'t [i32]>,
) -> impl Iterator<Item = u8> + 't {
    let (bytes, len) = match time {
        TimeConstant::I16(w) => (
            TimeBytes::I16(w.iter().flat_map(|v| v.to_le_bytes())),
            w.len() * 2,
        ),
        TimeConstant::I8(w) => (TimeBytes::I8(w.iter().map(|&v| v as u8)), w.len()),
    };
    let pad = len.next_multiple_of(4) - len;
    bytes
        .chain(core::iter::repeat_n(0, pad))
        .chain(bias.unwrap_or(&[]).iter().flat_map(|b| b.to_le_bytes()))
}

/// The time weights as the lowering reads them.
enum TimeConstant<'t> {
    I16(&'t [i16]),
    I8(&'t [i8]),
}

/// Either type's bytes, as one iterator.
enum TimeBytes<A, B> {
    I16(A),
    I8(B),
}

impl<A: Iterator<Item = u8>, B: Iterator<Item = u8>> Iterator for TimeBytes<A, B> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        match self {
            TimeBytes::I16(a) => a.next(),
            TimeBytes::I8(b) => b.next(),
        }
    }
}

/// The element type of the time weights and the state.
trait StateElement: Copy + Into<i32> + cast::Pod {
    const MIN: i32;
    const MAX: i32;
    /// `v` in the type's width, wrapping (C's conversion from int32).
    fn wrap(v: i32) -> Self;
}

impl StateElement for i16 {
    const MIN: i32 = i16::MIN as i32;
    const MAX: i32 = i16::MAX as i32;
    fn wrap(v: i32) -> Self {
        v as i16
    }
}

impl StateElement for i8 {
    const MIN: i32 = i8::MIN as i32;
    const MAX: i32 = i8::MAX as i32;
    fn wrap(v: i32) -> Self {
        v as i8
    }
}

/// An SVDF's sizes: `rank * units` filters over `input_size` values, `memory` deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvdfDims {
    /// Batch.
    pub batch: usize,
    /// Values per input row.
    pub input_size: usize,
    /// Filters per unit.
    pub rank: usize,
    /// Output values per batch.
    pub units: usize,
    /// Feature values each filter remembers.
    pub memory: usize,
}

impl SvdfDims {
    fn filters(&self) -> usize {
        self.rank * self.units
    }
}

impl<'a> Operator<'a> for Svdf<'a> {
    type Params = SvdfParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 4;
    const STATEFUL: bool = true;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let unsupported = |what| Err(LowerError::Unsupported { what });
        let input = cx.int8_io(0)?;
        let weights_feature = cx.input(1)?;
        let weights_time = cx.input(2)?;
        let bias = cx.optional(3)?;
        let state = cx.input(4)?;
        let i = cx.tensor(input)?;
        let wf = cx.typed(weights_feature, DType::I8, "weights_feature")?;
        let wt = cx.tensor(weights_time)?;
        let s = cx.tensor(state)?;
        if !matches!(wt.dtype, DType::I16 | DType::I8) {
            return Err(LowerError::WrongType {
                tensor: weights_time,
                role: "weights_time (int16 or int8)",
                expected: DType::I16,
            });
        }
        cx.typed(state, wt.dtype, "state (the type of weights_time)")?;
        let rank = cx.options().rank;
        let (
            Some([batch, input_size]),
            Some([filters, in_wf]),
            Some([filters_t, memory]),
            Some([batch_s, state_len]),
        ) = (dims2(i.dims), dims2(wf.dims), dims2(wt.dims), dims2(s.dims))
        else {
            return unsupported("SVDF's input, weights and state must have rank 2");
        };
        if rank == 0 || filters % rank != 0 {
            return unsupported("SVDF's rank must divide its filters (weights_feature's rows)");
        }
        let units = filters / rank;
        if in_wf != input_size || filters_t != filters {
            return unsupported("SVDF's weights do not fit its input (TFLite's shapes)");
        }
        if batch_s != batch || Some(state_len) != memory.checked_mul(filters) {
            return unsupported("SVDF's state must be [batch, memory * filters]");
        }
        if !wf.constant || !wt.constant {
            return unsupported("SVDF's weights must be constants");
        }
        if !s.variable {
            return unsupported("SVDF's state (input 4) must be a variable tensor");
        }
        let out = cx.tensor(cx.output())?;
        if dims2(out.dims) != Some([batch, units]) {
            return Err(LowerError::WrongOutputShape {
                tensor: cx.output(),
                expected: super::Shape4::new(1, 1, batch, units),
            });
        }
        let (s_in, _) = cx.per_tensor(input)?;
        let (s_wf, _) = cx.per_tensor(weights_feature)?;
        let (s_wt, _) = cx.per_tensor(weights_time)?;
        let (s_state, _) = cx.per_tensor(state)?;
        let (s_out, _) = cx.per_tensor(cx.output())?;
        let bias_data = match bias {
            Some(b) => {
                let t = cx.typed(b, DType::I32, "bias")?;
                let (s_bias, _) = cx.per_tensor(b)?;
                // TFLite-Micro's Prepare: the bias's scale within 1e-5 of s_state * s_wt
                // (a float product).
                if (f64::from(s_bias) - f64::from(s_state * s_wt)).abs() >= 1e-5 {
                    return Err(LowerError::Quantization {
                        tensor: b,
                        what: "SVDF's bias scale must be the state's times weights_time's",
                    });
                }
                match (t.i32_data, t.dims) {
                    (Some(data), [n]) if *n == units => Some(data),
                    _ => return unsupported("SVDF's bias must be a constant of one per unit"),
                }
            }
            None => None,
        };
        // As TFLite-Micro's Prepare: the products and quotients in float, then widened.
        let scales = [
            f64::from(s_in * s_wf / s_state),
            f64::from(s_state * s_wt / s_out),
        ];
        for real in scales {
            let q = QuantizedMultiplier::from_f64(real).ok_or(LowerError::Unsupported {
                what: "SVDF scales out of the representable range",
            })?;
            cx.requant(q);
        }
        let time = match (wt.i16_data, wt.i8_data) {
            (Some(w), _) => TimeConstant::I16(w),
            (None, Some(w)) => TimeConstant::I8(w),
            (None, None) => return unsupported("SVDF's weights_time must be a constant"),
        };
        cx.computed_input_from(2, &mut time_and_bias(&time, bias_data))?;
        cx.record_input(3, 4)?;
        cx.params(&SvdfParams { rank, memory })
    }

    fn decode(d: &Decoder<'_, 'a>, params: SvdfParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let wf = d.weights(1);
        let state_dtype = d.any_tensor(3).record.dtype;
        d.check(
            matches!(state_dtype, DType::I16 | DType::I8),
            why!("SVDF's state must be int16 or int8"),
        );
        let state = d.state(3, state_dtype);
        let dims = SvdfDims {
            batch: input.shape.n * input.shape.h * input.shape.w,
            input_size: input.shape.c,
            rank: params.rank,
            units: output.shape.c,
            memory: params.memory,
        };
        check_shapes(d, &dims, (&output, &state, wf.data.len()));
        let bytes = d.constant_bytes(2);
        let time_len = dims.filters() * dims.memory * state_dtype.size();
        let (time, bias) = bytes.split_at(time_len.next_multiple_of(4).min(bytes.len()));
        let time = time.get(..time_len).unwrap_or(&[]);
        let weights_time = match state_dtype {
            DType::I16 => TimeWeights::I16(cast::slice(time).unwrap_or(&[])),
            _ => TimeWeights::I8(cast::slice(time).unwrap_or(&[])),
        };
        let time_ok = match weights_time {
            TimeWeights::I16(w) => w.len() * 2 == time_len,
            TimeWeights::I8(w) => w.len() == time_len,
        };
        d.check(
            time_ok && time_len > 0,
            why!("SVDF's time weights do not fit its filters and memory"),
        );
        let bias = match bias.len() {
            0 => None,
            _ => {
                let b: &'a [i32] = cast::slice(bias).unwrap_or(&[]);
                d.check(
                    b.len() == dims.units,
                    why!("SVDF's bias must hold one int32 per unit"),
                );
                Some(b)
            }
        };
        Svdf {
            params,
            weights_feature: wf.data,
            weights_time,
            bias,
            scales: d.requant_array::<2>(),
            zero_points: [input.zero_point(), state.zero_point(), output.zero_point()],
            input: input.index,
            state: state.index,
            output: output.index,
            scratch: d.scratch(),
        }
    }

    fn io(&self) -> Option<Io> {
        let state = [Some(self.state), None];
        Some(Io::stateful(self.input, self.output, self.scratch, state))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let [state, _] = v.state;
        let input = v.inputs[0];
        let dims = SvdfDims {
            batch: input.shape.n * input.shape.h * input.shape.w,
            input_size: input.shape.c,
            rank: self.params.rank,
            units: v.output.shape.c,
            memory: self.params.memory,
        };
        let scratch = v.scratch;
        match self.weights_time {
            TimeWeights::I16(w) => {
                let state = cast::slice_mut::<i16>(state).ok_or_else(misaligned)?;
                svdf(self, &dims, input.data, w, (state, scratch), v.output.data)
            }
            TimeWeights::I8(w) => {
                let state = cast::slice_mut::<i8>(state).ok_or_else(misaligned)?;
                svdf(self, &dims, input.data, w, (state, scratch), v.output.data)
            }
        }
    }

    fn scratch_need(&self, model: &Model<'a>) -> Result<Option<usize>, Error> {
        let input = model.tensor(self.input)?.shape;
        let filters = self.weights_feature.len() / input.c.max(1);
        let dims = SvdfDims {
            batch: 1,
            input_size: input.c,
            rank: 1,
            units: filters,
            memory: self.params.memory,
        };
        Ok(Some(column_bytes(&dims)))
    }

    fn macs(&self, model: &Model<'a>) -> Result<u64, Error> {
        let input = model.tensor(self.input)?.shape;
        let batch = input.n * input.h * input.w;
        let filters = self.weights_feature.len() / input.c.max(1);
        let per_batch = self.weights_feature.len() + filters * self.params.memory;
        Ok((batch * per_batch) as u64)
    }
}

/// The two values of a rank-2 shape.
fn dims2(dims: &[usize]) -> Option<[usize; 2]> {
    dims.try_into().ok()
}

/// The decoder's shape checks: weights, state and output against the input and parameters.
fn check_shapes(
    d: &Decoder<'_, '_>,
    dims: &SvdfDims,
    (output, state, wf_len): (&TensorInfo, &TensorInfo, usize),
) {
    let filters = dims.rank.checked_mul(dims.units);
    d.check(
        dims.rank >= 1
            && dims.memory >= 1
            && filters.and_then(|f| f.checked_mul(dims.input_size)) == Some(wf_len),
        why!("SVDF's weights_feature must be [rank * units, input_size]"),
    );
    let batch_out = output.shape.n * output.shape.h * output.shape.w;
    d.check(
        batch_out == dims.batch,
        why!("SVDF's output must be [batch, units]"),
    );
    let state_len = filters
        .and_then(|f| f.checked_mul(dims.memory))
        .and_then(|n| n.checked_mul(dims.batch));
    d.check(
        state.shape.elements() == state_len,
        why!("SVDF's state must be [batch, memory * filters]"),
    );
}

fn misaligned() -> Error {
    Error::BadLayout {
        what: why!("SVDF state misaligned in the arena"),
    }
}

/// The kernel, bit-exact with TFLite-Micro's `EvalIntegerSvdfReference` for int16 (`T = i16`)
/// and int8 (`T = i8`) time weights and state. Every slice must have the length `dims` gives.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
fn svdf<T: StateElement>(
    layer: &Svdf,
    dims: &SvdfDims,
    input: &[i8],
    weights_time: &[T],
    (state, scratch): (&mut [T], &mut [u8]),
    output: &mut [i8],
) -> Result<(), Error> {
    super::built(OpCode::Svdf)?;
    let SvdfDims {
        batch,
        input_size,
        rank,
        units,
        memory,
    } = *dims;
    let filters = dims.filters();
    let row = filters * memory;
    let lengths = [
        (input.len(), batch * input_size),
        (layer.weights_feature.len(), filters * input_size),
        (weights_time.len(), row),
        (state.len(), batch * row),
        (output.len(), batch * units),
        (layer.bias.map_or(units, <[i32]>::len), units),
    ];
    for (actual, expected) in lengths {
        if actual != expected {
            return Err(Error::LengthMismatch { expected, actual });
        }
    }
    if input_size == 0 || memory == 0 || rank == 0 || units == 0 {
        return Err(Error::InvalidParameter {
            what: why!("SVDF with an empty input, memory, rank or output"),
        });
    }
    // Nonzero, as checked above, in a form the compiler sees: no panic path for a zero chunk.
    let (input_size, memory, units) = (input_size.max(1), memory.max(1), units.max(1));
    let (row, group) = (row.max(1), (memory * rank).max(1));
    let [_, zp_state, zp_out] = layer.zero_points;
    // The oldest value of every row leaves; the newest is written below.
    if !state.is_empty() {
        state.copy_within(1.., 0);
    }
    // The pinned TFLite-Micro saturates a feature to the state's type, then adds the state's
    // zero point and narrows (wrapping past the type's range), in that order.
    let newest = |dot: i32| {
        let v = layer.scales[0].apply(dot).clamp(T::MIN, T::MAX);
        T::wrap(v.wrapping_add(zp_state))
    };
    // Each feature is the newest element of its (batch, filter) row, in order.
    let mut newest_slots = state
        .chunks_exact_mut(memory)
        .filter_map(|history| history.last_mut());
    features(
        layer,
        input,
        input_size,
        column(scratch, dims),
        &mut |dot| {
            if let Some(slot) = newest_slots.next() {
                *slot = newest(dot);
            }
        },
    );
    let time_rows = weights_time.chunks_exact(group);
    for (states, out) in state.chunks_exact(row).zip(output.chunks_exact_mut(units)) {
        let groups = states.chunks_exact(group).zip(time_rows.clone());
        for (u, ((history, w), o)) in groups.zip(out.iter_mut()).enumerate() {
            let bias = layer.bias.and_then(|b| b.get(u)).copied().unwrap_or(0);
            let sum = bias.wrapping_add(time_dot(w, history, zp_state));
            let v = layer.scales[1].apply(sum).saturating_add(zp_out);
            *o = v.clamp(-128, 127) as i8;
        }
    }
    Ok(())
}

/// Every filter's feature sum `w · (x - zp_in)` for every input row, batch by batch, filter by
/// filter, handed to `store`. With a column (`col`: the fast path's scratch), four filters at a
/// time against the row widened once (`SMLAD`s); else the plain loop. Not generic over the
/// state's type: one copy of these loops in flash.
#[inline(never)]
fn features(
    layer: &Svdf,
    input: &[i8],
    input_size: usize,
    mut col: Option<&mut [[u32; 2]]>,
    store: &mut dyn FnMut(i32),
) {
    let input_size = input_size.max(1);
    let zp_in = layer.zero_points[0];
    for x in input.chunks_exact(input_size) {
        match &mut col {
            Some(col) => {
                let off2 = (zp_in.wrapping_neg() as u16 as u32) * 0x1_0001;
                for (g, x) in col.iter_mut().zip(x.chunks_exact(4)) {
                    let word = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
                    *g = [sxtab16(off2, word), sxtab16_ror8(off2, word)];
                }
                for quad in layer.weights_feature.chunks_exact((4 * input_size).max(1)) {
                    for dot in mac_1x4(col, quad, input_size, [0; 4]) {
                        store(dot);
                    }
                }
            }
            None => {
                for w in layer.weights_feature.chunks_exact(input_size) {
                    let dot = w.iter().zip(x).fold(0i32, |acc, (&w, &x)| {
                        acc.wrapping_add(i32::from(w) * (i32::from(x) - zp_in))
                    });
                    store(dot);
                }
            }
        }
    }
}

/// `sum(w * (s - zp))` in wrapping int32 arithmetic, as `sum(w * s) - zp * sum(w)`: the same
/// value modulo 2^32, and a loop of products alone, which the compiler pairs into `SMLAD`s
/// (int16) where the state's zero point is 0.
#[inline(always)]
fn time_dot<T: StateElement>(w: &[T], s: &[T], zp: i32) -> i32 {
    let products = w
        .iter()
        .zip(s)
        .fold(0i32, |acc, (&w, &s)| acc.wrapping_add(w.into() * s.into()));
    if zp == 0 {
        return products;
    }
    let sum = w.iter().fold(0i32, |acc, &w| acc.wrapping_add(w.into()));
    products.wrapping_sub(zp.wrapping_mul(sum))
}

/// Scratch bytes of the fast feature path: the input row widened to q15 groups, 2 bytes an
/// input value. It takes rows of whole words and filters in fours.
fn column_bytes(dims: &SvdfDims) -> usize {
    match dims.input_size % 4 == 0 && dims.filters() % 4 == 0 {
        true => 2 * dims.input_size,
        false => 0,
    }
}

/// The fast feature path's column in `scratch`, if the layer takes it and it fits.
fn column<'s>(scratch: &'s mut [u8], dims: &SvdfDims) -> Option<&'s mut [[u32; 2]]> {
    let bytes = column_bytes(dims);
    if bytes == 0 {
        return None;
    }
    cast::slice_mut(scratch.get_mut(..bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Rng;

    /// TFLite-Micro's steps written out separately: the state shifted row by row, the features
    /// into the newest column, the time products into a `[batch, filters]` scratch, then reduced
    /// per unit onto the bias, in i64 with the int32 and type limits applied where C applies them.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        layer: &Svdf,
        d: &SvdfDims,
        input: &[i8],
        wt: &[i32],
        state: &mut [i32],
        (lo, hi): (i64, i64),
    ) -> Vec<i8> {
        let (f, m) = (d.filters(), d.memory);
        let [zp_in, zp_s, zp_out] = layer.zero_points.map(i64::from);
        // Row by row (the kernel shifts the whole buffer: the same, as each row's newest
        // element is written next).
        for row in state.chunks_mut(m) {
            row.rotate_left(1);
        }
        for b in 0..d.batch {
            for r in 0..f {
                let dot: i64 = (0..d.input_size)
                    .map(|c| {
                        let w = i64::from(layer.weights_feature[r * d.input_size + c]);
                        w * (i64::from(input[b * d.input_size + c]) - zp_in)
                    })
                    .sum();
                let v = i64::from(layer.scales[0].apply(dot as i32)).clamp(lo, hi) + zp_s;
                // Narrowed as C converts: wrapped to the state's width.
                let bits = if hi > 127 { 16 } else { 8 };
                let wrapped = (v << (64 - bits)) >> (64 - bits);
                state[b * f * m + r * m + m - 1] = wrapped as i32;
            }
        }
        let mut scratch = vec![0i64; d.batch * f];
        for b in 0..d.batch {
            for r in 0..f {
                scratch[b * f + r] = (0..m)
                    .map(|j| {
                        i64::from(wt[r * m + j]) * (i64::from(state[b * f * m + r * m + j]) - zp_s)
                    })
                    .sum();
            }
        }
        let mut out = Vec::new();
        for b in 0..d.batch {
            for u in 0..d.units {
                let bias = layer.bias.map_or(0, |bias| i64::from(bias[u]));
                let sum = bias
                    + (0..d.rank)
                        .map(|k| scratch[b * f + u * d.rank + k])
                        .sum::<i64>();
                let y = i64::from(layer.scales[1].apply(sum as i32)) + zp_out;
                out.push(y.clamp(-128, 127) as i8);
            }
        }
        out
    }

    fn values<T>(rng: &mut Rng, n: usize, span: i64, f: impl Fn(i64) -> T) -> Vec<T> {
        (0..n)
            .map(|_| f((rng.next() % (2 * span as u64 + 1)) as i64 - span))
            .collect()
    }

    /// Random layers of both state types, ranks 1 to 3 and batches 1 to 3, run for 7 invokes
    /// each with the state carried: every output and every state element equals the reference.
    #[test]
    fn matches_the_reference_over_invokes() {
        let mut rng = Rng(0x5bdf);
        for case in 0..60 {
            let int16 = case % 2 == 0;
            // Two cases in three take the fast feature path (rows of whole words, filters
            // in fours) with scratch for it; the third, and every layer planned without
            // scratch, the plain loop.
            let fast = case % 3 != 0;
            let d = SvdfDims {
                batch: 1 + case % 3,
                input_size: match fast {
                    true => 4 * (1 + (rng.next() % 6) as usize),
                    false => 1 + (rng.next() % 20) as usize,
                },
                rank: 1 + (case / 2) % 3,
                units: match fast {
                    true => 4 * (1 + (rng.next() % 2) as usize),
                    false => 1 + (rng.next() % 5) as usize,
                },
                memory: 1 + (rng.next() % 6) as usize,
            };
            let mut scratch = vec![0u32; column_bytes(&d) / 4];
            let scratch = crate::cast::words_as_bytes_mut(
                &mut scratch[..(case % 4 != 1) as usize * column_bytes(&d) / 4],
            );
            let f = d.filters();
            let wf = values(&mut rng, f * d.input_size, 127, |v| v as i8);
            let bias = values(&mut rng, d.units, 40_000, |v| v as i32);
            let (span, lo, hi) = match int16 {
                true => (32_767, -32_768, 32_767),
                false => (127, -128, 127),
            };
            let wt = values(&mut rng, f * d.memory, span, |v| v as i32);
            let zp_state = if int16 {
                0
            } else {
                (rng.next() % 41) as i32 - 20
            };
            let scale = |rng: &mut Rng, lo: f64, hi: f64| {
                let t = rng.next() as f64 / u64::MAX as f64;
                QuantizedMultiplier::from_f64(lo * (hi / lo).powf(t)).unwrap()
            };
            let scales = match int16 {
                true => [scale(&mut rng, 1.0, 40.0), scale(&mut rng, 1e-7, 1e-5)],
                false => [scale(&mut rng, 1e-3, 0.1), scale(&mut rng, 1e-4, 1e-2)],
            };
            let (wt16, wt8): (Vec<i16>, Vec<i8>) = (
                wt.iter().map(|&v| v as i16).collect(),
                wt.iter().map(|&v| v as i8).collect(),
            );
            let layer = Svdf {
                params: SvdfParams {
                    rank: d.rank,
                    memory: d.memory,
                },
                weights_feature: &wf,
                weights_time: match int16 {
                    true => TimeWeights::I16(&wt16),
                    false => TimeWeights::I8(&wt8),
                },
                bias: (case % 5 != 0).then_some(&bias[..]),
                scales,
                zero_points: [(rng.next() % 256) as i32 - 128, zp_state, -7],
                input: 0,
                state: 1,
                output: 2,
                scratch: Scratch::default(),
            };
            let mut want_state = vec![zp_state; d.batch * f * d.memory];
            let (mut s16, mut s8) = (
                vec![0i16; want_state.len()],
                vec![zp_state as i8; want_state.len()],
            );
            for invoke in 0..7 {
                let input = values(&mut rng, d.batch * d.input_size, 128, |v| v.min(127) as i8);
                let want = reference(&layer, &d, &input, &wt, &mut want_state, (lo, hi));
                let mut got = vec![0i8; d.batch * d.units];
                let (state, ok): (Vec<i32>, _) = match int16 {
                    true => {
                        let ok = svdf(
                            &layer,
                            &d,
                            &input,
                            &wt16,
                            (&mut s16, &mut *scratch),
                            &mut got,
                        );
                        (s16.iter().map(|&v| v.into()).collect(), ok)
                    }
                    false => {
                        let ok = svdf(&layer, &d, &input, &wt8, (&mut s8, &mut *scratch), &mut got);
                        (s8.iter().map(|&v| v.into()).collect(), ok)
                    }
                };
                assert_eq!(ok, Ok(()));
                assert_eq!(got, want, "case {case} invoke {invoke}: {d:?}");
                assert_eq!(state, want_state, "case {case} invoke {invoke}: state");
            }
        }
    }

    /// Buffers that do not fit the layer are errors, never a panic or a partial write past them.
    #[test]
    fn wrong_lengths_are_errors() {
        let wf = [1i8; 6];
        let wt = [1i16; 6];
        let layer = Svdf {
            params: SvdfParams { rank: 1, memory: 3 },
            weights_feature: &wf,
            weights_time: TimeWeights::I16(&wt),
            bias: None,
            scales: [QuantizedMultiplier::from_f64(0.5).unwrap(); 2],
            zero_points: [0; 3],
            input: 0,
            state: 1,
            output: 2,
            scratch: Scratch::default(),
        };
        let d = SvdfDims {
            batch: 1,
            input_size: 3,
            rank: 1,
            units: 2,
            memory: 3,
        };
        let (mut state, mut out) = ([0i16; 6], [0i8; 2]);
        assert_eq!(
            svdf(&layer, &d, &[1, 2, 3], &wt, (&mut state, &mut []), &mut out),
            Ok(())
        );
        let short = svdf(&layer, &d, &[1, 2], &wt, (&mut state, &mut []), &mut out);
        assert!(matches!(short, Err(Error::LengthMismatch { .. })));
        let state_short = svdf(
            &layer,
            &d,
            &[1, 2, 3],
            &wt,
            (&mut state[..5], &mut []),
            &mut out,
        );
        assert!(matches!(state_short, Err(Error::LengthMismatch { .. })));
        let bias = [1i32; 3];
        let bad_bias = Svdf {
            bias: Some(&bias),
            ..layer
        };
        let e = svdf(
            &bad_bias,
            &d,
            &[1, 2, 3],
            &wt,
            (&mut state, &mut []),
            &mut out,
        );
        assert!(matches!(e, Err(Error::LengthMismatch { .. })));
        let no_memory = SvdfDims { memory: 0, ..d };
        assert!(svdf::<i16>(
            &layer,
            &no_memory,
            &[1, 2, 3],
            &[],
            (&mut [], &mut []),
            &mut out
        )
        .is_err());
    }
}
