//! The toolkit every operator's decoder uses: reading an operator record's tensors, constants
//! and parameters against the model, checking each, and latching the first failure.
//! `Model::parse` decodes each operator to validate it; an interpreter decodes each again, once
//! (`Interpreter::with_decoded`) or as it runs (`Interpreter::new`).

use super::{Model, TensorInfo};
use crate::format::{DType, OpCode, OpRecord, Storage, TensorRecord, NO_TENSOR};
use crate::ops::operator::Operator;
use crate::ops::record::{RecordParams, SlotReader, SCRATCH_LEN, SCRATCH_OFFSET};
use crate::ops::{Shape4, Tensor, Window};
use crate::quant::QuantizedMultiplier;
use crate::Error;
use core::cell::Cell;

/// Arena bytes an operator's kernel works in while it runs (empty: none planned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scratch {
    /// Arena offset, a multiple of 4.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
}

impl Scratch {
    /// The arena bytes.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// Checks an operator record field by field. A failed check is latched (the first one wins)
/// and the helper goes on with a harmless placeholder, so `Layer::decode` tests for failure
/// once, at the end, instead of unwinding a `Result` after every step: on the device that is a
/// kilobyte less of flash, and a valid model (the only kind that reaches an invoke) never
/// pays for the placeholders. The helpers several arms call are `#[inline(never)]`: inlined,
/// they made `decode` 2.4 KB larger.
pub(crate) struct Decoder<'m, 'a> {
    model: &'m Model<'a>,
    index: u16,
    op: &'m OpRecord,
    failed: Cell<Option<Error>>,
}

/// What a failed tensor lookup leaves behind: one element of every dimension, so the checks
/// after it still compute without overflow (and fail or pass harmlessly).
const PLACEHOLDER_TENSOR: TensorInfo = TensorInfo {
    index: NO_TENSOR,
    record: TensorRecord {
        dtype: DType::I8,
        storage: Storage::Arena,
        channel_axis: 0,
        shape: [1; 4],
        offset: 0,
        byte_len: 0,
        scale: 0.0,
        zero_point: 0,
        channel_scales: 0,
        live_from: 0,
        live_to: 0,
        variable: false,
    },
    shape: Shape4::new(1, 1, 1, 1),
};

impl<'m, 'a> Decoder<'m, 'a> {
    /// A decoder for operator `index`, whose record is `op`.
    pub(crate) fn new(model: &'m Model<'a>, index: u16, op: &'m OpRecord) -> Self {
        Self {
            model,
            index,
            op,
            failed: Cell::new(None),
        }
    }

    /// The operator's code.
    pub(crate) fn opcode(&self) -> OpCode {
        self.op.opcode
    }

    /// The error for an operator this build left out (refused when the model is parsed, not
    /// halfway through an invoke).
    #[cold]
    #[inline(never)]
    pub(crate) fn not_built(&self) -> Error {
        Error::OperatorNotBuilt {
            index: self.index,
            op: self.opcode(),
        }
    }

    /// Decodes the operator as `L`: its input count, its parameters, then `L`'s own checks.
    pub(crate) fn decode_op<L: Operator<'a>>(&self) -> L {
        self.check(
            self.op.inputs[L::INPUTS.min(self.op.inputs.len())..]
                .iter()
                .all(|&t| t == NO_TENSOR),
            why!("too many inputs for the operator"),
        );
        let mut slots = SlotReader::new(&self.op.params);
        let params = L::Params::read(&mut slots);
        if let Some(what) = slots.failure() {
            self.reject(what);
        }
        L::decode(self, params)
    }

    /// The operator's input `slot` as a tensor of any type and storage, or the output for
    /// `usize::MAX`.
    #[inline(never)]
    pub(crate) fn any_tensor(&self, slot: usize) -> TensorInfo {
        let index = match slot {
            usize::MAX => self.op.output,
            _ => self.op.inputs[slot],
        };
        let found = match index {
            NO_TENSOR => Err(Error::invalid_operator(
                self.index,
                why!("a required input is missing"),
            )),
            _ => self.model.tensor(index),
        };
        self.take(found, PLACEHOLDER_TENSOR)
    }

    /// Whether the record names a tensor in input `slot` (operators with a variable input
    /// count: CONCATENATION).
    pub(crate) fn has_input(&self, slot: usize) -> bool {
        self.op.inputs.get(slot).is_some_and(|&t| t != NO_TENSOR)
    }

    /// Latches `e` unless an earlier check already failed.
    #[cold]
    #[inline(never)]
    pub(crate) fn fail(&self, e: Error) {
        if self.failed.get().is_none() {
            self.failed.set(Some(e));
        }
    }

    /// Latches an invalid-operator error for `what`.
    #[cold]
    #[inline(never)]
    pub(crate) fn reject(&self, what: crate::Why) {
        self.fail(Error::InvalidOperator {
            index: self.index,
            what,
        });
    }

    /// Latches an invalid-operator error unless `ok`.
    #[inline(always)]
    pub(crate) fn check(&self, ok: bool, what: crate::Why) {
        if !ok {
            self.reject(what);
        }
    }

    /// The value of `r`, or (latching its error) `placeholder`.
    pub(crate) fn take<T>(&self, r: Result<T, Error>, placeholder: T) -> T {
        r.unwrap_or_else(|e| {
            self.fail(e);
            placeholder
        })
    }

