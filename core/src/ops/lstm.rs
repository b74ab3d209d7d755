//! UNIDIRECTIONAL_SEQUENCE_LSTM with int8 activations and int16 cell state, bit-exact with
//! TFLite-Micro's integer LSTM. For every batch row and time step, each of the four gates
//! (input, forget, cell, output) is `act(FC(x) + FC(h))`: two int8 products requantized to
//! int16 in Q3.12, added with saturation, then the Q0.15 sigmoid (tanh for the cell gate) of
//! TFLite's integer tables. The cell state becomes `f * c + i * g` (int16, optionally clipped)
//! and the hidden state `o * tanh(c)` (int8, the output's quantization), which is that step's
//! output row. Both states are variable tensors: they carry over to the next invoke.
//!
//! Only the standard LSTM (no peephole, projection, layer normalization or coupled input and
//! forget gates), which is all TFLite-Micro runs. The record names the input, one computed
//! constant (the eight weight matrices, then effective biases: each FC's bias with its input's
//! zero point folded in), the hidden state and the cell state.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::{simd, Shape4, Tensor};
use crate::cast;
use crate::format::DType;
use crate::model::{Decoder, Model, Scratch};
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// Gates, in TFLite's order: input, forget, cell, output.
const GATES: usize = 4;
const INPUT_GATE: usize = 0;
const FORGET_GATE: usize = 1;
const CELL_GATE: usize = 2;
const OUTPUT_GATE: usize = 3;

/// Requantization constants: an input and a recurrent FC per gate, then the three element-wise
/// products (forget x cell, input x cell gate, output x tanh(cell)).
const REQUANTS: usize = 2 * GATES + 3;

/// Scale of a gate's pre-activation (Q3.12) and of its activation (Q0.15).
const GATE_INPUT_SCALE: f64 = 1.0 / 4096.0;
const GATE_OUTPUT_SCALE: f64 = 1.0 / 32768.0;

/// TFLite's input slots.
mod slot {
    pub const INPUT: usize = 0;
    /// input_to_{input,forget,cell,output}_weights, then recurrent_to_*.
    pub const WEIGHTS: usize = 1;
    /// cell_to_* (peephole).
    pub const PEEPHOLE: [usize; 3] = [9, 10, 11];
    /// {input,forget,cell,output}_gate_bias.
    pub const BIASES: usize = 12;
    /// projection weights and bias.
    pub const PROJECTION: [usize; 2] = [16, 17];
    pub const OUTPUT_STATE: usize = 18;
    pub const CELL_STATE: usize = 19;
    /// {input,forget,cell,output}_layer_norm_coefficients.
    pub const LAYER_NORM: [usize; 4] = [20, 21, 22, 23];
}

record_params! {
    /// UNIDIRECTIONAL_SEQUENCE_LSTM's record parameters; its requantization constants are the
    /// eight FCs' (input, recurrent, gate by gate) and the three element-wise products'.
    pub struct LstmParams {
        /// The hidden state's (and output's) zero point.
        pub hidden_zero_point: i32,
        /// log2 of the cell state's scale (its tanh's input scaling).
        pub cell_scale_power: i32,
        /// The cell state's clip in its own units (0: none).
        pub cell_clip: i32,
        /// 1: the input is `[steps, batch, features]`; 0: `[batch, steps, features]`.
        pub time_major: i32,
    }
}

/// UNIDIRECTIONAL_SEQUENCE_LSTM, decoded (kept small: every decoded layer slot is as large as
/// the largest operator's).
#[derive(Debug, Clone, Copy)]
pub struct Lstm<'a> {
    /// The cell's parameters.
    pub cell: CellParams,
    /// The four input-to-gate weight matrices `[units, features]`, gate after gate.
    pub input_weights: &'a [i8],
    /// The four recurrent-to-gate weight matrices `[units, units]`, gate after gate.
    pub recurrent_weights: &'a [i8],
    /// Effective biases, `units` each: gate by gate, the input FC's then the recurrent FC's.
    pub biases: &'a [i32],
    /// Requantization constants (see [`REQUANTS`]).
    pub requant: &'a [QuantizedMultiplier],
    /// Sizes.
    pub dims: LstmDims,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
    /// Hidden state (int8) and cell state (int16), variable tensors.
    pub state: [u16; 2],
    /// The widened input and hidden state of the fast path.
    pub scratch: Scratch,
}

/// [`LstmParams`] as the kernel keeps them, range-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellParams {
    /// The hidden state's zero point.
    pub hidden_zero_point: i8,
    /// log2 of the cell state's scale.
    pub cell_scale_power: i8,
    /// Inputs are `[steps, batch, features]`.
    pub time_major: bool,
    /// The cell state's clip (0: none).
    pub cell_clip: i16,
}

