//! ADD, int8 with TFLite's broadcasting, and f32 (same shapes).
//!
//! The int8 kernel is TFLite-Micro's `reference_integer_ops::AddFunc`: both inputs are moved to
//! a common scale with 20 bits of headroom, added in int32, and the sum is requantized to the
//! output scale. Every rounding step is TFLite's, so results match it bit for bit. SUB
//! (`super::sub`) is the same arithmetic with the second input's value negated.
//!
//! A layer that mote lowered carries its exact linear form (`super::sum_form`), which its
//! kernel runs instead (two multiply-accumulates an element on the M4). Without one:
//! each input's rescaled value depends on its int8 value alone, so a long ADD whose runs advance
//! through both inputs (same shapes, or a per-channel operand) first tabulates both rescalings
//! (2 x 256 words, `Tabled`) and then only requantizes the sum per element, in the assembly
//! loop of `super::binary_fast`. The tables live in the layer's planned scratch (2 KB); a
//! same-shape layer without it keeps them in the first `TABLE_BYTES` of its output, which are
//! computed last, the slow way. Other broadcasts go through `super::broadcast`.

use super::binary_fast::{add_tabled, clamp, Stage};
use super::broadcast::{lower_binary_quantized, Binary, BinaryIo, Broadcast, FAST_RUN};
use super::fast_requant::ChannelStage;
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::record_params;
use super::sum_form::{Layer, SumForm};
use super::Activation;
use super::Int8Stage;
use crate::format::OpCode;
use crate::model::{Decoder, Model};
use crate::quant::{rounding_divide_by_pot, QuantizedMultiplier};
use crate::Error;

type Res = Result<(), Error>;

/// Integer parameters of an int8 ADD, as TFLite-Micro's `CalculateOpDataAdd` prepares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AddParams {
    /// Minus the first input's zero point.
    pub input1_offset: i32,
    /// Minus the second input's zero point.
    pub input2_offset: i32,
    /// The output's zero point.
    pub output_offset: i32,
    /// Headroom given to the inputs before rescaling (TFLite uses 20 for int8).
    pub left_shift: i32,
    /// `s1 / (2 * max(s1, s2))`; its shift is <= 0.
    pub input1: QuantizedMultiplier,
    /// `s2 / (2 * max(s1, s2))`; its shift is <= 0.
    pub input2: QuantizedMultiplier,
    /// `2 * max(s1, s2) / (2^left_shift * s_out)`; its shift is <= 0.
    pub output: QuantizedMultiplier,
    /// Lowest output value (the fused activation's floor).
    pub act_min: i8,
    /// Highest output value.
    pub act_max: i8,
}

/// TFLite's headroom for int8 ADD.
const INT8_LEFT_SHIFT: i32 = 20;

/// Output bytes that hold the two rescaling tables while the rest of the output is written.
const TABLE_BYTES: usize = 2 * 256 * 4;
/// Outputs from which tabulating in the output pays: building the tables costs about 512
/// elements' work, and the first `TABLE_BYTES` outputs are computed the slow way.
const TABLE_FROM: usize = 2 * TABLE_BYTES;
/// Outputs from which tabulating in planned scratch pays (each element is then computed in a
/// tenth of the per-element arithmetic's time).
pub(crate) const SCRATCH_FROM: usize = 1024;

/// TFLite's `QuantizeMultiplierSmallerThanOneExp`: `QuantizeMultiplier` restricted to
/// multipliers in (0, 1) whose encoding needs no left shift (TFLite aborts otherwise).
fn smaller_than_one(real: f64) -> Option<QuantizedMultiplier> {
    if !(real > 0.0 && real < 1.0) {
        return None;
    }
    let q = QuantizedMultiplier::from_f64(real)?;
    (q.shift <= 0).then_some(q)
}

fn valid_quant((scale, zero_point): (f32, i32)) -> bool {
    scale.is_finite() && scale > 0.0 && (-128..=127).contains(&zero_point)
}

impl AddParams {
    /// The parameters for inputs and an output with these `(scale, zero_point)` pairs and a
    /// fused activation, computed exactly as TFLite-Micro's ADD prepare step does (scales are
    /// widened to f64 before any arithmetic).
    ///
    /// `None` when TFLite would refuse the layer: a non-positive or non-finite scale, a zero
    /// point outside int8, or an output scale so small that the output multiplier reaches 1.
    pub fn from_scales(
        input1: (f32, i32),
        input2: (f32, i32),
        output: (f32, i32),
        activation: Activation,
    ) -> Option<Self> {
        if !(valid_quant(input1) && valid_quant(input2) && valid_quant(output)) {
            return None;
        }
        let twice_max_input_scale = 2.0 * f64::from(input1.0.max(input2.0));
        let real_input1 = f64::from(input1.0) / twice_max_input_scale;
        let real_input2 = f64::from(input2.0) / twice_max_input_scale;
        let real_output =
            twice_max_input_scale / (f64::from(1u32 << INT8_LEFT_SHIFT) * f64::from(output.0));
        let (act_min, act_max) = activation.int8_range(output.0, output.1);
        Some(Self {
            input1_offset: -input1.1,
            input2_offset: -input2.1,
            output_offset: output.1,
            left_shift: INT8_LEFT_SHIFT,
            input1: smaller_than_one(real_input1)?,
            input2: smaller_than_one(real_input2)?,
            output: smaller_than_one(real_output)?,
            act_min,
            act_max,
        })
    }

