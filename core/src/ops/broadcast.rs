//! What the binary element-wise operators (ADD, SUB, MUL, SQUARED_DIFFERENCE, MAXIMUM,
//! MINIMUM) share: TFLite's broadcasting, operands that are constants, and the loops.
//!
//! Broadcasting follows TFLite: shapes are right-aligned (NHWC, lower ranks last) and each
//! dimension of an input equals the output's or is 1. Which input element an output element
//! reads never changes the arithmetic, so any order of visiting them gives TFLite-Micro's bytes.
//! [`Broadcast`] merges the dimensions in which both inputs advance alike into runs: one run for
//! same-shape inputs, and runs along which one input repeats (a scalar, `x + bias[c]`, ...).
//! Every run goes to one of the operator's [`Binary`] loops, which know nothing of shapes.
//!
//! An input repeated over a long run is a function of the other input's int8 value alone: its
//! 256 outputs are tabulated once and the run becomes a table lookup per element, exact by
//! construction. A per-channel operand (`x * scale[c]`) is walked channel by channel so that
//! each channel's table serves every position, unless the operator has a fast loop over rows
//! of channels ([`Binary::fast_runs`], [`Binary::rows`]: ADD, SUB and MUL), which computes each
//! element in fewer instructions than a table costs to build per channel.

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Views};
use super::{Shape4, Tensor};
use crate::format::{DType, Storage};
use crate::model::{Decoder, Model, Scratch};
use crate::Error;

/// Elements from which a run repeating one input is tabulated (building a table costs about
/// 256 elements' work).
const TABLE_FROM: usize = 512;

/// Run length from which an operator's fast loop over runs of both inputs beats tabulating a
/// per-channel operand channel by channel (see [`Binary::fast_runs`]).
pub(crate) const FAST_RUN: usize = 16;

/// One input of a binary operator: an activation in the arena, or a constant in the blob.
#[derive(Debug, Clone, Copy)]
pub enum Operand<'a> {
    /// Arena tensor index.
    Arena(u16),
    /// Constant elements and their dimensions (NHWC), kept small: a decoded layer's size is
    /// every layer's RAM.
    Constant(&'a [i8], [u16; 4]),
}

impl<'a> Operand<'a> {
    /// Input `slot` of the operator `d` decodes: int8, an activation or a constant; and its
    /// shape.
    pub(crate) fn decode(d: &Decoder<'_, 'a>, slot: usize) -> (Self, Shape4) {
        let t = d.any_tensor(slot);
        d.check(
            t.record.dtype == DType::I8,
            why!("tensor has the wrong element type"),
        );
        let operand = match t.record.storage {
            Storage::Constant => {
                let dims = dims(t.shape).map(|v| u16::try_from(v).unwrap_or(0));
                d.check(
                    dims.iter().all(|&v| v > 0),
                    why!("a constant operand's dimension is 0 or above 65535"),
                );
                Operand::Constant(d.weights(slot).data, dims)
            }
            _ => Operand::Arena(d.activation(slot, DType::I8).index),
        };
        (operand, t.shape)
    }

    /// Its arena tensor, if it is one.
    pub fn arena(&self) -> Option<u16> {
        match self {
            Operand::Arena(index) => Some(*index),
            Operand::Constant(..) => None,
        }
    }

    /// Its elements and shape: the constant's, or `view` (the arena input the interpreter
    /// borrowed).
    pub fn tensor<'x>(&self, view: Tensor<'x, i8>) -> Tensor<'x, i8>
    where
        'a: 'x,
    {
        match self {
            Operand::Arena(_) => view,
            Operand::Constant(data, [n, h, w, c]) => Tensor {
                data,
                shape: Shape4::new((*n).into(), (*h).into(), (*w).into(), (*c).into()),
            },
        }
    }
}

