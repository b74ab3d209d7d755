//! Fine-tuning an exported int8 model on the device: the int8 interpreter runs the frozen
//! backbone up to the model's trainable FULLY_CONNECTED layer (the head), its input features
//! are dequantized, and an f32 copy of the head, initialised from the blob's int8 weights,
//! learns with SGD. Memory scales with the head alone.

use super::{Layer, Network, Sgd, TrainingPlan};
use crate::format::{OpCode, OP_FLAG_TRAINABLE};
use crate::ops::{Activation, Shape4};
use crate::{Error, Interpreter, Model, OpHook};

/// The trainable head of an int8 model and everything needed to train it.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// Index of the head operator in the model.
    pub op: u16,
    /// The tensor holding the head's input features (int8, in the arena).
    pub features: u16,
    /// Feature count.
    pub inputs: usize,
    /// Class count.
    pub outputs: usize,
    /// The f32 head as a one-layer network.
    pub network: Network<1>,
    /// Its training plan (bytes of training memory: `plan.bytes()`).
    pub plan: TrainingPlan<1>,
}

impl Head {
    /// Finds the operator flagged trainable (else the last FULLY_CONNECTED) and plans its
    /// training with `sgd`.
    pub fn find(model: &Model<'_>, sgd: Sgd) -> Result<Self, Error> {
        let mut found = None;
        for i in 0..model.op_count() {
            let op = model.op(i)?;
            if op.opcode == OpCode::FullyConnected {
                if op.flags & OP_FLAG_TRAINABLE != 0 {
                    found = Some(i);
                    break;
                }
                found = Some(i);
            }
        }
        let op = found.ok_or(Error::WrongTensor {
            what: why!("the model has no FULLY_CONNECTED layer to train"),
        })?;
        let record = model.op(op)?;
        let weights = model.tensor(record.inputs[1])?;
        let inputs = weights.shape.c;
        let outputs = weights.record.byte_len as usize / inputs.max(1);
        let network = Network::new(
            Shape4::new(1, 1, 1, inputs),
            [Layer::dense(outputs, Activation::None)],
        )?;
        let plan = TrainingPlan::new(&network, sgd)?;
        Ok(Self {
            op,
            features: record.inputs[0],
            inputs,
            outputs,
            network,
            plan,
        })
    }

    /// What weights learned for this head on `model` belong to, for the weight store.
    pub fn identity(&self, model: &Model<'_>) -> crate::persist::Identity {
        crate::persist::Identity {
            model: model.crc32(),
            shape: [self.outputs as u32, self.inputs as u32],
        }
    }

    /// f32 parameters the head needs (weights then bias).
    pub fn param_count(&self) -> usize {
        self.network.param_count()
    }

    /// Fills `params` with the head's exported weights, dequantized.
    pub fn init_params(&self, model: &Model<'_>, params: &mut [f32]) -> Result<(), Error> {
        let (w, b) = self.network.param_ranges(0).ok_or(Error::WrongTensor {
            what: why!("head without parameters"),
        })?;
        let actual = params.len();
        let (weights, rest) = params
            .get_mut(..b.end)
            .ok_or(Error::LengthMismatch {
                expected: b.end,
                actual,
            })?
            .split_at_mut(w.end);
        model.dequantize_dense(self.op, weights, rest)?;
        Ok(())
    }

    /// Runs the backbone on the interpreter's current input and writes the head's input
    /// features, dequantized, into `features`.
    pub fn features(
        &self,
        interpreter: &mut Interpreter<'_, '_>,
        hook: &mut impl OpHook,
        features: &mut [f32],
    ) -> Result<(), Error> {
        interpreter.invoke_until(self.op, hook)?;
        let info = interpreter.model().tensor(self.features)?;
        let q = interpreter.tensor_i8(self.features)?;
        crate::ops::quantize::dequantize_i8_f32(info.scale(), info.zero_point(), q, features)
    }

    /// The class the f32 head predicts for `features` with `params`.
    pub fn predict(&self, params: &[f32], features: &[f32]) -> Result<usize, Error> {
        let (w, b) = self.network.param_ranges(0).ok_or(Error::WrongTensor {
            what: why!("head without parameters"),
        })?;
        let (weights, bias) = (
            params.get(w).ok_or(Error::ShapeOverflow)?,
            params.get(b).ok_or(Error::ShapeOverflow)?,
        );
        if features.len() != self.inputs {
            return Err(Error::LengthMismatch {
                expected: self.inputs,
                actual: features.len(),
            });
        }
        let mut best = (0, f32::NEG_INFINITY);
        for (o, row) in weights.chunks_exact(self.inputs).enumerate() {
            let logit = row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>() + bias[o];
            if logit > best.1 {
                best = (o, logit);
            }
        }
        Ok(best.0)
    }

    /// Starts class `class` of the f32 head in `params` from the mean of a few of its samples'
    /// features (`mean`): the row of a nearest-mean classifier, `2 s mean . x - s |mean|^2`,
    /// scaled so that its weights are as long as the other rows' on average. A class the
    /// exported model left empty (spare capacity) can then be learned from a few samples.
    pub fn start_class(&self, params: &mut [f32], class: usize, mean: &[f32]) -> Result<(), Error> {
        let (w, b) = self.network.param_ranges(0).ok_or(Error::WrongTensor {
            what: why!("head without parameters"),
        })?;
        if mean.len() != self.inputs || class >= self.outputs {
            return Err(Error::InvalidParameter {
                what: why!("class or mean feature length outside the head"),
            });
        }
        super::check_finite(mean, why!("mean feature"))?;
        let weights = params.get(w.clone()).ok_or(Error::ShapeOverflow)?;
        let norm = |row: &[f32]| libm::sqrtf(row.iter().map(|v| v * v).sum::<f32>());
        let others = weights
            .chunks_exact(self.inputs)
            .enumerate()
            .filter(|&(c, _)| c != class)
            .map(|(_, row)| norm(row));
        let (sum, count) = others.fold((0.0, 0), |(s, n), r| (s + r, n + 1));
        let target = if count > 0 && sum > 0.0 {
            sum / count as f32
        } else {
            1.0
        };
        let length = norm(mean);
        if !length.is_normal() {
            return Err(Error::InvalidParameter {
                what: why!("mean feature of zero or overflowing length"),
            });
        }
        let scale = target / (2.0 * length);
        let row = params
            .get_mut(w.start + class * self.inputs..w.start + (class + 1) * self.inputs)
            .ok_or(Error::ShapeOverflow)?;
        for (r, &m) in row.iter_mut().zip(mean) {
            *r = 2.0 * scale * m;
        }
        let bias = params
            .get_mut(b.start + class)
            .ok_or(Error::ShapeOverflow)?;
        *bias = -scale * length * length;
        Ok(())
    }
}