    /// Refuses hand-made parameters under which the int32 arithmetic could overflow or a
    /// shift could go out of range (everything `from_scales` returns passes).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        // |x + offset| <= 256, and 256 << 22 = 2^30 still leaves room for the sum of two.
        let offset_ok = |o: i32| (-128..=128).contains(&o);
        if !(offset_ok(self.input1_offset) && offset_ok(self.input2_offset)) {
            return Err(Error::InvalidParameter {
                what: why!("add input offset (must be minus an int8 zero point)"),
            });
        }
        if !(-128..=127).contains(&self.output_offset) {
            return Err(Error::InvalidParameter {
                what: why!("add output offset (must be an int8 zero point)"),
            });
        }
        if !(0..=22).contains(&self.left_shift) {
            return Err(Error::InvalidParameter {
                what: why!("add left shift (must be in 0..=22)"),
            });
        }
        let m_ok = |q: QuantizedMultiplier| q.multiplier >= 0 && (-31..=0).contains(&q.shift);
        if !(m_ok(self.input1) && m_ok(self.input2) && m_ok(self.output)) {
            return Err(Error::InvalidParameter {
                what: why!("add multiplier (must be non-negative with a shift in -31..=0)"),
            });
        }
        if self.act_min > self.act_max {
            return Err(Error::InvalidParameter {
                what: why!("activation range (min > max)"),
            });
        }
        Ok(())
    }

    /// Input 1's value on the common scale.
    #[inline(always)]
    pub(crate) fn rescaled1(&self, x: i8) -> i32 {
        let shifted = (self.input1_offset + i32::from(x)) << self.left_shift;
        self.input1.apply(shifted)
    }

    /// Input 2's value on the common scale.
    #[inline(always)]
    pub(crate) fn rescaled2(&self, y: i8) -> i32 {
        let shifted = (self.input2_offset + i32::from(y)) << self.left_shift;
        self.input2.apply(shifted)
    }

    /// The sum of the rescaled inputs, requantized to the output and clamped.
    #[inline(always)]
    pub(crate) fn finish(&self, raw_sum: i32) -> i8 {
        let raw_output = self
            .output
            .apply(raw_sum)
            .saturating_add(self.output_offset);
        raw_output.clamp(i32::from(self.act_min), i32::from(self.act_max)) as i8
    }
}

fn check_lengths(a: usize, b: usize, out: usize) -> Result<(), Error> {
    if b != a {
        return Err(Error::LengthMismatch {
            expected: a,
            actual: b,
        });
    }
    if out != a {
        return Err(Error::LengthMismatch {
            expected: a,
            actual: out,
        });
    }
    Ok(())
}

/// int8 ADD of two same-length tensors, bit-exact with TFLite-Micro's reference kernel.
pub fn add_i8(p: &AddParams, a: &[i8], b: &[i8], out: &mut [i8]) -> Result<(), Error> {
    super::built(OpCode::Add)?;
    check_lengths(a.len(), b.len(), out.len())?;
    p.validate()?;
    let kernel = SumKernel::tflite(*p, false);
    let slow = kernel.whole(a, b, out, &mut []);
    kernel.vv(&a[..slow], &b[..slow], &mut out[..slow]);
    Ok(())
}

/// The scratch ADD and SUB want: room for the two tables if the output is long enough to
/// pay and made of runs along which both inputs advance (same shapes, or a per-channel
/// operand of enough channels), else none.
pub(crate) fn table_scratch(io: &BinaryIo<'_>, model: &Model<'_>) -> Result<usize, Error> {
    let walk = io.walk(model)?;
    let tables = walk.is_some_and(|w| w.output_len() >= SCRATCH_FROM && w.runs_both(FAST_RUN));
    Ok(if tables { TABLE_BYTES } else { 0 })
}

/// Runs ADD (`negate` false, `op` its parameters) or SUB over `walk`: from the two tables in
/// `scratch` if [`table_scratch`] planned them, else as `op` does without.
pub(crate) fn run_tables<B: Binary>(
    p: &AddParams,
    op: &B,
    negate: bool,
    (walk, a, b, out): (&Broadcast, &[i8], &[i8], &mut [i8]),
    scratch: &mut [u8],
) -> Result<(), Error> {
    let planned = scratch
        .get_mut(..TABLE_BYTES)
        .and_then(crate::cast::slice_mut::<i32>)
        .and_then(|t| t.first_chunk_mut::<512>())
        .filter(|_| out.len() >= SCRATCH_FROM && walk.runs_both(FAST_RUN));
    if let Some((t, row)) = planned.zip(walk.rows_of(a, b, out)) {
        if Tabled::new(p, t, negate).rows(a, b, out, row) {
            return Ok(());
        }
    }
    walk.run(op, a, b, out, &mut [])
}

