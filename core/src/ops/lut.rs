//! Unary 8-bit operators as a 256-entry lookup table: LOGISTIC, TANH, HARD_SWISH and
//! LEAKY_RELU on int8 (and QUANTIZE between 8-bit types, see [`quantize`](super::quantize)).
//!
//! An int8 input has 256 values, so the lowering runs TFLite-Micro's integer arithmetic for
//! each once ([`tables`]) and stores the results as a constant uint8 tensor, the record's
//! second input; the kernel is one load per element. The decoder checks the table's length;
//! its entries are any bytes, so no table can make the kernel misbehave.

pub mod tables;

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::NoParams;
use crate::format::{DType, OpCode};
use crate::model::{Decoder, Scratch};
use crate::Error;

/// Entries of a table: one per 8-bit input value.
pub const TABLE_LEN: usize = 256;

/// A table operator, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Lut<'a> {
    /// `table[b]`: the output byte for input byte `b`.
    pub table: &'a [u8; TABLE_LEN],
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

/// The int8 output quantization TFLite fixes for LOGISTIC (1/256, -128) and TANH (1/128, 0).
fn fixed_output(cx: &Lowering<'_>, scale: f32, zero_point: i32) -> Result<(), LowerError> {
    match cx.per_tensor(cx.output())? == (scale, zero_point) {
        true => Ok(()),
        false => Err(LowerError::Quantization {
            tensor: cx.output(),
            what: match zero_point {
                0 => "a TANH output must have scale 1/128 and zero point 0",
                _ => "a LOGISTIC output must have scale 1/256 and zero point -128",
            },
        }),
    }
}

/// The table of an int8 operator of this kind.
fn int8_table(cx: &Lowering<'_>, input: usize) -> Result<[i8; TABLE_LEN], LowerError> {
    let quant = cx.per_tensor(input)?;
    let output = cx.per_tensor(cx.output())?;
    let table = match cx.opcode() {
        OpCode::Logistic => {
            fixed_output(cx, 1.0 / 256.0, -128)?;
            tables::logistic(quant)
        }
        OpCode::Tanh => {
            fixed_output(cx, 1.0 / 128.0, 0)?;
            tables::tanh(quant)
        }
        OpCode::HardSwish => tables::hard_swish(quant, output),
        OpCode::LeakyRelu => tables::leaky_relu(quant, output, cx.options().alpha),
        _ => None,
    };
    table.ok_or(LowerError::Unsupported {
        what: "the operator's scales are out of the range TFLite-Micro's prepare accepts",
    })
}

impl<'a> Operator<'a> for Lut<'a> {
    type Params = NoParams;
    type In = u8;
    type Out = u8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.int8_io(0)?;
        if cx.optional(1)?.is_some() {
            return Err(LowerError::Unsupported {
                what: "the operator takes one input",
            });
        }
        cx.expect_output(cx.tensor(input)?.shape)?;
        let table = int8_table(cx, input)?.map(|v| v as u8);
        cx.computed_input(1, &table)
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let input = d.activation(0, DType::I8);
        let output = d.output(DType::I8);
        d.same_elements(&input, &output);
        Lut {
            table: d.table(1),
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, u8, u8>) -> Result<(), Error> {
        lookup(self.table, v.inputs[0].data, v.output.data)
    }
}

/// `output[i] = table[input[i]]` over same-length byte slices (int8 or uint8 alike).
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn lookup(table: &[u8; TABLE_LEN], input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    if input.len() != output.len() {
        return Err(Error::LengthMismatch {
            expected: input.len(),
            actual: output.len(),
        });
    }
    super::bytes::lookup(table, input, output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_maps_every_byte_and_checks_lengths() {
        let mut table = [0u8; TABLE_LEN];
        for (i, t) in table.iter_mut().enumerate() {
            *t = (i as u8).wrapping_mul(3);
        }
        let input: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 256];
        lookup(&table, &input, &mut out).unwrap();
        assert!(out
            .iter()
            .zip(&input)
            .all(|(&o, &x)| o == x.wrapping_mul(3)));
        assert!(lookup(&table, &input, &mut out[..3]).is_err());
    }
}