/// A binary operator's tensors, decoded: its two operands and its output. (The walk over
/// them is rebuilt from their shapes at each run: it is larger than they are.)
#[derive(Debug, Clone, Copy)]
pub struct BinaryIo<'a> {
    /// Input 1.
    pub a: Operand<'a>,
    /// Input 2.
    pub b: Operand<'a>,
    /// Output tensor.
    pub output: u16,
    /// Planned scratch (the operator's `scratch_need`; empty for most).
    pub scratch: Scratch,
}

impl<'a> BinaryIo<'a> {
    /// Decodes inputs 0 and 1 (int8 activations or constants) and the int8 output, which must
    /// have the shape they broadcast to.
    pub(crate) fn decode(d: &Decoder<'_, 'a>) -> Self {
        let (a, sa) = Operand::decode(d, 0);
        let (b, sb) = Operand::decode(d, 1);
        let output = d.output(DType::I8);
        d.check(
            Broadcast::new(sa, sb, output.shape).is_some(),
            why!("output shape is not the inputs' broadcast shape"),
        );
        Self {
            a,
            b,
            output: output.index,
            scratch: d.scratch(),
        }
    }

    /// Its arena tensors (constants are not among them).
    pub fn io(&self) -> Io {
        Io {
            inputs: [self.a.arena(), self.b.arena(), None, None],
            output: self.output,
            scratch: self.scratch,
            state: [None; 2],
        }
    }

    /// The walk over its tensors' shapes in `model` (`None` if they do not broadcast).
    pub(crate) fn walk(&self, model: &Model<'_>) -> Result<Option<Broadcast>, Error> {
        let shape = |o: &Operand<'_>| -> Result<Shape4, Error> {
            Ok(match o {
                Operand::Arena(i) => model.tensor(*i)?.shape,
                Operand::Constant(_, [n, h, w, c]) => {
                    Shape4::new((*n).into(), (*h).into(), (*w).into(), (*c).into())
                }
            })
        };
        let out = model.tensor(self.output)?.shape;
        Ok(Broadcast::new(shape(&self.a)?, shape(&self.b)?, out))
    }

    /// Runs `op` over the views the interpreter borrowed.
    pub(crate) fn run<B: Binary>(&self, op: &B, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let a = self.a.tensor(v.inputs[0]);
        let b = self.b.tensor(v.inputs[1]);
        let walk =
            Broadcast::new(a.shape, b.shape, v.output.shape).ok_or(Error::InvalidParameter {
                what: why!("output shape is not the inputs' broadcast shape"),
            })?;
        op.run_walk((&walk, a.data, b.data, v.output.data), v.scratch)
    }
}

/// Checks a binary operator's TFLite tensors: int8 inputs 0 and 1 (activations or
/// constants), an int8 output of the shape they broadcast to. Returns the inputs' ids.
pub(crate) fn lower_binary(cx: &Lowering<'_>) -> Result<(usize, usize), LowerError> {
    let a = cx.int8_io(0)?;
    let b = cx.input(1)?;
    let tb = cx.typed(b, DType::I8, "input")?;
    let ta = cx.tensor(a)?;
    if ta.dims.len() > 4 || tb.dims.len() > 4 {
        return Err(LowerError::Unsupported {
            what: "broadcasting beyond rank 4 is not supported",
        });
    }
    let shape = Broadcast::output_shape(ta.shape, tb.shape).ok_or(LowerError::Unsupported {
        what: "the input shapes do not broadcast (a dimension differs and is not 1)",
    })?;
    cx.expect_output(shape)?;
    Ok((a, b))
}

/// [`lower_binary`], then each input's and the output's per-tensor scale and zero point.
pub(crate) fn lower_binary_quantized(cx: &Lowering<'_>) -> Result<[(f32, i32); 3], LowerError> {
    let (a, b) = lower_binary(cx)?;
    Ok([
        cx.per_tensor(a)?,
        cx.per_tensor(b)?,
        cx.per_tensor(cx.output())?,
    ])
}

