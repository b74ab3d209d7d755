//! An LSTM layer as the TFLite converter emits a Keras LSTM with full int8 quantization: one
//! UNIDIRECTIONAL_SEQUENCE_LSTM with TFLite's 24 inputs, then, when only the last step is
//! wanted, a STRIDED_SLICE of it.
//!
//! Quantization, as the converter chooses it: int8 asymmetric input (calibrated); each of the
//! eight weight matrices int8 symmetric per tensor; each gate's bias int32 at `input_scale *`
//! that gate's input-weight scale; the hidden state (`output_state`, a variable tensor) int8
//! with the LSTM output's calibrated parameters, which the output shares; the cell state (a
//! variable tensor) int16 symmetric at `2^k / 32768`, the smallest power of two (from 1 to
//! 1024, TFLite's `GetPowerOfTwoScale`) covering the calibrated `|c|` maximum.

use anyhow::Result;
use mote_core::format::{DType, OpCode};
use mote_core::ops::Shape4;

use super::{Emitter, Tx};
use crate::builder::{Data, OpDef, Quantization, TensorDef, TensorId, TfOptions};

/// The float layer's parameters (see [`crate::float_model::FloatLayer::Lstm`]).
pub(super) struct LstmLayer<'a> {
    pub units: usize,
    /// `[4 * units, features]`, gate blocks i, f, c, o.
    pub weights: &'a [f32],
    /// `[4 * units, units]`.
    pub recurrent: &'a [f32],
    /// `[4 * units]`.
    pub bias: &'a [f32],
    pub return_sequences: bool,
}

/// TFLite's GetPowerOfTwoScale: the smallest `2^k`, `k` in `0..=10`, at least `abs_max`; the
/// int16 cell state's scale is `2^k / 32768`.
pub(super) fn cell_state_scale(abs_max: f32) -> f32 {
    let mut k = 0;
    while k < 10 && 2f32.powi(k) < abs_max {
        k += 1;
    }
    2f32.powi(k) / 32768.0
}

/// The LSTM's 24 inputs in TFLite's order; `None` for the variants it does not use.
struct LstmInputs {
    input: TensorId,
    /// input_to_{input,forget,cell,output}_weights.
    input_weights: [TensorId; 4],
    /// recurrent_to_{input,forget,cell,output}_weights.
    recurrent_weights: [TensorId; 4],
    /// {input,forget,cell,output}_gate_bias.
    biases: [TensorId; 4],
    output_state: TensorId,
    cell_state: TensorId,
}

impl LstmInputs {
    fn tflite_order(&self) -> Vec<Option<TensorId>> {
        let mut v = vec![Some(self.input)];
        v.extend(self.input_weights.map(Some));
        v.extend(self.recurrent_weights.map(Some));
        v.extend([None; 3]); // cell_to_{input,forget,output}_weights (peephole)
        v.extend(self.biases.map(Some));
        v.extend([None; 2]); // projection weights and bias
        v.extend([Some(self.output_state), Some(self.cell_state)]);
        v.extend([None; 4]); // {input,forget,cell,output}_layer_norm_coefficients
        v
    }
}

