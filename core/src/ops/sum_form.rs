//! ADD and SUB as one exact linear form, found when the model is lowered.
//!
//! TFLite-Micro's int8 ADD rounds each input's rescaling, adds the two, and rounds the
//! requantized sum. Over the 65,536 pairs of int8 inputs, a layer's results are nearly always
//! also those of
//!
//! ```text
//! w = (c + ⌊a·x / 256⌋ + ⌊b·y / 256⌋) >> 16        out = clamp(lo + w, lo, hi)
//! ```
//!
//! for some integers `a`, `b`, `c` (`b < 0` for SUB), `lo..=hi` being the fused activation's
//! range. [`SumForm::find`] tries the slopes nearest the layer's real ones and checks every
//! pair, so a form in a record is exact. With `x << 8` in a halfword, `⌊a·x / 256⌋` is one
//! `SMLAWB`, and the Cortex-M4 computes an element in two multiply-accumulates where the
//! rescaling tables take two loads, an add and a four-step output stage. A layer without a
//! form (none found, or a record from before forms) keeps the tables (`super::add`).

#[cfg(mote_dsp)]
use core::arch::asm;

use super::binary_fast::clamp;
use super::record::{Field, SlotReader, SlotWriter};
use crate::quant::QuantizedMultiplier;

/// Bits of the form's value below `w`: `w` is the value's top halfword.
const FRACTION: u32 = 16;
/// How far from the real slopes the search looks, in steps of the form's resolution.
const REACH: i32 = 4;

/// The linear form of one ADD or SUB layer (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SumForm {
    /// Input 1's slope, in 2^-24 output steps per input step.
    pub a: i32,
    /// Input 2's slope (negative for SUB).
    pub b: i32,
    /// The value at `x = y = 0`, less the activation's floor, in 2^-16 output steps.
    pub c: i32,
}

/// A layer the search fits: its exact outputs and where to start looking.
pub(crate) struct Layer<F: Fn(i8, i8) -> i8> {
    /// TFLite-Micro's output for each pair of inputs.
    pub(crate) exact: F,
    /// How much each input's rescaled value grows from -128 to 127 (negative for SUB's
    /// second input), on the common scale the output multiplier applies to.
    pub(crate) spans: (i64, i64),
    /// The output multiplier (shift <= 0).
    pub(crate) output: QuantizedMultiplier,
    /// The fused activation's range.
    pub(crate) clamp: (i8, i8),
}

impl SumForm {
    /// The exact form of `layer`, if one is near its real slopes.
    pub(crate) fn find<F: Fn(i8, i8) -> i8>(layer: &Layer<F>) -> Option<Self> {
        let a0 = slope(layer.spans.0, layer.output)?;
        let b0 = slope(layer.spans.1, layer.output)?;
        let steps = (0..=REACH).flat_map(|d| [d, -d]).skip(1);
        for da in steps.clone() {
            for db in steps.clone() {
                let (a, b) = (a0.checked_add(da)?, b0.checked_add(db)?);
                if let Some(form) = fit_c(layer, a, b) {
                    return Some(form);
                }
            }
        }
        None
    }

    /// `⌊a·x / 256⌋ + ⌊b·y / 256⌋`, what two `SMLAWB`s add to `c`.
    #[inline(always)]
    fn slopes_at(&self, x: i8, y: i8) -> i64 {
        ((i64::from(self.a) * i64::from(x)) >> 8) + ((i64::from(self.b) * i64::from(y)) >> 8)
    }

    /// The output for inputs `x`, `y` and the activation range `lo..=hi`.
    #[inline(always)]
    pub(crate) fn out(&self, x: i8, y: i8, (lo, hi): (i8, i8)) -> i8 {
        let w = (i64::from(self.c) + self.slopes_at(x, y)) >> FRACTION;
        (i64::from(lo) + w).clamp(lo.into(), hi.into()) as i8
    }

    /// The same form with its inputs swapped.
    fn swapped(self) -> Self {
        SumForm {
            a: self.b,
            b: self.a,
            c: self.c,
        }
    }