/// One dimension of the output as the loops walk it: its size and each input's stride (0
/// where the input repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dim {
    size: usize,
    a: usize,
    b: usize,
}

const UNIT: Dim = Dim {
    size: 1,
    a: 0,
    b: 0,
};

/// How a binary operator's output elements find their inputs: up to three outer dimensions and
/// an innermost run, along which each input either advances (step 1) or repeats (step 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broadcast {
    /// Outer dimensions, outermost first (unused ones have size 1).
    outer: [Dim; 3],
    /// The run: its length and each input's step (0 or 1).
    run: Dim,
    /// Elements of input 1, input 2 and the output.
    lens: [usize; 3],
}

/// The dimensions of `s`, outermost first.
fn dims(s: Shape4) -> [usize; 4] {
    [s.n, s.h, s.w, s.c]
}

/// Row-major strides of `s`, 0 along the dimensions where it has size 1.
fn strides(s: Shape4) -> [usize; 4] {
    let d = dims(s);
    let mut strides = [0; 4];
    let mut step = 1usize;
    for i in (0..4).rev() {
        strides[i] = if d[i] == 1 { 0 } else { step };
        step = step.saturating_mul(d[i]);
    }
    strides
}

impl Broadcast {
    /// The output shape TFLite broadcasts `a` and `b` to, or `None` if a dimension differs
    /// without being 1 (or is 0).
    pub fn output_shape(a: Shape4, b: Shape4) -> Option<Shape4> {
        let (da, db) = (dims(a), dims(b));
        let mut out = [0; 4];
        for i in 0..4 {
            out[i] = match (da[i], db[i]) {
                (0, _) | (_, 0) => return None,
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return None,
            };
        }
        Some(Shape4::new(out[0], out[1], out[2], out[3]))
    }

    /// The walk for inputs `a`, `b` and output `out`; `None` unless `out` is what they
    /// broadcast to and every size fits `usize`.
    pub fn new(a: Shape4, b: Shape4, out: Shape4) -> Option<Self> {
        if Self::output_shape(a, b)? != out {
            return None;
        }
        let lens = [a.elements()?, b.elements()?, out.elements()?];
        let (sa, sb, so) = (strides(a), strides(b), dims(out));
        // From the innermost dimension out, merging each into the one inside it when both
        // inputs step across the boundary as they step inside.
        let mut merged = [UNIT; 4];
        let mut count = 0;
        for i in (0..4).rev() {
            let d = Dim {
                size: so[i],
                a: sa[i],
                b: sb[i],
            };
            if d.size == 1 {
                continue;
            }
            if count > 0 {
                let inner = &mut merged[count - 1];
                if d.a == inner.a * inner.size && d.b == inner.b * inner.size {
                    inner.size *= d.size;
                    continue;
                }
            }
            merged[count] = d;
            count += 1;
        }
        // merged[0] is the run; merged[1..count] the outer dimensions, innermost first.
        let mut outer = [UNIT; 3];
        for (slot, d) in outer.iter_mut().rev().zip(&merged[1..count.max(1)]) {
            *slot = *d;
        }
        Some(Self {
            outer,
            run: merged[0],
            lens,
        })
    }

    /// Elements of the output.
    pub(crate) fn output_len(&self) -> usize {
        self.lens[2]
    }

    /// Whether the walk is made of runs of at least `min` elements along which both inputs
    /// advance (same shapes, or a per-channel operand with at least `min` channels).
    pub(crate) fn runs_both(&self, min: usize) -> bool {
        (self.run.a, self.run.b) == (1, 1) && self.run.size >= min
    }