/// An LSTM's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LstmDims {
    /// Independent sequences.
    pub batch: usize,
    /// Time steps per invoke.
    pub steps: usize,
    /// Input features per step.
    pub features: usize,
    /// Cell units (the hidden state's size).
    pub units: usize,
}

impl LstmDims {
    /// The input row (and output row) of batch `b` at step `t`.
    fn row(&self, time_major: bool, b: usize, t: usize) -> usize {
        match time_major {
            true => t * self.batch + b,
            false => b * self.steps + t,
        }
    }
}

/// Rounded log2 of a positive scale, as TFLite's `CheckedLog2` (exact for powers of two).
fn log2_rounded(scale: f32) -> i32 {
    let (mantissa, exponent) = crate::quant::frexp(f64::from(scale));
    // log2 = exponent + log2(mantissa), log2(mantissa) in [-1, 0): rounds up from sqrt(1/2).
    match mantissa < core::f64::consts::FRAC_1_SQRT_2 {
        true => exponent - 1,
        false => exponent,
    }
}

/// A weight matrix's view and scale, after checking it is `[rows, cols]` symmetric int8.
fn weight_matrix<'g>(
    cx: &Lowering<'g>,
    id: usize,
    (rows, cols): (usize, usize),
) -> Result<(&'g [i8], f32), LowerError> {
    let w = cx.typed(id, DType::I8, "LSTM weights")?;
    let (scale, zero_point) = cx.per_tensor(id)?;
    if w.dims != [rows, cols] || zero_point != 0 {
        return Err(LowerError::Quantization {
            tensor: id,
            what: "LSTM weights must be [units, inputs], symmetric per tensor",
        });
    }
    let data = w.i8_data.ok_or(LowerError::Unsupported {
        what: "LSTM weights must be constant",
    })?;
    Ok((data, scale))
}

/// A gate's int32 bias of `units`.
fn gate_bias<'g>(cx: &Lowering<'g>, gate: usize, units: usize) -> Result<&'g [i32], LowerError> {
    let id = cx.input(slot::BIASES + gate)?;
    let b = cx.typed(id, DType::I32, "LSTM gate bias")?;
    match b.i32_data {
        Some(data) if data.len() == units => Ok(data),
        _ => Err(LowerError::Unsupported {
            what: "LSTM gate biases must be constant int32 vectors of the units",
        }),
    }
}

/// `real` as a requantization constant.
fn multiplier(real: f64, tensor: usize) -> Result<QuantizedMultiplier, LowerError> {
    QuantizedMultiplier::from_f64(real).ok_or(LowerError::Quantization {
        tensor,
        what: "an LSTM scale cannot be represented",
    })
}

/// Batch, steps, features and units from the input, the weights and the output, checked as
/// TFLite-Micro's Prepare does.
fn lower_dims(cx: &Lowering<'_>, input: usize) -> Result<LstmDims, LowerError> {
    let i = cx.tensor(input)?;
    let [d0, d1, features] = *i.dims else {
        return Err(LowerError::Unsupported {
            what: "an LSTM input must be [batch, steps, features] or [steps, batch, features]",
        });
    };
    let (batch, steps) = match cx.options().time_major {
        true => (d1, d0),
        false => (d0, d1),
    };
    let forget = cx.tensor(cx.input(slot::WEIGHTS + FORGET_GATE)?)?;
    let units = forget.dims.first().copied().unwrap_or(0);
    cx.expect_output(Shape4::new(1, d0, d1, units))?;
    for state in [slot::OUTPUT_STATE, slot::CELL_STATE] {
        let t = cx.tensor(cx.input(state)?)?;
        if t.shape.elements() != Some(batch * units) {
            return Err(LowerError::Unsupported {
                what: "an LSTM state must hold batch x units values",
            });
        }
    }
    Ok(LstmDims {
        batch,
        steps,
        features,
        units,
    })
}