    /// Whether no partial sum of the form leaves the int32 range, for any inputs.
    fn fits(&self) -> bool {
        let reach =
            i64::from(self.c).abs() + (i64::from(self.a).abs() + i64::from(self.b).abs()) / 2 + 2;
        reach <= i64::from(i32::MAX)
    }
}

/// `span / 255` output steps per input step, in 2^-24 output steps, rounded.
fn slope(span: i64, output: QuantizedMultiplier) -> Option<i32> {
    let right = u32::try_from(31 - output.shift).ok()?;
    let num = (i128::from(span) * i128::from(output.multiplier)) << (FRACTION + 8);
    let den = 255i128.checked_shl(right)?;
    i32::try_from((2 * num + den).div_euclid(2 * den)).ok()
}

/// The form with slopes `a` and `b` and the `c` that makes it exact on every pair, if any.
fn fit_c<F: Fn(i8, i8) -> i8>(layer: &Layer<F>, a: i32, b: i32) -> Option<SumForm> {
    let (lo, hi) = layer.clamp;
    let step = 1i64 << FRACTION;
    let probe = SumForm { a, b, c: 0 };
    let (mut least, mut most) = (i64::MIN, i64::MAX);
    for x in i8::MIN..=i8::MAX {
        for y in i8::MIN..=i8::MAX {
            let want = (layer.exact)(x, y);
            let w = i64::from(want) - i64::from(lo);
            let at = probe.slopes_at(x, y);
            // The floor satisfies any w <= 0, the ceiling any w >= hi - lo.
            if want > lo {
                least = least.max(w * step - at);
            }
            if want < hi {
                most = most.min((w + 1) * step - 1 - at);
            }
        }
    }
    let (least, most) = (least.max(i32::MIN.into()), most.min(i32::MAX.into()));
    if least > most {
        return None;
    }
    let c = i32::try_from(least + (most - least) / 2).ok()?;
    let form = SumForm { a, b, c };
    form.fits().then_some(form)
}

/// Three slots: `a`, `b`, `c`, all zero for no form. A form whose partial sums could
/// overflow is refused.
impl Field for Option<SumForm> {
    fn write(&self, w: &mut SlotWriter) {
        let f = self.unwrap_or(SumForm { a: 0, b: 0, c: 0 });
        for v in [f.a, f.b, f.c] {
            w.put(v);
        }
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let (a, b, c) = (r.take(), r.take(), r.take());
        let form = SumForm { a, b, c };
        if (a, b, c) == (0, 0, 0) {
            return None;
        }
        if !form.fits() {
            r.reject(why!("ADD or SUB linear form could overflow"));
            return None;
        }
        Some(form)
    }
}

impl SumForm {
    /// Same-length runs of both inputs, clamped to `lo..=hi`.
    pub(crate) fn vv(&self, clamp: (i8, i8), a: &[i8], b: &[i8], out: &mut [i8]) {
        let n = out.len().min(a.len()).min(b.len());
        let words = n & !7;
        let done = match self.rows(clamp, (&a[..words], &b[..words]), &mut out[..words], words) {
            true => words,
            false => 0,
        };
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b).skip(done) {
            *o = self.out(x, y, clamp);
        }
    }

    /// `out` in rows of `row` elements, eight elements at a time: both inputs as long as
    /// `out` and one row (same shapes), or one of them one row long (repeated every row: a
    /// per-channel operand). `false` (nothing written) for other lengths, a `row` that is not
    /// a non-zero multiple of eight dividing the output, or without the assembly.
    #[inline(always)]
    pub(crate) fn rows(
        &self,
        (lo, hi): (i8, i8),
        (a, b): (&[i8], &[i8]),
        out: &mut [i8],
        row: usize,
    ) -> bool {
        let n = out.len();
        // The loop repeats its second input: put the repeated one there (the form is
        // symmetric in its two inputs).
        let (a, b, form) = match a.len() == n {
            true => (a, b, *self),
            false => (b, a, self.swapped()),
        };
        let shapes_ok = a.len() == n && (b.len() == row || (b.len() == n && row == n));
        if row == 0 || row % 8 != 0 || n % row != 0 || !shapes_ok {
            return false;
        }
        if !sum_rows(form, lo, (a, b), out, row) {
            return false;
        }
        if hi < i8::MAX {
            clamp(out, lo, hi);
        }
        true
    }
}