    /// Runs `op` over the whole output; `scratch` is the operator's planned scratch.
    pub(crate) fn run<B: Binary>(
        &self,
        op: &B,
        a: &[i8],
        b: &[i8],
        out: &mut [i8],
        scratch: &mut [u8],
    ) -> Result<(), Error> {
        for (len, expected) in [a.len(), b.len(), out.len()].into_iter().zip(self.lens) {
            if len != expected {
                return Err(Error::LengthMismatch {
                    expected,
                    actual: len,
                });
            }
        }
        let run = self.run;
        let single = self.outer.iter().all(|d| d.size == 1);
        if single && run.a == 1 && run.b == 1 {
            let rest = op.whole(a, b, out, scratch);
            // Skipping the run walk when nothing is left keeps its frame off the stack.
            return match rest {
                0 => Ok(()),
                _ => self.range(op, a, b, out, rest),
            };
        }
        if op.fast_runs(run.size) {
            let rows = self.per_channel_form(a, b, out).is_some();
            if rows && op.rows(a, b, out, run.size) {
                return Ok(());
            }
        } else if self.per_channel(op, a, b, out).is_some() {
            return Ok(());
        }
        self.range(op, a, b, out, out.len())
    }

    /// The output's first `end` elements, run by run.
    fn range<B: Binary>(
        &self,
        op: &B,
        a: &[i8],
        b: &[i8],
        out: &mut [i8],
        end: usize,
    ) -> Result<(), Error> {
        let run = self.run;
        let [d0, d1, d2] = self.outer;
        let bad = Error::InvalidParameter {
            what: why!("broadcast walk out of bounds"),
        };
        let mut start = 0;
        for i0 in 0..d0.size {
            for i1 in 0..d1.size {
                for i2 in 0..d2.size {
                    if start >= end {
                        return Ok(());
                    }
                    let len = run.size.min(end - start);
                    let at_a = i0 * d0.a + i1 * d1.a + i2 * d2.a;
                    let at_b = i0 * d0.b + i1 * d1.b + i2 * d2.b;
                    let o = out.get_mut(start..start + len).ok_or(bad)?;
                    let a_run = a.get(at_a..at_a + len * run.a).ok_or(bad)?;
                    let b_run = b.get(at_b..at_b + len * run.b).ok_or(bad)?;
                    let (x, y) = (a.get(at_a).ok_or(bad)?, b.get(at_b).ok_or(bad)?);
                    match (run.a, run.b) {
                        (1, 1) => op.vv(a_run, b_run, o),
                        (1, _) => repeat_run(op, a_run, *y, false, o),
                        (_, 1) => repeat_run(op, b_run, *x, true, o),
                        _ => o.fill(op.one(*x, *y)),
                    }
                    start += len;
                }
            }
        }
        Ok(())
    }

    /// A per-channel operand (one input is `[C]` repeated over positions, the other the whole
    /// output): channel by channel, each channel's table serving every position. `None` (and
    /// nothing written) if the layer is not of that form or too short to pay.
    fn per_channel<B: Binary>(&self, op: &B, a: &[i8], b: &[i8], out: &mut [i8]) -> Option<()> {
        if self.outer[2].size < TABLE_FROM {
            return None;
        }
        let channels = self.run.size;
        let (full, repeated, swapped) = self.per_channel_form(a, b, out)?;
        for (c, &y) in repeated.iter().enumerate() {
            let xs = full.get(c..)?.iter().step_by(channels);
            let os = out.get_mut(c..)?.iter_mut().step_by(channels);
            repeat(op, xs, y, swapped, os);
        }
        Some(())
    }
}

impl Broadcast {
    /// The row length if the output is rows along which both inputs advance, each input
    /// either the whole output or one row repeated (same shapes: one row; a per-channel
    /// operand: rows of its channels). `None` for other walks or mismatched slices.
    pub(crate) fn rows_of(&self, a: &[i8], b: &[i8], out: &[i8]) -> Option<usize> {
        let one_run = self.outer.iter().all(|d| d.size == 1) && (self.run.a, self.run.b) == (1, 1);
        if one_run && a.len() == out.len() && b.len() == out.len() {
            return Some(out.len());
        }
        self.per_channel_form(a, b, out).map(|_| self.run.size)
    }