/// The record's computed constant: the eight weight matrices (input-to-gate for each gate, then
/// recurrent-to-gate, as int8 bytes), then the eight FCs' effective biases as int32
/// little-endian: gate by gate, the input FC's (its bias minus the input's zero point times each
/// weight row's sum) then the recurrent FC's (minus the hidden state's zero point times each
/// row's sum). Wrapping, as the int32 sums they stand for wrap. The weights' byte count is a
/// multiple of 4 (four matrices of each shape), so the biases stay word-aligned.
fn packed<'g>(
    weights: [(&'g [i8], usize); 2 * GATES],
    biases: [&'g [i32]; GATES],
    zero_points: [i32; 2],
) -> impl Iterator<Item = u8> + 'g {
    let matrices = weights
        .into_iter()
        .flat_map(|(w, _)| w.iter().map(|&v| v as u8));
    let effective = (0..GATES).flat_map(move |gate| {
        (0..2).flat_map(move |k| {
            let (w, cols) = weights[GATES * k + gate];
            let bias = biases[gate];
            w.chunks_exact(cols.max(1))
                .enumerate()
                .flat_map(move |(unit, row)| {
                    let sum = row.iter().fold(0i32, |s, &v| s.wrapping_add(i32::from(v)));
                    let own = match k {
                        0 => bias.get(unit).copied().unwrap_or(0),
                        _ => 0,
                    };
                    own.wrapping_sub(zero_points[k].wrapping_mul(sum))
                        .to_le_bytes()
                })
        })
    });
    matrices.chain(effective)
}

impl<'a> Operator<'a> for Lstm<'a> {
    type Params = LstmParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 4;
    const STATEFUL: bool = true;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let variants = slot::PEEPHOLE
            .iter()
            .chain(&slot::PROJECTION)
            .chain(&slot::LAYER_NORM);
        for &s in variants {
            if cx.optional(s)?.is_some() {
                return Err(LowerError::Unsupported {
                    what: "LSTM with peephole, projection or layer normalization: TFLite-Micro \
                           runs only the standard LSTM",
                });
            }
        }
        let input = cx.int8_io(slot::INPUT)?;
        let dims = lower_dims(cx, input)?;
        let hidden = cx.input(slot::OUTPUT_STATE)?;
        let cell = cx.input(slot::CELL_STATE)?;
        for (id, dtype, role) in [
            (hidden, DType::I8, "LSTM output state"),
            (cell, DType::I16, "LSTM cell state"),
        ] {
            if !cx.typed(id, dtype, role)?.variable {
                return Err(LowerError::Quantization {
                    tensor: id,
                    what: "an LSTM state must be a variable tensor (kept across invokes)",
                });
            }
        }
        let (s_in, zp_in) = cx.per_tensor(input)?;
        let (s_h, zp_h) = cx.per_tensor(hidden)?;
        let (s_c, zp_c) = cx.per_tensor(cell)?;
        if zp_c != 0 {
            return Err(LowerError::Quantization {
                tensor: cell,
                what: "the LSTM cell state must be symmetric",
            });
        }
        let mut weights = [(&[][..], 1usize); 2 * GATES];
        let mut fc_scales = [0f64; 2 * GATES];
        for k in 0..2 {
            let (vector_scale, cols) = [(s_in, dims.features), (s_h, dims.units)][k];
            for gate in 0..GATES {
                let m = GATES * k + gate;
                let id = cx.input(slot::WEIGHTS + m)?;
                let (data, scale) = weight_matrix(cx, id, (dims.units, cols))?;
                weights[m] = (data, cols);
                fc_scales[2 * gate + k] =
                    f64::from(vector_scale) * f64::from(scale) / GATE_INPUT_SCALE;
            }
        }
        let mut biases = [&[][..]; GATES];
        for (gate, bias) in biases.iter_mut().enumerate() {
            *bias = gate_bias(cx, gate, dims.units)?;
        }
        // TFLite-Micro's Prepare: the FCs' scales, then the products' (in double, from the
        // tensors' float scales).
        let (q15, s_c64, s_h64) = (GATE_OUTPUT_SCALE, f64::from(s_c), f64::from(s_h));
        let products = [q15 * s_c64 / s_c64, q15 * q15 / s_c64, q15 * q15 / s_h64];
        for real in fc_scales.into_iter().chain(products) {
            let q = multiplier(real, cell)?;
            cx.requant(q);
        }
        let cell_clip = f64::from(cx.options().cell_clip) / s_c64;
        cx.computed_input_from(1, &mut packed(weights, biases, [zp_in, zp_h]))?;
        cx.record_input(2, slot::OUTPUT_STATE)?;
        cx.record_input(3, slot::CELL_STATE)?;
        cx.params(&LstmParams {
            hidden_zero_point: zp_h,
            cell_scale_power: log2_rounded(s_c),
            // TFLite-Micro truncates the clip to int16 after clamping it.
            cell_clip: cell_clip.clamp(0.0, 32767.0) as i32,
            time_major: i32::from(cx.options().time_major),
        })
    }

    fn decode(d: &Decoder<'_, 'a>, params: LstmParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        let hidden = d.state(2, DType::I8);
        let cell_state = d.state(3, DType::I16);
        let mut pack = d.constant_bytes(1);
        let p = &params;
        d.check(
            (-128..=127).contains(&p.hidden_zero_point)
                && (-31..=16).contains(&p.cell_scale_power)
                && (0..=32767).contains(&p.cell_clip)
                && (0..=1).contains(&p.time_major),
            why!("LSTM parameter out of range"),
        );
        let (i, o) = (input.shape, output.shape);
        let (batch, steps) = match p.time_major {
            1 => (i.w, i.h),
            _ => (i.h, i.w),
        };
        let dims = LstmDims {
            batch,
            steps,
            features: i.c,
            units: o.c,
        };
        d.check(
            i.n == 1 && o == Shape4::new(1, i.h, i.w, dims.units),
            why!("LSTM output shape does not follow from its input's"),
        );
        let state_len = batch.checked_mul(dims.units);
        d.check(
            hidden.shape.elements() == state_len && cell_state.shape.elements() == state_len,
            why!("LSTM states must hold batch x units values"),
        );
        let mut weights = [&[][..]; 2];
        for (w, cols) in weights.iter_mut().zip([dims.features, dims.units]) {
            let len = (GATES * dims.units).saturating_mul(cols);
            let (matrices, rest) = pack.split_at_checked(len).unwrap_or((&[], &[]));
            d.check(
                !matrices.is_empty(),
                why!("LSTM constants shorter than its weights"),
            );
            *w = cast::slice(matrices).unwrap_or(&[]);
            pack = rest;
        }
        let [input_weights, recurrent_weights] = weights;
        let biases: &[i32] = cast::slice(pack).unwrap_or(&[]);
        d.check(
            Some(biases.len()) == dims.units.checked_mul(2 * GATES)
                && pack.len() == 4 * biases.len(),
            why!("LSTM effective biases do not match its units"),
        );
        let cell = CellParams {
            hidden_zero_point: p.hidden_zero_point.clamp(-128, 127) as i8,
            cell_scale_power: p.cell_scale_power.clamp(-31, 16) as i8,
            time_major: p.time_major == 1,
            cell_clip: p.cell_clip.clamp(0, 32767) as i16,
        };
        Lstm {
            cell,
            input_weights,
            recurrent_weights,
            biases,
            requant: d.requant(&[REQUANTS]),
            dims,
            input: input.index,
            output: output.index,
            state: [hidden.index, cell_state.index],
            scratch: d.scratch(),
        }
    }

    fn io(&self) -> Option<Io> {
        let state = [Some(self.state[0]), Some(self.state[1])];
        Some(Io::stateful(self.input, self.output, self.scratch, state))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let [hidden, cell] = v.state;
        let misaligned = Error::BadLayout {
            what: why!("LSTM state misaligned"),
        };
        let hidden: &mut [i8] = cast::slice_mut(hidden).ok_or(misaligned)?;
        let cell: &mut [i16] = cast::slice_mut(cell).ok_or(misaligned)?;
        lstm_i8(self, v.inputs[0], v.output.data, (hidden, cell), v.scratch)
    }

    fn scratch_need(&self, _model: &Model<'a>) -> Result<Option<usize>, Error> {
        Ok(Some(8 * self.scratch_words()))
    }

    fn macs(&self, _model: &Model<'a>) -> Result<u64, Error> {
        let d = self.dims;
        let per_step = GATES * d.units * (d.features + d.units);
        Ok((d.batch * d.steps * per_step) as u64)
    }
}