/// For long outputs of same-shape inputs without planned scratch: writes outputs
/// `TABLE_BYTES..` from the two rescaling tables (input 2's negated if `negate`: SUB), built
/// in the output's first bytes, and returns how many leading outputs are left to compute the
/// slow way (all of them if the output is short or not word-aligned).
pub(crate) fn tabled(p: &AddParams, a: &[i8], b: &[i8], out: &mut [i8], negate: bool) -> usize {
    if out.len() < TABLE_FROM || a.len() != out.len() || b.len() != out.len() {
        return out.len();
    }
    let (head, tail) = out.split_at_mut(TABLE_BYTES);
    let Some(t) = crate::cast::i8_as_i32_mut(head).and_then(|t| t.first_chunk_mut::<512>()) else {
        return out.len();
    };
    Tabled::new(p, t, negate).vv(&a[TABLE_BYTES..], &b[TABLE_BYTES..], tail);
    TABLE_BYTES
}

/// Input 1's rescaled values, then input 2's (negated if `negate`: SUB), each indexed by the
/// int8 value's bits: 0..=127, then -128..=-1.
fn fill_tables(p: &AddParams, t: &mut [i32; 512], negate: bool) {
    let (t1, t2) = t.split_at_mut(256);
    rescale_all(p.input1_offset, p.input1, p.left_shift, t1, false);
    rescale_all(p.input2_offset, p.input2, p.left_shift, t2, negate);
}

/// `t[v as u8] = ±rdbp(srdhm((v + offset) << left, q), -q.shift)` for every int8 `v`: what
/// [`AddParams::rescaled1`] computes, stepping through the products instead of multiplying
/// each. With `a = k << left`, `srdhm(a, m) = floor((a * m + 2^30) / 2^31)` exactly (the
/// saturating case needs `m = i32::MIN`, which `validate` refuses).
fn rescale_all(offset: i32, q: QuantizedMultiplier, left: i32, t: &mut [i32], negate: bool) {
    let step = i64::from(q.multiplier) << (left & 31);
    let mut x = i64::from(offset - 128) * step + (1 << 30);
    for v in -128..=127i8 {
        let r = rounding_divide_by_pot((x >> 31) as i32, -q.shift);
        if let Some(slot) = t.get_mut(usize::from(v as u8)) {
            *slot = if negate { r.wrapping_neg() } else { r };
        }
        x += step;
    }
}

/// ADD's (or SUB's) arithmetic from its two rescaling tables: `finish(t1[x] + t2[y])`, with
/// the fast output stage (`fast_requant`) where its bound on the sum holds.
pub(crate) struct Tabled<'t> {
    p: &'t AddParams,
    t: &'t [i32; 512],
    /// The fast stage; the tables then hold the rescaled values shifted left by its `left`,
    /// which its bound on the sum keeps exact.
    stage: Option<Stage>,
}

impl<'t> Tabled<'t> {
    /// Fills `t` (see [`fill_tables`]) and picks the output stage.
    fn new(p: &'t AddParams, t: &'t mut [i32; 512], negate: bool) -> Self {
        fill_tables(p, t, negate);
        // Each table is monotonic in the int8 value: its widest entries are at -128 and 127.
        let widest = |lo: i32, hi: i32| u64::from(lo.unsigned_abs().max(hi.unsigned_abs()));
        let max_sum = widest(t[128], t[127]) + widest(t[384], t[383]);
        let stage = Int8Stage {
            input_offset: 0,
            output_offset: p.output_offset,
            act_min: p.act_min,
            act_max: p.act_max,
        };
        let fast = ChannelStage::new(0, p.output, &stage, max_sum).fast_parts();
        let stage = fast.filter(|f| f.3 >= 1).map(|(left, mult, add, right)| {
            for v in t.iter_mut() {
                *v <<= left;
            }
            Stage { mult, add, right }
        });
        Tabled { p, t, stage }
    }
}

impl Binary for Tabled<'_> {
    #[inline(always)]
    fn one(&self, x: i8, y: i8) -> i8 {
        let v = self.t[usize::from(x as u8)].wrapping_add(self.t[256 + usize::from(y as u8)]);
        match self.stage {
            Some(s) => s.out(v).clamp(self.p.act_min, self.p.act_max),
            None => self.p.finish(v),
        }
    }

    fn vv(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        let Some(stage) = self.stage else {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = self.one(x, y);
            }
            return;
        };
        add_tabled(self.t, stage, (a, b), out, out.len());
        clamp(out, self.p.act_min, self.p.act_max);
    }

    fn rows(&self, a: &[i8], b: &[i8], out: &mut [i8], row: usize) -> bool {
        let Some(stage) = self.stage else {
            return false;
        };
        add_tabled(self.t, stage, (a, b), out, row);
        clamp(out, self.p.act_min, self.p.act_max);
        true
    }

    fn fast_runs(&self, len: usize) -> bool {
        self.stage.is_some() && len >= FAST_RUN
    }
}