    /// If one input is `[C]` repeated over positions and the other the whole output (checked
    /// against the slices' lengths): `(full, repeated, swapped)`, `swapped` if the repeated one
    /// is input 1.
    fn per_channel_form<'s>(
        &self,
        a: &'s [i8],
        b: &'s [i8],
        out: &[i8],
    ) -> Option<(&'s [i8], &'s [i8], bool)> {
        let [d0, d1, outer] = self.outer;
        let (run, channels) = (self.run, self.run.size);
        if d0.size != 1 || d1.size != 1 || run.a != 1 || run.b != 1 {
            return None;
        }
        let (full, repeated, swapped) = match (outer.a, outer.b) {
            (0, s) if s == channels => (b, a, true),
            (s, 0) if s == channels => (a, b, false),
            _ => return None,
        };
        (repeated.len() == channels && full.len() == out.len()).then_some((full, repeated, swapped))
    }
}

/// [`repeat`] for a contiguous run: its table lookups are the assembly loop of
/// `binary_fast::lookup` where there is one.
fn repeat_run<B: Binary>(op: &B, xs: &[i8], y: i8, swapped: bool, out: &mut [i8]) {
    if xs.len() < TABLE_FROM {
        return repeat(op, xs.iter(), y, swapped, out.iter_mut());
    }
    let mut t = [0i8; 256];
    table(op, y, swapped, &mut t);
    super::binary_fast::lookup(&t, xs, out);
}

/// `table` = `op(x, y)` (or `op(y, x)` if `swapped`) for every int8 `x`, indexed by its bits: 0..=127,
/// then -128..=-1. Out of line: one copy of the operator's arithmetic serves every caller.
#[inline(never)]
fn table<B: Binary>(op: &B, y: i8, swapped: bool, table: &mut [i8; 256]) {
    for (t, v) in table.iter_mut().zip(0..=255u8) {
        *t = match swapped {
            false => op.one(v as i8, y),
            true => op.one(y, v as i8),
        };
    }
}

/// `out[i] = op(xs[i], y)` (or `op(y, xs[i])` if `swapped`): tabulated when long.
fn repeat<'x, 'o, B: Binary>(
    op: &B,
    xs: impl ExactSizeIterator<Item = &'x i8>,
    y: i8,
    swapped: bool,
    out: impl Iterator<Item = &'o mut i8>,
) {
    let f = |x: i8| match swapped {
        false => op.one(x, y),
        true => op.one(y, x),
    };
    if xs.len() < TABLE_FROM {
        for (o, &x) in out.zip(xs) {
            *o = f(x);
        }
        return;
    }
    let mut t = [0i8; 256];
    table(op, y, swapped, &mut t);
    for (o, &x) in out.zip(xs) {
        *o = t[usize::from(x as u8)];
    }
}

/// A binary element-wise int8 operator's arithmetic: one element (the reference, TFLite-Micro's
/// formula) and the loops over runs, which must give exactly what it gives.
pub(crate) trait Binary {
    /// One output element from an element of each input.
    fn one(&self, x: i8, y: i8) -> i8;

