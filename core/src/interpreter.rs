//! Running a [`Model`] over a caller-owned arena: no heap, no allocation, no panics.

use crate::cast::{self, Element};
use crate::format::{DType, OpCode, Storage};
use crate::model::{Layer, Model, TensorInfo};
use crate::ops::operator::{Io, Views};
use crate::ops::{self, Tensor, TensorMut};
use crate::Error;
use core::ops::Range;

/// Called around every operator; lets firmware time each layer.
pub trait OpHook {
    /// Before operator `index` runs.
    fn before(&mut self, index: u16, op: OpCode);
    /// After operator `index` ran.
    fn after(&mut self, index: u16, op: OpCode);
}

/// The hook that does nothing.
impl OpHook for () {
    #[inline(always)]
    fn before(&mut self, _: u16, _: OpCode) {}
    #[inline(always)]
    fn after(&mut self, _: u16, _: OpCode) {}
}

/// Runs a model. The arena holds every activation at the offset the host planned.
#[derive(Debug)]
pub struct Interpreter<'m, 'a> {
    model: Model<'m>,
    arena: &'a mut [u8],
    /// Each operator decoded once (empty: decode each as it runs).
    decoded: &'a [Option<Layer<'m>>],
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// Binds a model to an arena of at least [`Model::arena_size`] bytes, 4-byte aligned.
    pub fn new(model: Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        if arena.len() < model.arena_size() {
            return Err(Error::BufferTooSmall {
                needed: model.arena_size(),
                actual: arena.len(),
            });
        }
        if arena.as_ptr().align_offset(4) != 0 {
            return Err(Error::BadLayout {
                what: why!("the arena must start on a 4-byte boundary"),
            });
        }
        let mut interpreter = Self {
            model,
            arena,
            decoded: &[],
        };
        interpreter.reset_state()?;
        Ok(interpreter)
    }

    /// [`Self::new`], with every operator decoded once, here, into `decoded` (at least
    /// [`Model::op_count`] slots of [`Self::DECODED_SLOT`] bytes each), as TFLite-Micro's
    /// Prepare does: invoke then reads them instead of decoding every operator from the blob
    /// again on every run, for that RAM.
    pub fn with_decoded(
        model: Model<'m>,
        arena: &'a mut [u8],
        decoded: &'a mut [Option<Layer<'m>>],
    ) -> Result<Self, Error> {
        let (ops, have) = (usize::from(model.op_count()), decoded.len());
        let Some(slots) = decoded.get_mut(..ops) else {
            return Err(Error::BufferTooSmall {
                needed: ops.saturating_mul(Self::DECODED_SLOT),
                actual: have.saturating_mul(Self::DECODED_SLOT),
            });
        };
        for (index, slot) in (0..model.op_count()).zip(slots.iter_mut()) {
            *slot = Some(model.layer(index)?);
        }
        let mut interpreter = Self::new(model, arena)?;
        interpreter.decoded = slots;
        Ok(interpreter)
    }

    /// Bytes of one slot of [`Self::with_decoded`]'s buffer.
    pub const DECODED_SLOT: usize = core::mem::size_of::<Option<Layer<'static>>>();

    /// The model being run.
    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Model input `i`'s description.
    pub fn input_info(&self, i: u16) -> Result<TensorInfo, Error> {
        self.model.input(i)
    }

    /// Model output `i`'s description.
    pub fn output_info(&self, i: u16) -> Result<TensorInfo, Error> {
        self.model.output(i)
    }

    /// Model input `i` as `T` (its element type: `i8`, `u8`, `i16`, `i32` or `f32`), to fill
    /// before [`invoke`](Self::invoke).
    pub fn input<T: Element>(&mut self, i: u16) -> Result<&mut [T], Error> {
        let t = self.model.input(i)?;
        self.view_mut(&t, T::DTYPE)
    }

    /// Model output `i` as `T` (its element type).
    pub fn output<T: Element>(&self, i: u16) -> Result<&[T], Error> {
        let t = self.model.output(i)?;
        self.view(&t, T::DTYPE)
    }

    /// Model input `i`'s bytes, whatever its type (elements little-endian, as the arena holds
    /// them).
    pub fn input_bytes(&mut self, i: u16) -> Result<&mut [u8], Error> {
        let t = self.model.input(i)?;
        self.view_mut(&t, t.dtype())
    }

    /// Model output `i`'s bytes, whatever its type.
    pub fn output_bytes(&self, i: u16) -> Result<&[u8], Error> {
        let t = self.model.output(i)?;
        self.view(&t, t.dtype())
    }

    /// Model input `i` as int8, to fill before [`invoke`](Self::invoke).
    pub fn input_i8(&mut self, i: u16) -> Result<&mut [i8], Error> {
        self.input(i)
    }

    /// Model input `i` as f32 (models that start with QUANTIZE).
    pub fn input_f32(&mut self, i: u16) -> Result<&mut [f32], Error> {
        self.input(i)
    }

    /// Model output `i` as int8.
    pub fn output_i8(&self, i: u16) -> Result<&[i8], Error> {
        self.output(i)
    }

    /// Model output `i` as f32 (models that end with DEQUANTIZE).
    pub fn output_f32(&self, i: u16) -> Result<&[f32], Error> {
        self.output(i)
    }

    /// Any arena tensor's current bytes as int8 (for inspection and on-device training).
    pub fn tensor_i8(&self, index: u16) -> Result<&[i8], Error> {
        let t = self.model.tensor(index)?;
        self.view(&t, DType::I8)
    }

    fn view<T: cast::Pod>(&self, t: &TensorInfo, dtype: DType) -> Result<&[T], Error> {
        if t.dtype() != dtype || t.record.storage != Storage::Arena {
            return Err(Error::WrongTensor {
                what: why!("tensor type differs from the one requested"),
            });
        }
        let bytes = self.arena.get(t.arena_range()).ok_or(Error::BadLayout {
            what: why!("tensor outside the arena"),
        })?;
        cast::slice(bytes).ok_or(Error::BadLayout {
            what: why!("tensor misaligned in the arena"),
        })
    }

    fn view_mut<T: cast::Pod>(&mut self, t: &TensorInfo, dtype: DType) -> Result<&mut [T], Error> {
        if t.dtype() != dtype || t.record.storage != Storage::Arena {
            return Err(Error::WrongTensor {
                what: why!("tensor type differs from the one requested"),
            });
        }
        cast::slice_mut(self.arena_bytes_mut(t)?).ok_or(Error::BadLayout {
            what: why!("tensor misaligned in the arena"),
        })
    }

    /// Arena tensor `t`'s bytes.
    fn arena_bytes_mut(&mut self, t: &TensorInfo) -> Result<&mut [u8], Error> {
        self.arena.get_mut(t.arena_range()).ok_or(Error::BadLayout {
            what: why!("tensor outside the arena"),
        })
    }

    /// Sets every variable (state) tensor to its zero point, as at the start: a streaming
    /// model forgets what it has seen. [`Self::new`] does it once.
    pub fn reset_state(&mut self) -> Result<(), Error> {
        for index in 0..self.model.tensor_count() {
            let t = self.model.tensor(index)?;
            if !t.record.variable {
                continue;
            }
            fill_zero_point(self.arena_bytes_mut(&t)?, t.dtype(), t.zero_point());
        }
        Ok(())
    }

    /// Runs every operator in order.
    pub fn invoke(&mut self) -> Result<(), Error> {
        self.invoke_with(&mut ())
    }

    /// Runs every operator, calling `hook` around each (per-layer profiling).
    pub fn invoke_with(&mut self, hook: &mut impl OpHook) -> Result<(), Error> {
        self.invoke_until(self.model.op_count(), hook)
    }

    /// Runs operators `0..end` only: a frozen backbone whose features feed a layer trained on
    /// the device. The input of operator `end` is then valid in the arena.
    pub fn invoke_until(&mut self, end: u16, hook: &mut impl OpHook) -> Result<(), Error> {
        if end > self.model.op_count() {
            return Err(Error::invalid_operator(end, why!("index out of range")));
        }
        for index in 0..end {
            self.run_operator(index, hook)?;
        }
        Ok(())
    }

    /// Runs part of an invoke, from where `progress` stands, until `budget` is spent; returns
    /// whether the invoke is complete (then `progress` starts over). An async task yields
    /// between calls, so a long inference does not stall its executor:
    ///
    /// ```text
    /// let mut progress = Progress::default();
    /// while !interpreter.invoke_some(&mut progress, Budget::Macs(50_000))? {
    ///     embassy_futures::yield_now().await;
    /// }
    /// ```
    ///
    /// Every call runs at least one operator, so an invoke always completes. Between calls
    /// the arena must not be touched (the inputs are read as the operators reach them).
    pub fn invoke_some(&mut self, progress: &mut Progress, budget: Budget) -> Result<bool, Error> {
        let count = self.model.op_count();
        let mut spent = 0u64;
        while progress.next < count {
            let index = progress.next;
            let work = match budget {
                Budget::Operators(_) => 1,
                Budget::Macs(_) => self.layer(index, |layer, model| layer.macs(model))?,
            };
            let limit = match budget {
                Budget::Operators(n) => u64::from(n),
                Budget::Macs(n) => n,
            };
            if spent > 0 && spent.saturating_add(work) > limit {
                return Ok(false);
            }
            // Progress moves before the run: an operator that fails is not retried forever.
            progress.next += 1;
            self.run_operator(index, &mut ())?;
            spent = spent.saturating_add(work.max(1));
        }
        progress.next = 0;
        Ok(true)
    }

    /// Runs operator `index` with `hook` around it.
    fn run_operator(&mut self, index: u16, hook: &mut impl OpHook) -> Result<(), Error> {
        let decoded;
        let layer = match self.decoded.get(usize::from(index)) {
            Some(Some(layer)) => layer,
            _ => {
                decoded = self.model.layer(index)?;
                &decoded
            }
        };
        let opcode = layer.opcode();
        hook.before(index, opcode);
        // By reference: the layer stays in this frame, which every kernel's sits below.
        layer.run(self.arena, &self.model)?;
        hook.after(index, opcode);
        Ok(())
    }

    /// `f` applied to operator `index`'s layer (decoded already, or now).
    fn layer<T>(
        &self,
        index: u16,
        f: impl FnOnce(&Layer<'m>, &Model<'m>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match self.decoded.get(usize::from(index)) {
            Some(Some(layer)) => f(layer, &self.model),
            _ => f(&self.model.layer(index)?, &self.model),
        }
    }
}