impl Emitter<'_> {
    /// The LSTM (and its last-step slice). Consumes the layer's three traced ranges: hidden
    /// states, cell states, output.
    pub(super) fn lstm(&mut self, l: &LstmLayer, x: Tx) -> Result<Tx> {
        let (steps, features, u) = (x.shape.w, x.shape.c, l.units);
        let x = self.as_sequence(x);
        let hidden_q = self.next_range();
        let (lo, hi) = self.ranges.range(self.slot);
        self.slot += 1;
        let cell_scale = cell_state_scale(lo.abs().max(hi.abs()));
        // The layer's output: the LSTM's own, or its last step, with the hidden state's
        // parameters either way (a slice keeps its input's).
        self.next_range();

        let mut input_scales = [0f32; 4];
        let input_weights: [TensorId; 4] = std::array::from_fn(|gate| {
            let block = &l.weights[gate * u * features..][..u * features];
            let (id, scales) = self.weights(block, [1, 1, u, features], 0, vec![u, features]);
            input_scales[gate] = scales[0];
            id
        });
        let recurrent_weights: [TensorId; 4] = std::array::from_fn(|gate| {
            let block = &l.recurrent[gate * u * u..][..u * u];
            self.weights(block, [1, 1, u, u], 0, vec![u, u]).0
        });
        let biases: [TensorId; 4] = std::array::from_fn(|gate| {
            let b = &l.bias[gate * u..][..u];
            self.bias(b, x.q.0, &vec![input_scales[gate]; u])
        });
        let output_state = self.state(vec![1, u], DType::I8, hidden_q);
        let cell_state = self.state(vec![1, u], DType::I16, (cell_scale, 0));
        let inputs = LstmInputs {
            input: x.id,
            input_weights,
            recurrent_weights,
            biases,
            output_state,
            cell_state,
        };
        let out = self.activation_of_rank(Shape4::new(1, 1, steps, u), hidden_q, 3);
        let options = TfOptions {
            time_major: false,
            cell_clip: 0.0,
            proj_clip: 0.0,
            ..TfOptions::default()
        };
        self.b.op(OpDef {
            op: OpCode::UnidirectionalSequenceLstm,
            inputs: inputs.tflite_order(),
            output: out.id,
            options,
        });
        Ok(match l.return_sequences {
            true => out,
            false => self.last_step(out),
        })
    }

    /// A variable (state) tensor, zero at the start of each sequence.
    fn state(&mut self, dims: Vec<usize>, dtype: DType, q: (f32, i32)) -> TensorId {
        let name = self.name("state");
        let id = self.b.tensor(TensorDef {
            name,
            shape: dims,
            dtype,
            quant: Some(Quantization::per_tensor(q.0, q.1)),
            data: None,
        });
        self.b
            .set_variable(id)
            .expect("a fresh non-constant tensor can be variable");
        id
    }

    /// `x` as TFLite's `[1, steps, features]` (a RESHAPE if it has another rank).
    fn as_sequence(&mut self, x: Tx) -> Tx {
        if x.rank == 3 {
            return x;
        }
        let out = self.activation_of_rank(x.shape, x.q, 3);
        let options = TfOptions::default();
        self.b
            .op(OpDef::new(OpCode::Reshape, &[x.id], out.id, options));
        out
    }

    /// `x[:, -1, :]`: what the converter emits after an LSTM without `return_sequences`.
    fn last_step(&mut self, x: Tx) -> Tx {
        let constant = |e: &mut Self, values: [i32; 3]| {
            let name = e.name("slice");
            e.b.tensor(TensorDef {
                name,
                shape: vec![3],
                dtype: DType::I32,
                quant: None,
                data: Some(Data::I32(values.to_vec())),
            })
        };
        let begin = constant(self, [0, -1, 0]);
        let end = constant(self, [0, 0, 0]);
        let strides = constant(self, [1, 1, 1]);
        let out = self.activation_of_rank(Shape4::new(1, 1, 1, x.shape.c), x.q, 2);
        // Batch and units whole (begin and end ignored), the time axis shrunk away.
        let options = TfOptions {
            begin_mask: 0b101,
            end_mask: 0b101,
            shrink_axis_mask: 0b010,
            ..TfOptions::default()
        };
        let op = OpDef::new(
            OpCode::StridedSlice,
            &[x.id, begin, end, strides],
            out.id,
            options,
        );
        self.b.op(op);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_scales_are_powers_of_two_covering_the_range() {
        assert_eq!(cell_state_scale(0.3), 1.0 / 32768.0);
        assert_eq!(cell_state_scale(1.0), 1.0 / 32768.0);
        assert_eq!(cell_state_scale(1.01), 2.0 / 32768.0);
        assert_eq!(cell_state_scale(5.0), 8.0 / 32768.0);
        assert_eq!(cell_state_scale(1e6), 1024.0 / 32768.0);
    }
}