    /// The first failure, if any check failed so far.
    pub(crate) fn result<T>(&self, value: T) -> Result<T, Error> {
        match self.failed.get() {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }

    /// [`Self::any_tensor`], which must have `dtype` and `storage`.
    #[inline(never)]
    pub(crate) fn tensor(&self, slot: usize, dtype: DType, storage: Storage) -> TensorInfo {
        let t = self.any_tensor(slot);
        self.check(
            t.record.dtype == dtype,
            why!("tensor has the wrong element type"),
        );
        self.check(
            t.record.storage == storage,
            why!("tensor is constant where an activation is expected, or vice versa"),
        );
        t
    }

    pub(crate) fn activation(&self, slot: usize, dtype: DType) -> TensorInfo {
        self.tensor(slot, dtype, Storage::Arena)
    }

    /// Input `slot` as a variable (state) tensor of `dtype`, which the operator reads and
    /// writes: it must not be any other of the operator's tensors.
    #[inline(never)]
    pub(crate) fn state(&self, slot: usize, dtype: DType) -> TensorInfo {
        let t = self.activation(slot, dtype);
        self.check(
            t.record.variable,
            why!("a state input must be a variable tensor"),
        );
        let index = self.op.inputs[slot];
        let named = |&(k, &other): &(usize, &u16)| k != slot && other == index;
        self.check(
            !self.op.inputs.iter().enumerate().any(|e| named(&e)),
            why!("a state tensor is also another input of the operator"),
        );
        t
    }

    pub(crate) fn output(&self, dtype: DType) -> TensorInfo {
        self.tensor(usize::MAX, dtype, Storage::Arena)
    }

    #[inline(never)]
    pub(crate) fn weights(&self, slot: usize) -> Tensor<'a, i8> {
        let t = self.tensor(slot, DType::I8, Storage::Constant);
        Tensor {
            data: self.take(self.model.constant(&t), &[]),
            shape: t.shape,
        }
    }

    /// A lookup table: constant uint8 input `slot` of exactly 256 entries.
    #[inline(never)]
    pub(crate) fn table(&self, slot: usize) -> &'a [u8; 256] {
        static PLACEHOLDER: [u8; 256] = [0; 256];
        let t = self.tensor(slot, DType::U8, Storage::Constant);
        let data: &'a [u8] = self.take(self.model.constant(&t), &[]);
        match data.try_into() {
            Ok(table) => table,
            Err(_) => {
                self.reject(why!("a lookup table must have 256 entries"));
                &PLACEHOLDER
            }
        }
    }

    /// Constant uint8 input `slot` of any length: constants a lowering folded into one.
    #[inline(never)]
    pub(crate) fn constant_bytes(&self, slot: usize) -> &'a [u8] {
        let t = self.tensor(slot, DType::U8, Storage::Constant);
        self.take(self.model.constant(&t), &[])
    }

    #[inline(never)]
    pub(crate) fn bias(&self, slot: usize, channels: usize) -> Option<&'a [i32]> {
        if self.op.inputs[slot] == NO_TENSOR {
            return None;
        }
        let t = self.tensor(slot, DType::I32, Storage::Constant);
        let bias: &[i32] = self.take(self.model.constant(&t), &[]);
        self.check(
            bias.len() == channels,
            why!("bias length differs from the output channels"),
        );
        Some(bias)
    }

    /// The requantization constants, `counts` (one of them) in number (after a failed check,
    /// maybe fewer).
    #[inline(never)]
    pub(crate) fn requant(&self, counts: &[usize]) -> &'a [QuantizedMultiplier] {
        let requant = self.take(self.model.requant(self.index, self.op), &[]);
        self.check(
            counts.contains(&requant.len()),
            why!("wrong number of requantization constants"),
        );
        self.check(
            requant
                .iter()
                .all(|q| (-31..=30).contains(&q.shift) && q.multiplier >= 0),
            why!("requantization constant out of range"),
        );
        requant
    }

    /// Exactly `N` requantization constants (zeros after a failed check).
    pub(crate) fn requant_array<const N: usize>(&self) -> [QuantizedMultiplier; N] {
        let zero = QuantizedMultiplier {
            multiplier: 0,
            shift: 0,
        };
        self.requant(&[N]).try_into().unwrap_or([zero; N])
    }

    /// The operator's planned scratch: inside the arena, word-aligned. (Parsing checks that
    /// no tensor live during the operator overlaps it.)
    #[inline(never)]
    pub(crate) fn scratch(&self) -> Scratch {
        let (offset, len) = (self.op.params[SCRATCH_OFFSET], self.op.params[SCRATCH_LEN]);
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            self.reject(why!("negative scratch offset or length"));
            return Scratch::default();
        };
        if len == 0 {
            return Scratch::default();
        }
        self.check(
            offset % 4 == 0 && offset.saturating_add(len) <= self.model.arena_size(),
            why!("scratch misaligned or past the arena's end"),
        );
        Scratch { offset, len }
    }

    /// The output's spatial size must come from sliding `kernel` over the input with `window`:
    /// at least one output, the padding smaller than the kernel, every window starting inside
    /// the padded input.
    #[inline(never)]
    pub(crate) fn check_spatial(
        &self,
        window: &Window,
        kernel: (usize, usize),
        input: Shape4,
        output: Shape4,
    ) {
        // Checked arithmetic throughout: these sizes come from the blob, and usize may be 32 bits.
        let ok_h = window.rows(input.h, kernel.0, output.h).is_consistent();
        let ok_w = window.cols(input.w, kernel.1, output.w).is_consistent();
        self.check(
            ok_h && ok_w,
            why!("output height/width do not follow from the input, kernel and window"),
        );
        self.check(
            input.n == output.n,
            why!("batch of input and output differ"),
        );
    }

    pub(crate) fn same_elements(&self, a: &TensorInfo, b: &TensorInfo) {
        self.check(
            a.shape.elements() == b.shape.elements(),
            why!("input and output sizes differ"),
        );
    }
}