/// The assembly of [`SumForm::rows`], whose checks it relies on (`a` as long as `out`, `b`
/// one row long or a single row), up to the clamp to the activation's ceiling. Returns
/// whether it ran.
#[cfg(mote_dsp)]
#[inline(never)]
fn sum_rows(form: SumForm, lo: i8, (a, b): (&[i8], &[i8]), out: &mut [i8], row: usize) -> bool {
    let n = out.len();
    if n == 0 {
        return true;
    }
    // The output's end and the row length, on the stack.
    let frame = [out.as_ptr() as usize + n, row];
    let floor = (128 + i32::from(lo)) as u32 * 0x0101_0101;
    // Four elements from the words of x in r11 and y in r12: halfwords x << 8 (bytes 0 and
    // 2, then 1 and 3, masked by r9), two SMLAW each, the top halfwords of the four values
    // packed, saturated to 0..=255, merged to bytes, raised by the floor (saturating) and
    // turned to int8 by flipping the sign bits.
    macro_rules! four {
        ($floor:literal) => {
            concat!(
                "ldr r11, [r0], #4\n",
                "ldr r12, [r1], #4\n",
                "and r6, r9, r11, lsl #8\n",
                "and r7, r9, r12, lsl #8\n",
                "smlawb lr, r4, r6, r8\n",
                "smlawb lr, r5, r7, lr\n",
                "smlawt r6, r4, r6, r8\n",
                "smlawt r6, r5, r7, r6\n",
                "pkhtb lr, r6, lr, asr #16\n",
                "and r11, r11, r9\n",
                "and r12, r12, r9\n",
                "smlawb r6, r4, r11, r8\n",
                "smlawb r6, r5, r12, r6\n",
                "smlawt r7, r4, r11, r8\n",
                "smlawt r7, r5, r12, r7\n",
                "pkhtb r6, r7, r6, asr #16\n",
                "usat16 lr, #8, lr\n",
                "usat16 r6, #8, r6\n",
                "orr lr, lr, r6, lsl #8\n",
                $floor,
                "eor lr, lr, #0x80808080\n",
                "str lr, [r2], #4\n",
            )
        };
    }
    // Rows of eight-element steps: r3 holds the row's end, `$row` loads the row length into
    // `$len`; at each row's end r1 steps back a row (past the end when there is one row).
    macro_rules! rows {
        ($floor:literal, $row:literal, $len:literal) => {
            concat!(
                "push {{r6, r7}}\n",
                "ldrd r6, r7, [r3]\n",
                "push {{r6, r7}}\n",
                "1:\n",
                $row,
                "add r3, r2, ",
                $len,
                "\n",
                "2:\n",
                four!($floor),
                four!($floor),
                "cmp r2, r3\n",
                "bne 2b\n",
                $row,
                "sub r1, r1, ",
                $len,
                "\n",
                "ldr r11, [sp]\n",
                "cmp r2, r11\n",
                "bne 1b\n",
                "add sp, #8\n",
                "pop {{r6, r7}}\n",
            )
        };
    }
    let (a_ptr, b_ptr, out_ptr) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    // The loop with `$r10` in r10: the row length (no floor), or the floor.
    macro_rules! run {
        ($template:expr, $r10:expr) => {
            asm!(
                $template,
                inout("r0") a_ptr => _, inout("r1") b_ptr => _, inout("r2") out_ptr => _,
                inout("r3") frame.as_ptr() => _,
                in("r4") form.a, in("r5") form.b, in("r8") form.c, in("r9") 0xFF00_FF00u32,
                in("r10") $r10,
                out("r11") _, out("r12") _, out("lr") _,
            )
        };
    }
    // SAFETY: the caller checked that `row` is a non-zero multiple of 8 dividing `n`, that
    // `a` is `n` long and `b` `row` long or `n == row`. r2 writes `out` a word at a time, row
    // by row (the inner loop stops at r3 = the row's end, a multiple of 8 bytes on), until
    // the frame's end `out + n`. r0 reads a word of `a` per output word; r1 reads a word of
    // `b` per output word and steps back by `row` at each row's end, so it stays in its row
    // (after the last row it is not read again). Unaligned LDR/STR are allowed on ARMv7E-M.
    // `fits` keeps every SMLAW sum inside int32. r6 and r7 (not allowed as operands) are
    // saved and restored, and the stack pointer is restored; the other registers changed are
    // named.
    unsafe {
        match lo {
            i8::MIN => run!(rows!("", "", "r10"), row),
            _ => run!(
                rows!("uqadd8 lr, lr, r10\n", "ldr r11, [sp, #4]\n", "r11"),
                floor
            ),
        }
    }
    true
}