/// The int8 kernel: every batch row's sequence, step by step, updating the states in place.
/// `scratch` holds the step's input and hidden state widened for the DSP loop (see
/// [`Lstm::scratch_words`]); with less, every unit takes the plain path.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn lstm_i8(
    layer: &Lstm,
    input: Tensor<i8>,
    output: &mut [i8],
    (hidden, cell): (&mut [i8], &mut [i16]),
    scratch: &mut [u8],
) -> Result<(), Error> {
    let d = layer.dims;
    let time_major = layer.cell.time_major;
    let short = Error::LengthMismatch {
        expected: d.batch * d.units,
        actual: hidden.len().min(cell.len()),
    };
    // Exactly the groups the step widens: planned scratch is rounded up, and a group past
    // them would enter the DSP loop with stale values.
    let columns: &mut [[u32; 2]] = cast::slice_mut(scratch).unwrap_or(&mut []);
    let columns = columns.get_mut(..layer.scratch_words()).unwrap_or(&mut []);
    for b in 0..d.batch {
        let states = b * d.units..(b + 1) * d.units;
        let h = hidden.get_mut(states.clone()).ok_or(short)?;
        let c = cell.get_mut(states).ok_or(short)?;
        for t in 0..d.steps {
            let row = d.row(time_major, b, t);
            let x = input
                .data
                .get(row * d.features..(row + 1) * d.features)
                .ok_or(Error::ShapeOverflow)?;
            let out = output
                .get_mut(row * d.units..(row + 1) * d.units)
                .ok_or(Error::ShapeOverflow)?;
            layer.step(x, h, c, out, columns);
            h.copy_from_slice(out);
        }
    }
    Ok(())
}