    /// Same-length runs of both inputs.
    #[inline(always)]
    fn vv(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = self.one(x, y);
        }
    }

    /// Whether [`Self::vv`] on runs of `len` elements is fast enough that a per-channel operand
    /// is best walked run by run (one run per position) rather than tabulated per channel.
    fn fast_runs(&self, _len: usize) -> bool {
        false
    }

    /// A per-channel operand: `out` in rows of `row` elements, each input either as long as
    /// `out` or one row long (repeated every row). An operator with a loop for it runs it and
    /// returns `true`; `false` (the default) leaves `out` to the runs.
    fn rows(&self, _a: &[i8], _b: &[i8], _out: &mut [i8], _row: usize) -> bool {
        false
    }

    /// Runs the whole `walk` over inputs `a`, `b` and the output `out`, given the operator's
    /// planned scratch: an operator may first prepare something there (ADD's tables).
    fn run_walk(
        &self,
        (walk, a, b, out): (&Broadcast, &[i8], &[i8], &mut [i8]),
        scratch: &mut [u8],
    ) -> Result<(), Error>
    where
        Self: Sized,
    {
        walk.run(self, a, b, out, scratch)
    }

    /// Same-shape inputs (the whole output is one run): an operator's faster path may compute
    /// a tail of the output, using the planned `scratch`, and return how many leading elements
    /// it left to [`Self::vv`].
    fn whole(&self, _a: &[i8], _b: &[i8], out: &mut [i8], _scratch: &mut [u8]) -> usize {
        out.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::Rng;
    use std::vec::Vec;

    /// The output TFLite's nested loops give: for each output index, the broadcast input
    /// indices (the textbook walk, no merging).
    pub(crate) fn naive<B: Binary>(op: &B, sa: Shape4, a: &[i8], sb: Shape4, b: &[i8]) -> Vec<i8> {
        let so = Broadcast::output_shape(sa, sb).unwrap();
        let (da, db, dout) = (dims(sa), dims(sb), dims(so));
        let index = |d: [usize; 4], i: [usize; 4]| {
            let mut at = 0;
            for k in 0..4 {
                at = at * d[k] + if d[k] == 1 { 0 } else { i[k] };
            }
            at
        };
        let mut out = Vec::new();
        for n in 0..dout[0] {
            for h in 0..dout[1] {
                for w in 0..dout[2] {
                    for c in 0..dout[3] {
                        let i = [n, h, w, c];
                        out.push(op.one(a[index(da, i)], b[index(db, i)]));
                    }
                }
            }
        }
        out
    }

    /// A random shape pair that broadcasts: each dimension shared, or 1 on one side.
    pub(crate) fn shapes(rng: &mut Rng, big: bool) -> (Shape4, Shape4) {
        let mut da = [1; 4];
        let mut db = [1; 4];
        for k in 0..4 {
            let size = match big && k >= 2 {
                true => 1 + (rng.next() % 40) as usize,
                false => 1 + (rng.next() % 4) as usize,
            };
            match rng.next() % 4 {
                0 => da[k] = size,
                1 => db[k] = size,
                _ => (da[k], db[k]) = (size, size),
            }
        }
        let s = |d: [usize; 4]| Shape4::new(d[0], d[1], d[2], d[3]);
        (s(da), s(db))
    }

    /// Checks `op`'s loops against the naive walk on random shapes (small ones, long runs and
    /// the per-channel and scalar forms that take tables).
    pub(crate) fn check_against_naive<B: Binary>(op: &B, rng: &mut Rng, cases: usize) {
        let specials = [
            (Shape4::new(1, 24, 24, 8), Shape4::new(1, 1, 1, 8)),
            (Shape4::new(1, 1, 1, 8), Shape4::new(1, 24, 24, 8)),
            (Shape4::new(1, 30, 30, 3), Shape4::new(1, 1, 1, 1)),
            (Shape4::new(1, 1, 1, 1), Shape4::new(1, 30, 30, 3)),
            (Shape4::new(1, 4, 4, 8), Shape4::new(1, 4, 1, 1)),
            (Shape4::new(2, 40, 40, 3), Shape4::new(2, 40, 40, 3)),
            (Shape4::new(1, 1, 700, 1), Shape4::new(1, 1, 700, 1)),
            (Shape4::new(1, 1, 1, 1), Shape4::new(1, 1, 1, 1)),
            (Shape4::new(1, 6, 6, 32), Shape4::new(1, 1, 1, 32)),
            (Shape4::new(1, 1, 1, 20), Shape4::new(1, 5, 7, 20)),
            (Shape4::new(1, 1, 1, 1), Shape4::new(1, 1, 1, 1027)),
        ];
        for case in 0..cases {
            let (sa, sb) = match specials.get(case) {
                Some(&pair) => pair,
                None => shapes(rng, case % 3 == 0),
            };
            let a: Vec<i8> = (0..sa.elements().unwrap())
                .map(|_| rng.next() as i8)
                .collect();
            let b: Vec<i8> = (0..sb.elements().unwrap())
                .map(|_| rng.next() as i8)
                .collect();
            let so = Broadcast::output_shape(sa, sb).unwrap();
            let want = naive(op, sa, &a, sb, &b);
            let mut got = std::vec![0i8; want.len()];
            let walk = Broadcast::new(sa, sb, so).unwrap();
            walk.run(op, &a, &b, &mut got, &mut []).unwrap();
            assert_eq!(got, want, "{sa:?} {sb:?}");
        }
    }

    /// Records which inputs each output reads.
    struct Pair;
    impl Binary for Pair {
        fn one(&self, x: i8, y: i8) -> i8 {
            x.wrapping_mul(3).wrapping_add(y)
        }
    }

    #[test]
    fn broadcasting_walks_like_the_nested_loops() {
        check_against_naive(&Pair, &mut Rng(0xB0AD_CA57), 400);
    }

    #[test]
    fn runs_merge_where_both_inputs_advance_alike() {
        let s = Shape4::new;
        let same = Broadcast::new(s(2, 3, 4, 5), s(2, 3, 4, 5), s(2, 3, 4, 5)).unwrap();
        assert_eq!(
            same.run,
            Dim {
                size: 120,
                a: 1,
                b: 1
            }
        );
        assert!(same.outer.iter().all(|d| d.size == 1));
        let scalar = Broadcast::new(s(1, 4, 4, 8), s(1, 1, 1, 1), s(1, 4, 4, 8)).unwrap();
        assert_eq!(
            scalar.run,
            Dim {
                size: 128,
                a: 1,
                b: 0
            }
        );
        let per_channel = Broadcast::new(s(1, 4, 4, 8), s(1, 1, 1, 8), s(1, 4, 4, 8)).unwrap();
        assert_eq!(
            per_channel.run,
            Dim {
                size: 8,
                a: 1,
                b: 1
            }
        );
        assert_eq!(
            per_channel.outer[2],
            Dim {
                size: 16,
                a: 8,
                b: 0
            }
        );
        let rows = Broadcast::new(s(1, 4, 4, 8), s(1, 4, 1, 1), s(1, 4, 4, 8)).unwrap();
        assert_eq!(
            rows.run,
            Dim {
                size: 32,
                a: 1,
                b: 0
            }
        );
        assert_eq!(
            rows.outer[2],
            Dim {
                size: 4,
                a: 32,
                b: 1
            }
        );
    }

    #[test]
    fn shapes_that_do_not_broadcast_are_refused() {
        let s = Shape4::new;
        assert_eq!(Broadcast::output_shape(s(1, 2, 3, 4), s(1, 1, 3, 5)), None);
        assert_eq!(Broadcast::output_shape(s(1, 2, 3, 0), s(1, 2, 3, 1)), None);
        assert_eq!(
            Broadcast::output_shape(s(1, 2, 1, 4), s(3, 1, 5, 1)),
            Some(s(3, 2, 5, 4))
        );
        // The output must be the broadcast shape, not merely as large.
        assert_eq!(
            Broadcast::new(s(1, 1, 1, 4), s(1, 1, 1, 4), s(1, 1, 4, 1)),
            None
        );
        let walk = Broadcast::new(s(1, 1, 1, 4), s(1, 1, 1, 1), s(1, 1, 1, 4)).unwrap();
        let mut out = [0i8; 4];
        assert!(walk
            .run(&Pair, &[1, 2, 3], &[1], &mut out, &mut [])
            .is_err());
        assert!(walk
            .run(&Pair, &[1, 2, 3, 4], &[1, 2], &mut out, &mut [])
            .is_err());
    }
}
