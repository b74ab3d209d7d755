//! RESHAPE (and the SQUEEZE and EXPAND_DIMS converters write): no work at all. The host plans
//! the output onto the input's bytes, so the output aliases the input.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::NoParams;
use crate::format::Storage;
use crate::model::Decoder;
use crate::Error;

/// RESHAPE, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Reshape {
    /// Input tensor.
    pub input: u16,
    /// Output tensor, on the input's bytes.
    pub output: u16,
}

impl<'a> Operator<'a> for Reshape {
    type Params = NoParams;
    type In = u32;
    type Out = u32;
    const INPUTS: usize = 1;
    const TFLITE_ALIASES: &'static [&'static str] = &["SQUEEZE", "EXPAND_DIMS"];
    const ALIASES_INPUT: bool = true;

    /// The new shape is the output tensor's; TFLite's optional shape input adds nothing.
    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        let elements = |id| cx.tensor(id).map(|t| t.shape.elements());
        if elements(input)? != elements(cx.output())? {
            return Err(LowerError::WrongOutputShape {
                tensor: cx.output(),
                expected: cx.tensor(input)?.shape,
            });
        }
        Ok(())
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let input = d.any_tensor(0);
        let output = d.any_tensor(usize::MAX);
        d.check(
            input.record.storage == Storage::Arena && output.record.storage == Storage::Arena,
            why!("RESHAPE works on activations"),
        );
        d.check(
            input.dtype() == output.dtype() && input.arena_range() == output.arena_range(),
            why!("RESHAPE's output must alias its input (same type and bytes)"),
        );
        d.same_elements(&input, &output);
        Reshape {
            input: input.index,
            output: output.index,
        }
    }

    /// Nothing to run: the planner put the output on the input's bytes.
    fn io(&self) -> Option<Io> {
        None
    }

    fn run(&self, _: Views<'_, u32, u32>) -> Result<(), Error> {
        Ok(())
    }
}