/// f32 ADD of two same-length tensors, clamped to `clamp = (min, max)` (the fused activation's
/// range, see [`Activation::f32_range`]).
pub fn add_f32(clamp: (f32, f32), a: &[f32], b: &[f32], out: &mut [f32]) -> Result<(), Error> {
    check_lengths(a.len(), b.len(), out.len())?;
    // `partial_cmp` is `None` for a NaN bound, which is refused too.
    if !matches!(
        clamp.0.partial_cmp(&clamp.1),
        Some(core::cmp::Ordering::Less | core::cmp::Ordering::Equal)
    ) {
        return Err(Error::InvalidParameter {
            what: why!("activation range (min > max or NaN)"),
        });
    }
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = (x + y).max(clamp.0).min(clamp.1);
    }
    Ok(())
}

record_params! {
    /// ADD's record parameters; its three multipliers are the record's requantization
    /// constants (input 1, input 2, output).
    pub struct AddRecordParams {
        /// Input 1's offset, the output's zero point, the clamp.
        pub stage: Int8Stage,
        /// Minus input 2's zero point.
        pub input2_offset: i32,
        /// Left shift applied to both inputs.
        pub left_shift: i32,
        /// The layer's exact linear form, if the lowering found one.
        pub form: Option<SumForm>,
    }
}

impl AddParams {
    /// The record parameters and the three requantization constants.
    pub fn to_record(&self, form: Option<SumForm>) -> (AddRecordParams, [QuantizedMultiplier; 3]) {
        let stage = Int8Stage {
            input_offset: self.input1_offset,
            output_offset: self.output_offset,
            act_min: self.act_min,
            act_max: self.act_max,
        };
        let record = AddRecordParams {
            stage,
            input2_offset: self.input2_offset,
            left_shift: self.left_shift,
            form,
        };
        (record, [self.input1, self.input2, self.output])
    }
}

/// ADD, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Add<'a> {
    /// How each output is computed.
    pub rule: SumRule,
    /// Inputs, output and the broadcast walk.
    pub tensors: BinaryIo<'a>,
}

/// How an ADD or SUB layer computes its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumRule {
    /// The record's exact linear form, clamped to the activation's range.
    Form(SumForm, (i8, i8)),
    /// TFLite-Micro's arithmetic, with rescaling tables on long runs (a record without a
    /// form).
    Tflite(AddParams),
}

impl SumRule {
    /// The rule a record gives: its form if it has one, else the parameters.
    pub(crate) fn from_record(record: &AddRecordParams, params: AddParams) -> Self {
        match record.form {
            Some(form) => SumRule::Form(form, (params.act_min, params.act_max)),
            None => SumRule::Tflite(params),
        }
    }

    /// The scratch the layer wants: the tables' if it has no form.
    pub(crate) fn scratch_need(
        &self,
        io: &BinaryIo<'_>,
        model: &Model<'_>,
    ) -> Result<usize, Error> {
        match self {
            SumRule::Form(..) => Ok(0),
            SumRule::Tflite(_) => table_scratch(io, model),
        }
    }
}

/// ADD (SUB if `negate`) by its rule: the one walk both operators' layers run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SumKernel {
    pub(crate) rule: SumRule,
    pub(crate) negate: bool,
}

impl SumKernel {
    /// TFLite-Micro's arithmetic on `p` (SUB's if `negate`).
    pub(crate) fn tflite(p: AddParams, negate: bool) -> Self {
        SumKernel {
            rule: SumRule::Tflite(p),
            negate,
        }
    }
}

impl Binary for SumKernel {
    #[inline(always)]
    fn one(&self, x: i8, y: i8) -> i8 {
        match self.rule {
            SumRule::Form(form, clamp) => form.out(x, y, clamp),
            SumRule::Tflite(p) => p.one_of(x, y, self.negate),
        }
    }

    fn vv(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        match self.rule {
            SumRule::Form(form, clamp) => form.vv(clamp, a, b, out),
            SumRule::Tflite(p) => {
                for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                    *o = p.one_of(x, y, self.negate);
                }
            }
        }
    }

    fn fast_runs(&self, len: usize) -> bool {
        matches!(self.rule, SumRule::Form(..)) && len >= FAST_RUN
    }

    fn rows(&self, a: &[i8], b: &[i8], out: &mut [i8], row: usize) -> bool {
        match self.rule {
            SumRule::Form(form, clamp) => form.rows(clamp, (a, b), out, row),
            SumRule::Tflite(_) => false,
        }
    }

    fn run_walk(&self, run: (&Broadcast, &[i8], &[i8], &mut [i8]), scratch: &mut [u8]) -> Res {
        match self.rule {
            SumRule::Form(..) => run.0.run(self, run.1, run.2, run.3, scratch),
            SumRule::Tflite(p) => run_tables(&p, self, self.negate, run, scratch),
        }
    }

    fn whole(&self, a: &[i8], b: &[i8], out: &mut [i8], _: &mut [u8]) -> usize {
        match self.rule {
            SumRule::Form(form, clamp) => {
                form.vv(clamp, a, b, out);
                0
            }
            SumRule::Tflite(p) => tabled(&p, a, b, out, self.negate),
        }
    }
}