#[cfg(not(mote_dsp))]
fn sum_rows(_: SumForm, _: i8, _: (&[i8], &[i8]), _: &mut [i8], _: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::add::tests::random_params;
    use crate::ops::add::AddParams;
    use crate::ops::Activation;
    use crate::test_support::Rng;

    /// The form of an ADD (or, with `negate`, a SUB) layer with these parameters.
    fn form_of(p: &AddParams, negate: bool) -> Option<SumForm> {
        SumForm::find(&p.sum_layer(negate))
    }

    #[test]
    fn every_form_found_is_exact_on_every_pair() {
        let mut rng = Rng(0x5EED_F0A1);
        let (mut missing, mut representable_layers) = (0, 0);
        for case in 0..120 {
            let Some(p) = random_params(&mut rng, case) else {
                continue;
            };
            for negate in [false, true] {
                let layer = p.sum_layer(negate);
                let a = slope(layer.spans.0, layer.output).map(|a| i64::from(a).abs());
                let b = slope(layer.spans.1, layer.output).map(|b| i64::from(b).abs());
                // Outputs at most 32 steps per input step (a scale ratio no converter gives
                // is needed to exceed it) leave the form room in int32.
                let representable = a.zip(b).is_some_and(|(a, b)| a + b < 1 << 30);
                representable_layers += usize::from(representable);
                let Some(form) = form_of(&p, negate) else {
                    missing += usize::from(representable);
                    continue;
                };
                let exact = layer.exact;
                for x in i8::MIN..=i8::MAX {
                    for y in i8::MIN..=i8::MAX {
                        let got = form.out(x, y, (p.act_min, p.act_max));
                        assert_eq!(got, exact(x, y), "{p:?} negate {negate} at {x}, {y}");
                    }
                }
            }
        }
        // A search that stopped finding forms would silently leave every layer on the tables.
        assert_eq!(
            missing, 0,
            "no form for {missing} of {representable_layers} layers"
        );
        assert!(representable_layers > 150);
    }

    #[test]
    fn no_form_for_a_function_that_is_not_a_sum() {
        let p = AddParams::from_scales((0.05, 3), (0.03, -7), (0.07, 1), Activation::None).unwrap();
        let layer = p.sum_layer(false);
        assert!(SumForm::find(&layer).is_some());
        // One pair off by one: no linear form can follow it.
        let bent = Layer {
            exact: |x: i8, y: i8| match (x, y) {
                (17, -40) => (layer.exact)(x, y).saturating_add(1),
                _ => (layer.exact)(x, y),
            },
            spans: layer.spans,
            output: layer.output,
            clamp: layer.clamp,
        };
        assert_eq!(SumForm::find(&bent), None);
    }

    #[test]
    fn records_keep_forms_and_refuse_overflowing_ones() {
        use crate::ops::record::{encode_with, SlotReader};
        let form = Some(SumForm {
            a: 1 << 24,
            b: -(3 << 22),
            c: 90 << 16,
        });
        for (f, ok) in [
            (form, true),
            (None, true),
            (
                Some(SumForm {
                    a: i32::MAX,
                    b: i32::MAX,
                    c: 5,
                }),
                false,
            ),
            (
                Some(SumForm {
                    a: 0,
                    b: 0,
                    c: i32::MIN,
                }),
                false,
            ),
        ] {
            let slots = encode_with(|w| f.write(w)).unwrap();
            let mut r = SlotReader::new(&slots);
            let read = <Option<SumForm>>::read(&mut r);
            assert_eq!((read == f, r.failure().is_none()), (ok, ok), "{f:?}");
        }
    }
}