/// `v`'s first whole words as q15 groups (see `simd`): `[(v0, v2), (v1, v3)]` per word.
fn widen(v: &[i8], groups: &mut [[u32; 2]]) {
    for (group, word) in groups.iter_mut().zip(v.chunks_exact(4)) {
        let w = u32::from_le_bytes([word[0] as u8, word[1] as u8, word[2] as u8, word[3] as u8]);
        *group = [simd::sxtb16(w), simd::sxtb16_ror8(w)];
    }
}

impl Lstm<'_> {
    /// Weight matrix `m`: input-to-gate `m` for `m < 4`, else recurrent-to-gate `m - 4`.
    fn matrix(&self, m: usize) -> &[i8] {
        let d = self.dims;
        let (all, cols) = match m < GATES {
            true => (self.input_weights, d.features),
            false => (self.recurrent_weights, d.units),
        };
        let size = d.units * cols;
        let gate = m % GATES;
        all.get(gate * size..(gate + 1) * size).unwrap_or(&[])
    }

    /// q15 groups the fast path widens the input and hidden state into.
    fn scratch_words(&self) -> usize {
        self.dims.features / 4 + self.dims.units / 4
    }

    /// One time step of one batch row: the new cell state in `c`, the new hidden state in
    /// `out` (the caller copies it to `h`, which every unit's gates read unchanged). Units
    /// go four at a time through the DSP loop when `columns` holds the widened vectors.
    fn step(&self, x: &[i8], h: &[i8], c: &mut [i16], out: &mut [i8], columns: &mut [[u32; 2]]) {
        let d = self.dims;
        let mut done = 0;
        if let Some((col_x, col_h)) = columns.split_at_mut_checked(d.features / 4) {
            widen(x, col_x);
            widen(h, col_h);
            let cols = [&*col_x, &*col_h];
            for first in (0..d.units / 4).map(|q| 4 * q) {
                let mut gates = [[0i16; GATES]; 4];
                for g in 0..GATES {
                    let pre = self.gate_quad(g, first, (x, h), cols);
                    for (unit, v) in gates.iter_mut().zip(pre) {
                        unit[g] = v;
                    }
                }
                for (k, unit) in gates.into_iter().enumerate() {
                    if let (Some(cell), Some(out)) = (c.get_mut(first + k), out.get_mut(first + k))
                    {
                        *out = self.finish_unit(unit, cell);
                    }
                }
            }
            done = 4 * (d.units / 4);
        }
        for u in done..d.units {
            let gates = [0, 1, 2, 3].map(|g| self.gate_input(g, u, x, h));
            if let (Some(cell), Some(out)) = (c.get_mut(u), out.get_mut(u)) {
                *out = self.finish_unit(gates, cell);
            }
        }
    }

    /// A unit's gates (pre-activations) applied to its cell state: the new cell state in
    /// `cell`, the new hidden state returned.
    #[inline(always)]
    fn finish_unit(&self, gates: [i16; GATES], cell: &mut i16) -> i8 {
        let [.., forget_times_cell, input_times_candidate, output_times_tanh] = *self.requant
        else {
            return 0;
        };
        let p = &self.cell;
        let i = sigmoid_q15(gates[INPUT_GATE]);
        let f = sigmoid_q15(gates[FORGET_GATE]);
        let g = tanh_q15(gates[CELL_GATE], -12);
        let o = sigmoid_q15(gates[OUTPUT_GATE]);
        let kept = mul_i16(f, *cell, forget_times_cell);
        let added = mul_i16(i, g, input_times_candidate);
        let mut updated = saturate_i16(i32::from(kept) + i32::from(added));
        if p.cell_clip > 0 {
            updated = updated.clamp(-p.cell_clip, p.cell_clip);
        }
        *cell = updated;
        let squashed = tanh_q15(updated, p.cell_scale_power.into());
        let hidden = output_times_tanh
            .apply(i32::from(squashed) * i32::from(o))
            .saturating_add(p.hidden_zero_point.into());
        hidden.clamp(-128, 127) as i8
    }

    /// FC `k` (0: input, 1: recurrent) of gate `g` for unit `u`, requantized to Q3.12: the
    /// accumulator `dot` (the weight row times the vector) plus its effective bias.
    #[inline(always)]
    fn fc_output(&self, g: usize, k: usize, u: usize, dot: i32) -> i32 {
        let bias = self
            .biases
            .get((2 * g + k) * self.dims.units + u)
            .copied()
            .unwrap_or(0);
        let q = self.requant.get(2 * g + k).copied().unwrap_or(ZERO);
        i32::from(saturate_i16(q.apply(dot.wrapping_add(bias))))
    }

    /// Gate `g`'s pre-activation for unit `u`: its input FC and its recurrent FC, each
    /// requantized to int16 Q3.12, added with saturation.
    #[inline(always)]
    fn gate_input(&self, g: usize, u: usize, x: &[i8], h: &[i8]) -> i16 {
        let fc = |k: usize, vector: &[i8]| {
            let cols = vector.len();
            let row = self.matrix(GATES * k + g).get(u * cols..(u + 1) * cols);
            self.fc_output(g, k, u, dot(row.unwrap_or(&[]), vector))
        };
        saturate_i16(fc(0, x) + fc(1, h))
    }

    /// [`Self::gate_input`] for units `first..first + 4`, the whole words of each product
    /// through the DSP loop over the widened vectors `cols` (input, hidden state).
    fn gate_quad(
        &self,
        g: usize,
        first: usize,
        (x, h): (&[i8], &[i8]),
        cols: [&[[u32; 2]]; 2],
    ) -> [i16; 4] {
        let mut fcs = [[0i32; 4]; 2];
        for (k, (vector, col)) in [x, h].into_iter().zip(cols).enumerate() {
            let stride = vector.len();
            let rows = self
                .matrix(GATES * k + g)
                .get(first * stride..)
                .unwrap_or(&[]);
            let mut dots = simd::mac_1x4(col, rows, stride, [0; 4]);
            let from = 4 * col.len();
            if from < stride {
                // The columns past the last whole word, row by row.
                let tail = vector.get(from..).unwrap_or(&[]);
                for (j, sum) in dots.iter_mut().enumerate() {
                    let row = rows.get(j * stride + from..(j + 1) * stride).unwrap_or(&[]);
                    *sum = sum.wrapping_add(dot(row, tail));
                }
            }
            for (j, (fc, sum)) in fcs[k].iter_mut().zip(dots).enumerate() {
                *fc = self.fc_output(g, k, first + j, sum);
            }
        }
        [0, 1, 2, 3].map(|j| saturate_i16(fcs[0][j] + fcs[1][j]))
    }
}