impl AddParams {
    /// The parameters a record holds: its slots and its three requantization constants.
    pub(crate) fn from_record(
        record: &AddRecordParams,
        [input1, input2, output]: [QuantizedMultiplier; 3],
    ) -> Self {
        AddParams {
            input1_offset: record.stage.input_offset,
            input2_offset: record.input2_offset,
            output_offset: record.stage.output_offset,
            left_shift: record.left_shift,
            input1,
            input2,
            output,
            act_min: record.stage.act_min,
            act_max: record.stage.act_max,
        }
    }

    /// ADD's output (SUB's if `negate`) for inputs `x` and `y`.
    #[inline(always)]
    pub(crate) fn one_of(&self, x: i8, y: i8, negate: bool) -> i8 {
        let (r1, r2) = (self.rescaled1(x), self.rescaled2(y));
        self.finish(if negate { r1.wrapping_sub(r2) } else { r1 + r2 })
    }

    /// ADD's layer (SUB's if `negate`) for [`SumForm::find`].
    pub(crate) fn sum_layer(&self, negate: bool) -> Layer<impl Fn(i8, i8) -> i8 + '_> {
        let span = |rescaled: fn(&Self, i8) -> i32| {
            i64::from(rescaled(self, i8::MAX)) - i64::from(rescaled(self, i8::MIN))
        };
        let sign = if negate { -1 } else { 1 };
        Layer {
            exact: move |x, y| self.one_of(x, y, negate),
            spans: (span(Self::rescaled1), sign * span(Self::rescaled2)),
            output: self.output,
            clamp: (self.act_min, self.act_max),
        }
    }

    /// Writes the record's parameters (with the layer's linear form, SUB's if `negate`) and
    /// requantization constants.
    pub(crate) fn lower_to(&self, cx: &mut Lowering<'_>, negate: bool) -> Result<(), LowerError> {
        let form = SumForm::find(&self.sum_layer(negate));
        let (record, requant) = self.to_record(form);
        for q in requant {
            cx.requant(q);
        }
        cx.params(&record)
    }
}