/// Where a resumable invoke ([`Interpreter::invoke_some`]) stands: the next operator to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    next: u16,
}

impl Progress {
    /// The next operator to run (0: an invoke starts, or the last one completed).
    pub fn next_operator(&self) -> u16 {
        self.next
    }
}

/// How much of an invoke [`Interpreter::invoke_some`] runs before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// This many operators.
    Operators(u16),
    /// Operators until their multiply-accumulates would pass this many (operators without
    /// MACs, such as ADD or a pooling layer, count as one).
    Macs(u64),
}

/// Orders `parts[a]` and `parts[b]` by address (a step of a sorting network: no indexing
/// that could panic once inlined with constant indices).
#[inline(always)]
fn sort_pair(parts: &mut [(Range<usize>, u8); 4], a: usize, b: usize) {
    let key = |p: &(Range<usize>, u8)| (p.0.start, p.0.end);
    if let (Some(x), Some(y)) = (parts.get(a), parts.get(b)) {
        if key(y) < key(x) {
            parts.swap(a, b);
        }
    }
}

/// Fills a tensor's bytes with its zero point (int8, uint8 and int16; other types with 0).
fn fill_zero_point(bytes: &mut [u8], dtype: DType, zero_point: i32) {
    match dtype {
        DType::I8 | DType::U8 => bytes.fill(zero_point as u8),
        DType::I16 => {
            let le = (zero_point as i16).to_le_bytes();
            for pair in bytes.chunks_exact_mut(2) {
                pair.copy_from_slice(&le);
            }
        }
        DType::I32 | DType::F32 => bytes.fill(0),
    }
}