const ZERO: QuantizedMultiplier = QuantizedMultiplier {
    multiplier: 0,
    shift: 0,
};

/// `sum(row[i] * vector[i])`, wrapping as the int32 sums it stands for.
#[inline(always)]
fn dot(row: &[i8], vector: &[i8]) -> i32 {
    row.iter().zip(vector).fold(0i32, |s, (&w, &v)| {
        s.wrapping_add(i32::from(w) * i32::from(v))
    })
}

/// Clamps to int16.
#[inline(always)]
fn saturate_i16(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// An int16 product requantized to int16 (both factors symmetric).
#[inline(always)]
fn mul_i16(a: i16, b: i16, q: QuantizedMultiplier) -> i16 {
    saturate_i16(q.apply(i32::from(a) * i32::from(b)))
}

/// `65536 * sigmoid(k / 24)` for k in 0..256, to within 1.2 units (the last entry clamped to
/// 65535): the table TFLite's int16 sigmoid and tanh interpolate, entry for entry.
const SIGMOID_TABLE: [u16; 256] = [
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794,
    41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443,
    48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169, 53581, 53983, 54374,
    54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544,
    58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279,
    61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990,
    63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030,
    64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652,
    64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019,
    65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234,
    65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476,
    65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498, 65500, 65501,
    65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516,
    65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529,
    65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532,
    65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65534, 65534,
    65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
];

/// The table at `index` and the next entry (`index` < 255).
#[inline(always)]
fn table_pair(index: usize) -> (u32, u32) {
    let a = SIGMOID_TABLE.get(index).copied().unwrap_or(u16::MAX);
    let b = SIGMOID_TABLE.get(index + 1).copied().unwrap_or(u16::MAX);
    (u32::from(a), u32::from(b))
}

/// Sigmoid of a Q3.12 value as Q0.15, as TFLite's int16 `Logistic` (input scaled by 3/4 so the
/// table's `k / 24` steps cover it, then interpolated on the magnitude).
pub fn sigmoid_q15(x: i16) -> i16 {
    let input = i32::from(x) * 3;
    let magnitude = input.unsigned_abs();
    let index = (magnitude >> 9) as usize;
    let interpolated = match index >= 255 {
        true => 0x7FFF << 10,
        false => {
            let (a, b) = table_pair(index);
            (a << 9) + (magnitude & 0x1FF) * (b - a)
        }
    };
    let result = match input >= 0 {
        true => interpolated + (1 << 9),
        false => (1 << 25) - interpolated + (1 << 9) - 1,
    };
    (result >> 10) as i16
}

/// Tanh of an int16 value of scale `2^scale_power` as Q0.15, as TFLite's int16 `Tanh` with the
/// LSTM's input scaling (`tanh(x) = 2 sigmoid(2x) - 1` on the same table).
pub fn tanh_q15(x: i16, scale_power: i32) -> i16 {
    let shift = 15 + scale_power - 3;
    let input = match shift >= 0 {
        true => i32::from(x).wrapping_mul(3i32.wrapping_shl(shift as u32)),
        false => {
            let right = (-shift).min(31) as u32;
            (i32::from(x) * 3 + (1 << (right - 1))) >> right
        }
    };
    let magnitude = input.unsigned_abs();
    let index = (magnitude >> 8) as usize;
    let interpolated = match index >= 255 {
        true => 0xFFFF << 8,
        false => {
            let (a, b) = table_pair(index);
            ((a << 8) + (magnitude & 0xFF) * (b - a)) as i32
        }
    };
    let result = match input >= 0 {
        true => interpolated - (1 << 23) + (1 << 7),
        false => -interpolated + (1 << 23) + (1 << 7) - 1,
    };
    (result >> 8) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_sigmoid_it_claims() {
        for (k, &v) in SIGMOID_TABLE.iter().enumerate() {
            let exact = 65536.0 / (1.0 + libm::exp(-(k as f64) / 24.0));
            assert!((f64::from(v) - exact.min(65535.0)).abs() < 1.2, "entry {k}");
        }
    }

    #[test]
    fn the_q15_activations_follow_sigmoid_and_tanh() {
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let real = f64::from(x) / 4096.0;
            let s = f64::from(sigmoid_q15(x)) / 32768.0;
            assert!(
                (s - 1.0 / (1.0 + libm::exp(-real))).abs() < 2e-3,
                "sigmoid({real})"
            );
            let t = f64::from(tanh_q15(x, -12)) / 32768.0;
            assert!((t - libm::tanh(real)).abs() < 2e-3, "tanh({real})");
            // A cell state of scale 2^-11 is twice the value of the same code at 2^-12.
            let t11 = f64::from(tanh_q15(x, -11)) / 32768.0;
            assert!(
                (t11 - libm::tanh(2.0 * real)).abs() < 4e-3,
                "tanh(2 * {real})"
            );
        }
        assert_eq!(sigmoid_q15(0), 16384);
        assert_eq!(tanh_q15(0, -12), 0);
    }

    #[test]
    fn log2_rounds_like_tflite() {
        assert_eq!(log2_rounded(1.0 / 4096.0), -12);
        assert_eq!(log2_rounded(0.000_488_281_25), -11);
        assert_eq!(log2_rounded(0.000_3), -12); // log2 = -11.7
        assert_eq!(log2_rounded(0.000_4), -11); // log2 = -11.3
    }

    /// A small LSTM with pseudo-random weights and constants.
    struct Fixture {
        input_weights: std::vec::Vec<i8>,
        recurrent_weights: std::vec::Vec<i8>,
        biases: std::vec::Vec<i32>,
        requant: [QuantizedMultiplier; REQUANTS],
    }

    fn fixture(dims: LstmDims, seed: u64) -> Fixture {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut weights = [dims.features, dims.units].map(|cols| {
            (0..GATES * dims.units * cols)
                .map(|_| next() as i8)
                .collect()
        });
        let recurrent_weights = core::mem::take(&mut weights[1]);
        let input_weights = core::mem::take(&mut weights[0]);
        let biases = (0..2 * GATES * dims.units)
            .map(|_| (next() % 20_001) as i32 - 10_000)
            .collect();
        let requant = core::array::from_fn(|k| {
            let real = match k < 2 * GATES {
                true => 0.02 + 0.01 * k as f64,
                false => [1.0 / 32768.0, 0.25, 0.004][k - 2 * GATES],
            };
            QuantizedMultiplier::from_f64(real).unwrap()
        });
        Fixture {
            input_weights,
            recurrent_weights,
            biases,
            requant,
        }
    }

    fn layer<'a>(f: &'a Fixture, dims: LstmDims, time_major: bool) -> Lstm<'a> {
        Lstm {
            cell: CellParams {
                hidden_zero_point: -3,
                cell_scale_power: -11,
                time_major,
                cell_clip: 0,
            },
            input_weights: &f.input_weights,
            recurrent_weights: &f.recurrent_weights,
            biases: &f.biases,
            requant: &f.requant,
            dims,
            input: 0,
            output: 1,
            state: [2, 3],
            scratch: Scratch::default(),
        }
    }

    /// Runs `invokes` invokes from zero state with or without the fast path's scratch.
    fn run(l: &Lstm, input: &[i8], invokes: usize, fast: bool) -> std::vec::Vec<i8> {
        let d = l.dims;
        let shape = Shape4::new(1, d.batch, d.steps, d.features);
        let mut hidden = std::vec![-3i8; d.batch * d.units];
        let mut cell = std::vec![0i16; d.batch * d.units];
        // Planned scratch is rounded up: a stale group past the widened ones must not count.
        let spare = 2 * usize::from(fast);
        let mut scratch =
            std::vec![0x7F7F_7F7Fu32; (2 * l.scratch_words() + spare) * usize::from(fast)];
        let bytes = cast::words_as_bytes_mut(&mut scratch);
        let mut all = std::vec::Vec::new();
        for _ in 0..invokes {
            let mut out = std::vec![0i8; d.batch * d.steps * d.units];
            let t = Tensor { data: input, shape };
            lstm_i8(l, t, &mut out, (&mut hidden, &mut cell), bytes).unwrap();
            all.extend(out);
        }
        all
    }

    #[test]
    fn the_fast_path_equals_the_plain_one() {
        for (features, units) in [(8, 8), (13, 9), (3, 4), (28, 20)] {
            let dims = LstmDims {
                batch: 2,
                steps: 5,
                features,
                units,
            };
            let f = fixture(dims, 0x5EED ^ (features * 31 + units) as u64);
            let input: std::vec::Vec<i8> = (0..2 * 5 * features)
                .map(|i| ((i * 37 + 11) % 256) as u8 as i8)
                .collect();
            let l = layer(&f, dims, false);
            assert_eq!(run(&l, &input, 3, true), run(&l, &input, 3, false));
        }
    }

    #[test]
    fn time_major_is_the_transposed_batch_major() {
        let dims = LstmDims {
            batch: 3,
            steps: 4,
            features: 6,
            units: 5,
        };
        let f = fixture(dims, 77);
        let batch_major: std::vec::Vec<i8> = (0..3 * 4 * 6).map(|i| (i * 13 % 251) as i8).collect();
        // [batch, steps, features] -> [steps, batch, features].
        let transpose = |v: &[i8], inner: usize| -> std::vec::Vec<i8> {
            let mut t = std::vec![0i8; v.len()];
            for b in 0..3 {
                for s in 0..4 {
                    let (from, to) = ((b * 4 + s) * inner, (s * 3 + b) * inner);
                    t[to..to + inner].copy_from_slice(&v[from..from + inner]);
                }
            }
            t
        };
        let want = run(&layer(&f, dims, false), &batch_major, 1, true);
        let got = run(&layer(&f, dims, true), &transpose(&batch_major, 6), 1, true);
        assert_eq!(got, transpose(&want, 5));
    }

    #[test]
    fn state_carries_over_and_the_cell_clip_holds() {
        let dims = LstmDims {
            batch: 1,
            steps: 3,
            features: 4,
            units: 4,
        };
        let f = fixture(dims, 9);
        let input = [40i8; 12];
        let l = layer(&f, dims, false);
        let twice = run(&l, &input, 2, true);
        // The second invoke starts from the first's state, so it differs from a fresh one.
        assert_ne!(twice[..12], twice[12..]);
        let mut clipped = layer(&f, dims, false);
        clipped.cell.cell_clip = 100;
        let mut hidden = [-3i8; 4];
        let mut cell = [0i16; 4];
        let mut out = [0i8; 12];
        let t = Tensor {
            data: &input[..],
            shape: Shape4::new(1, 1, 3, 4),
        };
        lstm_i8(&clipped, t, &mut out, (&mut hidden, &mut cell), &mut []).unwrap();
        assert!(cell.iter().all(|c| c.abs() <= 100), "{cell:?}");
    }
}