impl<'a> Operator<'a> for Add<'a> {
    type Params = AddRecordParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let [s_a, s_b, s_out] = lower_binary_quantized(cx)?;
        AddParams::from_scales(s_a, s_b, s_out, cx.options().activation)
            .ok_or(LowerError::Unsupported {
                what: "ADD scales out of the representable range",
            })?
            .lower_to(cx, false)
    }

    fn decode(d: &Decoder<'_, 'a>, record: AddRecordParams) -> Self {
        let tensors = BinaryIo::decode(d);
        let params = AddParams::from_record(&record, d.requant_array::<3>());
        d.check(
            params.validate().is_ok(),
            why!("ADD offsets, shift or multipliers out of range"),
        );
        Add {
            rule: SumRule::from_record(&record, params),
            tensors,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(self.tensors.io())
    }

    fn scratch_need(&self, model: &Model<'a>) -> Result<Option<usize>, Error> {
        Ok(Some(self.rule.scratch_need(&self.tensors, model)?))
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        super::built(OpCode::Add)?;
        let kernel = SumKernel {
            rule: self.rule,
            negate: false,
        };
        self.tensors.run(&kernel, v)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::test_support::Rng;

    const fn qm(multiplier: i32, shift: i32) -> QuantizedMultiplier {
        QuantizedMultiplier { multiplier, shift }
    }

    /// The stepped table fill gives exactly the per-element rescaling, for any parameters
    /// `validate` accepts (including the widest left shift and extreme multipliers).
    #[test]
    fn table_fill_equals_the_rescaling() {
        let mut rng = Rng(0x7AB1_E5ED);
        for case in 0..3000 {
            let multiplier = match case % 4 {
                0 => i32::MAX,
                1 => 1 << 30,
                _ => (rng.next() as u32 >> 1) as i32,
            };
            let q = qm(multiplier, -((rng.next() % 32) as i32));
            let offset = (rng.next() % 257) as i32 - 128;
            let left = [20, 22, 0][case % 3];
            let p = AddParams {
                input1_offset: offset,
                input2_offset: -offset,
                left_shift: left,
                input1: q,
                input2: q,
                ..AddParams::from_scales((1.0, 0), (1.0, 0), (1.0, 0), Activation::None).unwrap()
            };
            p.validate().unwrap();
            let mut t = [0i32; 512];
            fill_tables(&p, &mut t, case % 2 == 0);
            for v in -128..=127i8 {
                let i = usize::from(v as u8);
                let y = p.rescaled2(v);
                assert_eq!(t[i], p.rescaled1(v), "{p:?} {v}");
                assert_eq!(t[256 + i], if case % 2 == 0 { -y } else { y }, "{p:?} {v}");
            }
        }
    }

    /// The tabled path (long outputs, tables in the output's own first bytes) gives every
    /// element exactly what the per-element arithmetic gives, aligned or not.
    #[test]
    fn tabled_add_equals_the_per_element_arithmetic() {
        let mut rng = Rng(0x5EED_ADD5);
        let mut tested = 0;
        for case in 0..40 {
            let scale = |rng: &mut Rng| rng.uniform_f32(0.002, 0.2);
            let zp = |rng: &mut Rng| (rng.next() % 256) as i32 - 128;
            let acts = [Activation::None, Activation::Relu, Activation::Relu6];
            let p = AddParams::from_scales(
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                (scale(&mut rng), zp(&mut rng)),
                acts[case % 3],
            );
            let Some(p) = p else { continue };
            let len = [TABLE_FROM, TABLE_FROM + 3, 5000, 16_384][case % 4];
            let a: std::vec::Vec<i8> = (0..len).map(|_| rng.next() as i8).collect();
            let b: std::vec::Vec<i8> = (0..len).map(|_| rng.next() as i8).collect();
            let want: std::vec::Vec<i8> = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| p.one_of(x, y, false))
                .collect();
            // Word-aligned output (tabled), and one byte off (per element).
            let mut words = std::vec![0u32; len / 4 + 2];
            let bytes = crate::cast::words_as_bytes_mut(&mut words);
            for skew in [0, 1] {
                let out = crate::cast::slice_mut::<i8>(&mut bytes[skew..skew + len]).unwrap();
                add_i8(&p, &a, &b, out).unwrap();
                assert_eq!(out, &want[..], "case {case}, skew {skew}");
            }
            tested += 1;
        }
        assert!(tested >= 30, "only {tested} cases had valid parameters");
    }

    /// Broadcast runs, per-channel and scalar tables and the tabled same-shape path give
    /// exactly the per-element arithmetic, over random parameters.
    #[test]
    fn broadcast_paths_equal_the_per_element_arithmetic() {
        let mut rng = Rng(0xADD_B40D);
        for case in 0..60 {
            let Some(p) = random_params(&mut rng, case) else {
                continue;
            };
            crate::ops::broadcast::tests::check_against_naive(
                &SumKernel::tflite(p, false),
                &mut rng,
                12,
            );
        }
    }

    /// The tables' arithmetic gives ADD's and SUB's on every pair of int8 values, and their
    /// loops (same shapes, per-channel operands walked run by run, scalars) give the
    /// per-element arithmetic.
    #[test]
    fn tables_equal_the_reference_on_every_pair_and_walk() {
        let mut rng = Rng(0x7AB_1E55);
        let mut fast = 0;
        for case in 0..80 {
            let Some(p) = random_params(&mut rng, case) else {
                continue;
            };
            for negate in [false, true] {
                let mut t = [0i32; 512];
                let tab = Tabled::new(&p, &mut t, negate);
                fast += usize::from(tab.stage.is_some());
                let kernel = SumKernel::tflite(p, negate);
                for x in -128..=127i8 {
                    for y in -128..=127i8 {
                        let want = kernel.one(x, y);
                        assert_eq!(tab.one(x, y), want, "{p:?} {x} {y} {negate}");
                    }
                }
                crate::ops::broadcast::tests::check_against_naive(&tab, &mut rng, 14);
            }
        }
        assert!(fast > 60, "only {fast} tables took the fast stage");
    }

    /// Random valid parameters: scales over four decades, any zero points, every activation.
    pub(crate) fn random_params(rng: &mut Rng, case: usize) -> Option<AddParams> {
        let scale = |rng: &mut Rng| 10f32.powf(rng.uniform_f32(-4.0, 0.5));
        let zp = |rng: &mut Rng| match rng.next() % 4 {
            0 => -128,
            1 => 127,
            _ => (rng.next() % 256) as i32 - 128,
        };
        let acts = [Activation::None, Activation::Relu, Activation::Relu6];
        AddParams::from_scales(
            (scale(rng), zp(rng)),
            (scale(rng), zp(rng)),
            (scale(rng), zp(rng)),
            acts[case % 3],
        )
    }

    /// The tabled path with its fast output stage gives the per-element arithmetic on every
    /// pair of int8 values, over random parameters with extreme scales and zero points.
    #[test]
    fn tabled_fast_stage_equals_the_reference_on_every_pair() {
        let mut rng = Rng(0xADD_0FA5);
        let len = TABLE_BYTES + 65_536;
        let xs: Vec<i8> = (0..len).map(|i| (i & 0xFF) as u8 as i8).collect();
        let ys: Vec<i8> = (0..len)
            .map(|i| ((i >> 8) ^ (i >> 16)) as u8 as i8)
            .collect();
        let mut words = std::vec![0u32; len / 4];
        let (mut tested, mut fast) = (0, 0);
        for case in 0..600 {
            let scale = |rng: &mut Rng| 10f32.powf(rng.uniform_f32(-6.0, 3.0));
            let zp = |rng: &mut Rng| match rng.next() % 3 {
                0 => [-128, 127, 0][(rng.next() % 3) as usize],
                _ => (rng.next() % 256) as i32 - 128,
            };
            let acts = [Activation::None, Activation::Relu, Activation::Relu6];
            let (s1, z1, s2, z2) = (scale(&mut rng), zp(&mut rng), scale(&mut rng), zp(&mut rng));
            // Every other case: equal input scales (ties are exact there).
            let s2 = if case % 2 == 0 { s1 } else { s2 };
            let so = s1.max(s2) * 10f32.powf(rng.uniform_f32(-1.5, 2.0));
            let out_q = (so, zp(&mut rng));
            let Some(p) = AddParams::from_scales((s1, z1), (s2, z2), out_q, acts[case % 3]) else {
                continue;
            };
            fast += usize::from(p.output.shift >= -21);
            let out =
                crate::cast::slice_mut::<i8>(crate::cast::words_as_bytes_mut(&mut words)).unwrap();
            // Tables in the output's head, and in planned scratch (every output fast).
            let mut scratch = [0u32; 512];
            let planned = crate::cast::words_as_bytes_mut(&mut scratch);
            for (negate, tables) in [(false, 0), (true, 0), (false, 1), (true, 1)] {
                let from = match tables {
                    0 => {
                        assert_eq!(tabled(&p, &xs, &ys, out, negate), TABLE_BYTES);
                        TABLE_BYTES
                    }
                    _ => {
                        let s = crate::ops::Shape4::new(1, 1, 1, len);
                        let walk = Broadcast::new(s, s, s).unwrap();
                        let run = (&walk, &xs[..], &ys[..], &mut out[..]);
                        let kernel = SumKernel::tflite(p, negate);
                        run_tables(&p, &kernel, negate, run, planned).unwrap();
                        0
                    }
                };
                for i in from..len {
                    let (x, y) = (xs[i], ys[i]);
                    let want = match negate {
                        false => p.one_of(x, y, false),
                        true => p.finish(p.rescaled1(x) - p.rescaled2(y)),
                    };
                    assert_eq!(out[i], want, "{p:?} x {x} y {y} negate {negate}");
                }
            }
            tested += 1;
        }
        assert!(
            tested > 400 && fast > 300,
            "{tested} valid cases, {fast} fast"
        );
    }

    #[test]
    fn prepare_matches_tflite_for_power_of_two_scales() {
        // s1 = 0.5, s2 = 0.25, s_out = 1: twice_max = 1, so the real multipliers are 0.5,
        // 0.25 and 1 / 2^20, i.e. 2^30 * 2^(shift - 31) with shifts 0, -1 and -19.
        let p = AddParams::from_scales((0.5, 0), (0.25, 10), (1.0, -20), Activation::Relu).unwrap();
        assert_eq!(
            p,
            AddParams {
                input1_offset: 0,
                input2_offset: -10,
                output_offset: -20,
                left_shift: 20,
                input1: qm(1 << 30, 0),
                input2: qm(1 << 30, -1),
                output: qm(1 << 30, -19),
                // ReLU: quantize(0) = zero point = -20.
                act_min: -20,
                act_max: 127,
            }
        );
    }

    #[test]
    fn different_scales_with_fused_relu() {
        let relu =
            AddParams::from_scales((0.5, 0), (0.25, 10), (1.0, -20), Activation::Relu).unwrap();
        let none = AddParams {
            act_min: -128,
            ..relu
        };
        let a = [10i8, -20, 3, 1, -1];
        let b = [30i8, 10, 11, 10, 10];
        // Element 0: 10 << 20 = 10485760, * 0.5 = 5242880; (30 - 10) << 20 = 20971520,
        //   * 0.5 -> 10485760, rounding >> 1 -> 5242880. Sum 10485760, * 0.5 -> 5242880,
        //   rounding >> 19 -> 10; + (-20) = -10. (Real: 5.0 + 5.0 = 10.0.)
        // Element 1: -20 * 0.5 + 0 = -10.0 -> -10 - 20 = -30, which ReLU lifts to -20.
        // Element 2: 1.5 + 0.25 = 1.75: sum 1835008 -> 917504, / 2^19 = 1.75 -> 2; -> -18.
        // Element 3: 0.5 + 0 exactly: 262144 / 2^19 = 0.5 -> 1 (ties away from zero) -> -19.
        // Element 4: -0.5: -262144 / 2^19 -> -1 -> -21, ReLU -> -20.
        let mut out = [0i8; 5];
        add_i8(&relu, &a, &b, &mut out).unwrap();
        assert_eq!(out, [-10, -20, -18, -19, -20]);
        add_i8(&none, &a, &b, &mut out).unwrap();
        assert_eq!(out, [-10, -30, -18, -19, -21]);
    }

    #[test]
    fn saturates_at_the_int8_range() {
        // All scales 1: multipliers 0.5, 0.5 and 2 / 2^20 (shift -18).
        let p = AddParams::from_scales((1.0, 0), (1.0, 0), (1.0, 0), Activation::None).unwrap();
        assert_eq!(p.output, qm(1 << 30, -18));
        let mut out = [0i8; 4];
        // 100 + 100: 104857600 * 0.5 twice = 104857600, * 0.5 = 52428800, / 2^18 = 200 -> 127.
        add_i8(&p, &[100, -100, 127, -128], &[100, -100, 0, 0], &mut out).unwrap();
        assert_eq!(out, [127, -128, 127, -128]);
        // ReLU6 at scale 0.05, zero point 0: the ceiling is round(6 / 0.05) = 120.
        let p6 =
            AddParams::from_scales((0.05, 0), (0.05, 0), (0.05, 0), Activation::Relu6).unwrap();
        assert_eq!((p6.act_min, p6.act_max), (0, 120));
        add_i8(&p6, &[100, -5], &[50, 1], &mut out[..2]).unwrap();
        assert_eq!(&out[..2], &[120, 0]);
    }

    #[test]
    fn int8_add_is_within_one_lsb_of_real_arithmetic() {
        let mut rng = Rng(0x1234_5678);
        for _ in 0..2_000 {
            let s1 = rng.uniform_f32(0.001, 1.0);
            let s2 = rng.uniform_f32(0.001, 1.0);
            let so = rng.uniform_f32(0.002, 2.0);
            let z = |r: &mut Rng| (r.next() % 256) as i32 - 128;
            let (z1, z2, zo) = (z(&mut rng), z(&mut rng), z(&mut rng));
            let p = AddParams::from_scales((s1, z1), (s2, z2), (so, zo), Activation::None).unwrap();
            let a: Vec<i8> = (0..64).map(|_| rng.next() as i8).collect();
            let b: Vec<i8> = (0..64).map(|_| rng.next() as i8).collect();
            let mut out = vec![0i8; 64];
            add_i8(&p, &a, &b, &mut out).unwrap();
            for i in 0..64 {
                let real = f64::from(s1) * f64::from(i32::from(a[i]) - z1)
                    + f64::from(s2) * f64::from(i32::from(b[i]) - z2);
                let want = ((real / f64::from(so)).round() + f64::from(zo)).clamp(-128.0, 127.0);
                let got = f64::from(out[i]);
                assert!(
                    (got - want).abs() <= 1.0,
                    "a {} b {} got {got} want {want} ({s1} {z1}) ({s2} {z2}) ({so} {zo})",
                    a[i],
                    b[i]
                );
            }
        }
    }

    #[test]
    fn f32_add_matches_f64_and_clamps() {
        let mut rng = Rng(99);
        let a: Vec<f32> = (0..1000).map(|_| rng.uniform_f32(-100.0, 100.0)).collect();
        let b: Vec<f32> = (0..1000).map(|_| rng.uniform_f32(-100.0, 100.0)).collect();
        let mut out = vec![0f32; 1000];
        add_f32(Activation::Relu6.f32_range(), &a, &b, &mut out).unwrap();
        for i in 0..1000 {
            // The f64 sum of two such f32 values is exact, so rounding it once gives f32's sum.
            let want = ((f64::from(a[i]) + f64::from(b[i])) as f32).clamp(0.0, 6.0);
            assert_eq!(out[i], want);
        }
        add_f32(
            Activation::None.f32_range(),
            &[1.5, -2.0],
            &[0.25, -1.0],
            &mut out[..2],
        )
        .unwrap();
        assert_eq!(&out[..2], &[1.75, -3.0]);
    }

    #[test]
    fn refuses_bad_lengths_and_parameters() {
        let p = AddParams::from_scales((1.0, 0), (1.0, 0), (1.0, 0), Activation::None).unwrap();
        let mut out = [0i8; 3];
        assert_eq!(
            add_i8(&p, &[1, 2, 3], &[1, 2], &mut out),
            Err(Error::LengthMismatch {
                expected: 3,
                actual: 2
            })
        );
        assert_eq!(
            add_i8(&p, &[1, 2], &[1, 2], &mut out),
            Err(Error::LengthMismatch {
                expected: 2,
                actual: 3
            })
        );
        let mut fout = [0f32; 1];
        assert_eq!(
            add_f32((0.0, 1.0), &[1.0], &[1.0, 2.0], &mut fout),
            Err(Error::LengthMismatch {
                expected: 1,
                actual: 2
            })
        );
        assert!(matches!(
            add_f32((1.0, 0.0), &[1.0], &[1.0], &mut fout),
            Err(Error::InvalidParameter { .. })
        ));
        for bad in [
            AddParams {
                left_shift: 31,
                ..p
            },
            AddParams {
                input1_offset: 1000,
                ..p
            },
            AddParams {
                output_offset: 128,
                ..p
            },
            AddParams {
                output: qm(1 << 30, 1),
                ..p
            },
            AddParams {
                input2: qm(-5, 0),
                ..p
            },
            AddParams {
                act_min: 5,
                act_max: 4,
                ..p
            },
        ] {
            assert!(matches!(
                add_i8(&bad, &[1], &[1], &mut out[..1]),
                Err(Error::InvalidParameter { .. })
            ));
        }
        let none = Activation::None;
        assert_eq!(
            AddParams::from_scales((0.0, 0), (1.0, 0), (1.0, 0), none),
            None
        );
        assert_eq!(
            AddParams::from_scales((1.0, 0), (f32::NAN, 0), (1.0, 0), none),
            None
        );
        assert_eq!(
            AddParams::from_scales((1.0, 200), (1.0, 0), (1.0, 0), none),
            None
        );
        // 2 / (2^20 * 1e-7) = 19 >= 1: TFLite's prepare would abort.
        assert_eq!(
            AddParams::from_scales((1.0, 0), (1.0, 0), (1e-7, 0), none),
            None
        );
    }
}