/// Borrows an operator's inputs (shared), output and scratch (exclusive) from the one arena.
/// The plan guarantees the output's and the scratch's bytes are disjoint from each other and
/// from every input's; this checks it again so a bad plan is an error, and splits the arena
/// without unsafe code. Inlined into each operator's caller, so the views are built in place
/// rather than copied.
#[inline(always)]
pub(crate) fn views<'x, I: cast::Pod, O: cast::Pod>(
    arena: &'x mut [u8],
    model: &Model<'_>,
    io: Io,
) -> Result<Views<'x, I, O>, Error> {
    // State tensors (if any) are views_with_state's; run_layer picks by operator.
    let Io {
        inputs,
        output,
        scratch,
        state: _,
    } = io;
    let out_info = model.tensor(output)?;
    let out_range = out_info.arena_range();
    // No scratch: an empty range just past the output.
    let scratch_range = match scratch.len {
        0 => out_range.end..out_range.end,
        _ => scratch.range(),
    };
    let out_first = out_range.start <= scratch_range.start;
    let (lo, hi) = match out_first {
        true => (out_range.clone(), scratch_range),
        false => (scratch_range, out_range.clone()),
    };
    let overlap = Error::PlanOverlap {
        first: output,
        second: output,
    };
    // [0, lo) shared | lo exclusive | [lo.end, hi) shared | hi exclusive | [hi.end, ..) shared
    // (checked splits: a bad plan is an error, never a panic).
    let gap = hi.start.checked_sub(lo.end).ok_or(overlap)?;
    let (before, rest) = arena.split_at_mut_checked(lo.start).ok_or(overlap)?;
    let (lo_bytes, rest) = rest.split_at_mut_checked(lo.len()).ok_or(overlap)?;
    let (between, rest) = rest.split_at_mut_checked(gap).ok_or(overlap)?;
    let (hi_bytes, after) = rest.split_at_mut_checked(hi.len()).ok_or(overlap)?;
    let shared: [(usize, &'x [u8]); 3] = [(0, before), (lo.end, between), (hi.end, after)];
    let pick = |range: Range<usize>| -> Result<&'x [u8], Error> {
        shared
            .iter()
            .find_map(|&(at, bytes)| {
                let start = range.start.checked_sub(at)?;
                bytes.get(start..start + range.len())
            })
            .ok_or(Error::PlanOverlap {
                first: output,
                second: output,
            })
    };
    let empty = Tensor {
        data: &[][..],
        shape: ops::Shape4::default(),
    };
    let mut views = [empty; crate::format::MAX_OP_INPUTS];
    for (view, index) in views.iter_mut().zip(inputs) {
        if let Some(index) = index {
            let info = model.tensor(index)?;
            let data = cast::slice(pick(info.arena_range())?).ok_or(Error::BadLayout {
                what: why!("tensor misaligned in the arena"),
            })?;
            *view = Tensor {
                data,
                shape: info.shape,
            };
        }
    }
    let (out_bytes, scratch_bytes) = match out_first {
        true => (lo_bytes, hi_bytes),
        false => (hi_bytes, lo_bytes),
    };
    let out = TensorMut {
        data: cast::slice_mut(out_bytes).ok_or(Error::BadLayout {
            what: why!("tensor misaligned in the arena"),
        })?,
        shape: out_info.shape,
    };
    Ok(Views {
        inputs: views,
        output: out,
        scratch: scratch_bytes,
        state: [&mut [], &mut []],
    })
}

/// [`views`] for an operator with state tensors: four exclusive ranges (output, scratch, two
/// states; an absent one is empty), split off the arena in address order.
#[inline(never)]
pub(crate) fn views_with_state<'x, I: cast::Pod, O: cast::Pod>(
    arena: &'x mut [u8],
    model: &Model<'_>,
    io: Io,
) -> Result<Views<'x, I, O>, Error> {
    let overlap = Error::PlanOverlap {
        first: io.output,
        second: io.output,
    };
    let out_info = model.tensor(io.output)?;
    let out_range = out_info.arena_range();
    let empty = out_range.end..out_range.end;
    let range_of = |index: Option<u16>| -> Result<Range<usize>, Error> {
        Ok(match index {
            Some(index) => model.tensor(index)?.arena_range(),
            None => empty.clone(),
        })
    };
    let scratch = match io.scratch.len {
        0 => empty.clone(),
        _ => io.scratch.range(),
    };
    // The exclusive ranges in address order, each with its slot (output, scratch, states).
    let mut parts = [
        (out_range, 0u8),
        (scratch, 1),
        (range_of(io.state[0])?, 2),
        (range_of(io.state[1])?, 3),
    ];
    sort_pair(&mut parts, 0, 1);
    sort_pair(&mut parts, 2, 3);
    sort_pair(&mut parts, 0, 2);
    sort_pair(&mut parts, 1, 3);
    sort_pair(&mut parts, 1, 2);
    // Shared gaps before, between and after the exclusive ranges, each with its offset.
    let mut shared: [(usize, &'x [u8]); 5] = [(0, &[]); 5];
    let mut exclusive: [&'x mut [u8]; 4] = [&mut [], &mut [], &mut [], &mut []];
    let (mut rest, mut at) = (arena, 0usize);
    let mut gaps = shared.iter_mut();
    for (range, slot) in parts {
        let before = range.start.checked_sub(at).ok_or(overlap)?;
        let (head, tail) = rest.split_at_mut_checked(before).ok_or(overlap)?;
        let (mine, tail) = tail.split_at_mut_checked(range.len()).ok_or(overlap)?;
        if let Some(gap) = gaps.next() {
            *gap = (at, head);
        }
        if let Some(part) = exclusive.get_mut(usize::from(slot)) {
            *part = mine;
        }
        (rest, at) = (tail, range.end);
    }
    if let Some(gap) = gaps.next() {
        *gap = (at, rest);
    }
    let mut views = [Tensor {
        data: &[][..],
        shape: ops::Shape4::default(),
    }; crate::format::MAX_OP_INPUTS];
    for (view, index) in views.iter_mut().zip(io.inputs) {
        if let Some(index) = index {
            let info = model.tensor(index)?;
            let range = info.arena_range();
            let bytes = shared
                .iter()
                .find_map(|&(at, bytes)| {
                    let start = range.start.checked_sub(at)?;
                    bytes.get(start..start + range.len())
                })
                .ok_or(overlap)?;
            *view = Tensor {
                data: cast::slice(bytes).ok_or(Error::BadLayout {
                    what: why!("tensor misaligned in the arena"),
                })?,
                shape: info.shape,
            };
        }
    }
    let [out_bytes, scratch_bytes, state0, state1] = exclusive;
    Ok(Views {
        inputs: views,
        output: TensorMut {
            data: cast::slice_mut(out_bytes).ok_or(Error::BadLayout {
                what: why!("tensor misaligned in the arena"),
            })?,
            shape: out_info.shape,
        },
        scratch: scratch_bytes,
        state: [state0, state1],
    })
}
