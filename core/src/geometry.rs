//! Sliding-window geometry, the one home of its arithmetic: output size and padding (TFLite's
//! SAME and VALID rules, with dilation), the consistency check the model decoder and the
//! kernels apply, and which kernel taps of an output position land on the input.
//!
//! Everything works along one [`Axis`] at a time; height and width go through the same code.
//! Sizes come from untrusted blobs and the crate runs on 32-bit targets, so the checks use
//! checked arithmetic and answer `None`/`false` where a product or sum would wrap.

use core::ops::Range;

use crate::ops::Shape4;

/// Where a sliding window (convolution or pooling) samples its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Window {
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation (1 = dense).
    pub dilation_h: usize,
    /// Horizontal dilation (1 = dense).
    pub dilation_w: usize,
    /// Rows of implicit zero padding above the input (padding below is implied by the shapes).
    pub pad_top: usize,
    /// Columns of implicit zero padding left of the input.
    pub pad_left: usize,
}

/// A window placed on an input by [`Window::for_kernel`]: the window and the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFit {
    /// Strides, dilations and the padding before the input.
    pub window: Window,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl Window {
    /// Stride 1, no dilation, no padding: global pooling's window, and a placeholder.
    pub const DENSE: Window = Window {
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 0,
        pad_left: 0,
    };

    /// The window TFLite's `padding` implies for a `kernel` sliding over `input` with `stride`
    /// and `dilation`, and the output height and width; `None` if it does not fit.
    pub fn for_kernel(
        input: Shape4,
        kernel: (usize, usize),
        padding: Padding,
        stride: (usize, usize),
        dilation: (usize, usize),
    ) -> Option<WindowFit> {
        let (rows, cols) = match padding {
            Padding::Explicit { h, w } => (
                Axis::explicit(h, input.h, kernel.0, stride.0, dilation.0)?,
                Axis::explicit(w, input.w, kernel.1, stride.1, dilation.1)?,
            ),
            _ => (
                Axis::new(padding, input.h, kernel.0, stride.0, dilation.0)?,
                Axis::new(padding, input.w, kernel.1, stride.1, dilation.1)?,
            ),
        };
        Some(WindowFit {
            window: Window::from_axes(&rows, &cols),
            out_h: rows.output,
            out_w: cols.output,
        })
    }

    /// The window whose vertical axis is `rows` and horizontal axis `cols` (their strides,
    /// dilations and padding; the sizes stay with the axes).
    pub fn from_axes(rows: &Axis, cols: &Axis) -> Self {
        Window {
            stride_h: rows.stride,
            stride_w: cols.stride,
            dilation_h: rows.dilation,
            dilation_w: cols.dilation,
            pad_top: rows.pad,
            pad_left: cols.pad,
        }
    }

    /// The vertical axis of this window over an input of height `input` giving `output` rows.
    pub fn rows(&self, input: usize, kernel: usize, output: usize) -> Axis {
        Axis {
            input,
            kernel,
            stride: self.stride_h,
            dilation: self.dilation_h,
            pad: self.pad_top,
            output,
        }
    }

    /// The horizontal axis, as [`Self::rows`].
    pub fn cols(&self, input: usize, kernel: usize, output: usize) -> Axis {
        Axis {
            input,
            kernel,
            stride: self.stride_w,
            dilation: self.dilation_w,
            pad: self.pad_left,
            output,
        }
    }
}

/// TFLite's padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Padding {
    /// Output size `ceil(in / stride)`; any odd padding goes below/right, as in TFLite.
    Same,
    /// No padding: only windows that fit entirely.
    Valid,
    /// Given amounts `(before, after)` along the height and the width: a VALID window over
    /// the input padded with its zero point (what folding a PAD into a convolution gives).
    /// Each amount must be smaller than the dilated kernel.
    Explicit {
        /// Rows above and below.
        h: (usize, usize),
        /// Columns left and right.
        w: (usize, usize),
    },
}

impl Padding {
    /// Output size and padding before the input along one axis, as TFLite computes them.
    /// `None` if the window does not fit (VALID), a parameter is zero, or a size overflows;
    /// always for `Explicit`, whose amounts differ by axis (see [`Window::for_kernel`]).
    pub fn output_and_pad(
        self,
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
    ) -> Option<(usize, usize)> {
        let axis = Axis::new(self, input, kernel, stride, dilation)?;
        Some((axis.output, axis.pad))
    }
}

/// One spatial axis of a sliding window: everything its arithmetic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Axis {
    /// Input length.
    pub input: usize,
    /// Kernel taps.
    pub kernel: usize,
    /// Distance between consecutive windows.
    pub stride: usize,
    /// Distance between consecutive taps (1 = dense).
    pub dilation: usize,
    /// Implicit zero padding before the input (the padding after follows from `output`).
    pub pad: usize,
    /// Output length.
    pub output: usize,
}

/// Why an [`Axis`] is not consistent, in the order [`Axis::check`] tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AxisError {
    /// The stride is 0.
    ZeroStride,
    /// The dilation is 0.
    ZeroDilation,
    /// The kernel is empty.
    ZeroKernel,
    /// The padding covers the whole dilated kernel: the first window would see no input.
    PadCoversKernel,
    /// The input is empty.
    ZeroInput,
    /// A size overflows `usize`.
    Overflow,
    /// The output is empty or has a window starting past the padded input.
    Output {
        /// The largest output the input, padding and stride allow.
        most: usize,
    },
}

/// The span `(kernel - 1) * dilation + 1` a kernel covers; `None` if it is empty or overflows.
pub fn dilated_kernel(kernel: usize, dilation: usize) -> Option<usize> {
    kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)
}

impl Axis {
    /// The axis TFLite's `padding` gives a kernel over `input` (`ComputePaddingHeightWidth`):
    /// SAME outputs `ceil(in / stride)`, VALID `(in - dilated) / stride + 1`; the padding is
    /// half the shortfall, rounded down (the odd row goes after the input). `None` if a
    /// parameter is zero, the kernel does not fit (VALID), or a size overflows.
    pub fn new(
        padding: Padding,
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
    ) -> Option<Self> {
        if input == 0 || stride == 0 || dilation == 0 {
            return None;
        }
        let dilated = dilated_kernel(kernel, dilation)?;
        let output = match padding {
            Padding::Same => input.div_ceil(stride),
            Padding::Valid => input.checked_sub(dilated)? / stride + 1,
            Padding::Explicit { .. } => return None,
        };
        let covered = (output - 1).checked_mul(stride)?.checked_add(dilated)?;
        Some(Self {
            input,
            kernel,
            stride,
            dilation,
            pad: covered.saturating_sub(input) / 2,
            output,
        })
    }

    /// A VALID window over the input with `(before, after)` padding: `None` unless both are
    /// smaller than the dilated kernel (so every window sees some input and the axis is
    /// consistent), a parameter is zero, or a size overflows.
    pub fn explicit(
        (before, after): (usize, usize),
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
    ) -> Option<Self> {
        if input == 0 || stride == 0 || dilation == 0 {
            return None;
        }
        let dilated = dilated_kernel(kernel, dilation)?;
        if before >= dilated || after >= dilated {
            return None;
        }
        let padded = input.checked_add(before)?.checked_add(after)?;
        let axis = Self {
            input,
            kernel,
            stride,
            dilation,
            pad: before,
            output: padded.checked_sub(dilated)? / stride + 1,
        };
        axis.is_consistent().then_some(axis)
    }

    /// Whether `output` follows from the other sizes: nonzero sizes, padding smaller than
    /// the dilated kernel, at least one output and every window starting inside the padded
    /// input (`(output - 1) * stride < input + pad`). Passing also bounds every tap position:
    /// `input + pad + dilated` fits `usize`. `false` on overflow.
    #[inline]
    pub fn is_consistent(&self) -> bool {
        // The decoder's path, run for every layer, so it is kept short: one checked step per
        // size, each overflow ending in `false`.
        let sizes = [
            self.kernel,
            self.stride,
            self.dilation,
            self.input,
            self.output,
        ];
        if sizes.contains(&0) {
            return false;
        }
        // `dilated - 1`: the last tap's offset from the first.
        let Some(span) = (self.kernel - 1).checked_mul(self.dilation) else {
            return false;
        };
        let Some(padded) = self.input.checked_add(self.pad) else {
            return false;
        };
        let Some(last_start) = (self.output - 1).checked_mul(self.stride) else {
            return false;
        };
        // `padded + span < usize::MAX` is `padded + dilated` fitting.
        self.pad <= span
            && last_start < padded
            && padded.checked_add(span).is_some_and(|end| end < usize::MAX)
    }

    /// [`Self::is_consistent`], or the first rule broken, in [`AxisError`]'s order: what the
    /// kernels report.
    pub fn check(&self) -> Result<(), AxisError> {
        if self.is_consistent() {
            return Ok(());
        }
        let dilated = match (self.stride, self.dilation, self.kernel) {
            (0, ..) => return Err(AxisError::ZeroStride),
            (_, 0, _) => return Err(AxisError::ZeroDilation),
            (.., 0) => return Err(AxisError::ZeroKernel),
            _ => dilated_kernel(self.kernel, self.dilation).ok_or(AxisError::Overflow)?,
        };
        if self.pad >= dilated {
            return Err(AxisError::PadCoversKernel);
        }
        if self.input == 0 {
            return Err(AxisError::ZeroInput);
        }
        let padded = self.input.checked_add(self.pad);
        match padded.and_then(|p| p.checked_add(dilated)) {
            Some(_) => Err(AxisError::Output {
                most: self.max_output().ok_or(AxisError::Overflow)?,
            }),
            None => Err(AxisError::Overflow),
        }
    }

    /// The largest output whose windows all start inside the padded input:
    /// `ceil((input + pad) / stride)`; `None` on overflow or a zero stride.
    pub fn max_output(&self) -> Option<usize> {
        let padded = self.input.checked_add(self.pad)?;
        (self.stride != 0).then(|| padded.div_ceil(self.stride))
    }

    /// Kernel taps of output position `out` that land on the input: tap `k` sits at
    /// `out * stride + k * dilation` in padded coordinates, where the input spans
    /// `pad..pad + input`. Empty where that would overflow.
    pub fn taps(&self, out: usize) -> Range<usize> {
        // The kernels' form assumes a checked axis; this one must not wrap on any input.
        let start = out.checked_mul(self.stride);
        match (start, self.pad.checked_add(self.input)) {
            (Some(start), Some(_)) => {
                tap_range(start, self.pad, self.input, self.kernel, self.dilation)
            }
            _ => 0..0,
        }
    }

    /// The input position tap `tap` of output `out` reads, or `None` if it falls in the
    /// padding (or past `usize::MAX`).
    #[inline]
    pub fn input_at(&self, out: usize, tap: usize) -> Option<usize> {
        let padded = out
            .checked_mul(self.stride)?
            .checked_add(tap.checked_mul(self.dilation)?)?;
        padded.checked_sub(self.pad).filter(|&i| i < self.input)
    }

    /// The input positions a dense window (dilation 1) at output `out` covers, clipped to the
    /// input: what pooling reduces. Meaningful for an axis that passed [`Self::check`] (and
    /// `out < output`); any other gives some range rather than a panic.
    pub fn clipped(&self, out: usize) -> Range<usize> {
        // Checked axes have `out * stride < input + pad`, so nothing wraps; wrapping is what
        // the release build's plain arithmetic compiles to, so this costs pooling nothing.
        // Padded coordinates keep everything nonnegative: the input spans `pad..pad + input`.
        let start = out.wrapping_mul(self.stride);
        let end = start.saturating_add(self.kernel);
        let lo = start.max(self.pad) - self.pad;
        let hi = end
            .min(self.pad.wrapping_add(self.input))
            .saturating_sub(self.pad);
        lo..hi.max(lo)
    }
}

/// Kernel taps along one axis that land on the input (which spans `pad..pad + input` in padded
/// coordinates) for a window whose tap 0 is at `start`: tap `k` sits at `start + k * dilation`.
/// The kernels' per-pixel form, for checked axes; [`Axis::taps`] is the one for any input.
pub(crate) fn tap_range(
    start: usize,
    pad: usize,
    input: usize,
    kernel: usize,
    dilation: usize,
) -> Range<usize> {
    let end = pad + input;
    if start >= end {
        return 0..0;
    }
    // Checked windows have dilation >= 1; `max` keeps a panic path out of the kernels.
    let dilation = dilation.max(1);
    let hi = (end - start).div_ceil(dilation).min(kernel);
    let lo = pad.saturating_sub(start).div_ceil(dilation).min(hi);
    lo..hi
}

/// [`tap_range`] for dilation 1, without its divisions: the fast kernels' per-pixel form.
#[inline(always)]
pub(crate) fn dense_tap_range(
    start: usize,
    pad: usize,
    input: usize,
    kernel: usize,
) -> Range<usize> {
    let end = pad + input;
    if start >= end {
        return 0..0;
    }
    let hi = (end - start).min(kernel);
    pad.saturating_sub(start).min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{random_axis, Rng};

    /// Where tap `k` of output `out` sits, in padded coordinates (u128: never wraps).
    fn position(a: &Axis, out: usize, k: usize) -> u128 {
        out as u128 * a.stride as u128 + k as u128 * a.dilation as u128
    }

    #[test]
    fn taps_are_exactly_those_inside_the_input() {
        let mut rng = Rng(0x6e0_3e7a_11f0_5eed);
        for case in 0..2000 {
            let a = random_axis(&mut rng);
            assert!(a.is_consistent(), "case {case}: {a:?}");
            for out in 0..a.output {
                let taps = a.taps(out);
                assert!(taps.end <= a.kernel, "case {case}: {a:?}");
                for k in 0..a.kernel {
                    let p = position(&a, out, k);
                    let inside = (a.pad as u128..(a.pad + a.input) as u128).contains(&p);
                    assert_eq!(taps.contains(&k), inside, "case {case} out {out} tap {k}");
                }
                if a.dilation == 1 {
                    let start = out * a.stride;
                    let dense = dense_tap_range(start, a.pad, a.input, a.kernel);
                    assert_eq!(dense, taps, "case {case}");
                    // Pooling's clipped window is the same taps in input coordinates.
                    let clipped = a.clipped(out);
                    let expected = (start + taps.start).saturating_sub(a.pad)
                        ..(start + taps.end).saturating_sub(a.pad);
                    assert_eq!(clipped.len(), taps.len(), "case {case}");
                    if !taps.is_empty() {
                        assert_eq!(clipped, expected, "case {case}");
                    }
                }
            }
        }
    }

    #[test]
    fn same_and_valid_follow_tflite_formulas() {
        for input in 1..12usize {
            for (kernel, stride, dilation) in
                (1..6).flat_map(|k| (1..4).flat_map(move |s| (1..4).map(move |d| (k, s, d))))
            {
                // TFLite's ComputePaddingHeightWidth / ComputeOutSize, in signed arithmetic.
                let (i, s) = (input as i64, stride as i64);
                let dilated = (kernel as i64 - 1) * dilation as i64 + 1;
                let same_out = (i + s - 1) / s;
                let valid_out = (i - dilated + s) / s;
                let pad = |out: i64| (((out - 1) * s + dilated - i).max(0) / 2) as usize;
                let same = Axis::new(Padding::Same, input, kernel, stride, dilation).unwrap();
                assert_eq!((same.output, same.pad), (same_out as usize, pad(same_out)));
                assert!(same.is_consistent(), "{same:?}");
                let valid = Axis::new(Padding::Valid, input, kernel, stride, dilation);
                match valid {
                    Some(v) => {
                        assert_eq!((v.output, v.pad), (valid_out as usize, 0));
                        assert!(v.is_consistent(), "{v:?}");
                    }
                    None => assert!(valid_out <= 0, "{input} {kernel} {stride} {dilation}"),
                }
            }
        }
    }

    #[test]
    fn check_is_the_decoders_rule() {
        let mut rng = Rng(0xdec0_de00_a11c_e5e5);
        for case in 0..5000 {
            let a = Axis {
                input: rng.size(0, 6),
                kernel: rng.size(0, 4),
                stride: rng.size(0, 3),
                dilation: rng.size(0, 3),
                pad: rng.size(0, 6),
                output: rng.size(0, 8),
            };
            let sizes = [a.input, a.kernel, a.stride, a.dilation];
            let dilated = (a.kernel as u128).saturating_sub(1) * a.dilation as u128 + 1;
            let rule = !sizes.contains(&0)
                && (a.pad as u128) < dilated
                && a.output >= 1
                && position(&a, a.output - 1, 0) < (a.input + a.pad) as u128;
            assert_eq!(a.is_consistent(), rule, "case {case}: {a:?}");
            if let Err(AxisError::Output { most }) = a.check() {
                assert_eq!(Some(most), a.max_output());
            }
        }
    }

    #[test]
    fn zero_parameters_are_named_in_order() {
        let good = Axis::new(Padding::Same, 5, 3, 2, 1).unwrap();
        let with = |f: fn(&mut Axis)| {
            let mut a = good;
            f(&mut a);
            a.check()
        };
        assert_eq!(good.check(), Ok(()));
        assert_eq!(with(|a| a.stride = 0), Err(AxisError::ZeroStride));
        assert_eq!(with(|a| a.dilation = 0), Err(AxisError::ZeroDilation));
        assert_eq!(with(|a| a.kernel = 0), Err(AxisError::ZeroKernel));
        assert_eq!(with(|a| a.pad = 3), Err(AxisError::PadCoversKernel));
        assert_eq!(with(|a| a.input = 0), Err(AxisError::ZeroInput));
        assert_eq!(with(|a| a.output = 0), Err(AxisError::Output { most: 3 }));
        assert_eq!(with(|a| a.output = 4), Err(AxisError::Output { most: 3 }));
    }

    #[test]
    fn huge_sizes_give_none_or_false_instead_of_wrapping() {
        let max = usize::MAX;
        assert_eq!(dilated_kernel(max, 2), None);
        assert_eq!(dilated_kernel(2, max), None);
        assert_eq!(dilated_kernel(0, 1), None);
        assert_eq!(dilated_kernel(max, 1), Some(max));
        // SAME over the largest input: the last window would end past usize::MAX.
        assert_eq!(Axis::new(Padding::Same, max, 2, 1, 1), None);
        assert_eq!(Padding::Same.output_and_pad(max, 3, 1, 1), None);
        assert_eq!(Padding::Valid.output_and_pad(3, max, 1, 2), None);
        let fits = Axis::new(Padding::Valid, max, 1, 1, 1).unwrap();
        assert_eq!((fits.output, fits.pad), (max, 0));
        let base = Axis {
            input: max - 1,
            kernel: 3,
            stride: 1,
            dilation: 1,
            pad: 1,
            output: 1,
        };
        // input + pad + dilated kernel overflows: tap positions could not be computed.
        assert_eq!(base.check(), Err(AxisError::Overflow));
        assert!(!base.is_consistent());
        assert!(!Axis { input: max, ..base }.is_consistent());
        assert!(!Axis {
            dilation: max,
            ..base
        }
        .is_consistent());
        assert_eq!(Axis { input: max, ..base }.max_output(), None);
        // (output - 1) * stride overflows: refused, not wrapped into range.
        let wide = Axis {
            input: 4,
            stride: max / 2 + 1,
            output: 3,
            ..base
        };
        assert!(!wide.is_consistent());
        // The same near u32::MAX, where a 32-bit usize would wrap.
        let u32max = u32::MAX as usize;
        let near = Axis {
            input: u32max,
            kernel: 2,
            stride: u32max,
            dilation: u32max,
            pad: 0,
            output: 2,
        };
        assert!(!near.is_consistent());
        assert!(Axis { output: 1, ..near }.is_consistent());
        let all_max = Axis {
            input: max,
            kernel: max,
            stride: max,
            dilation: max,
            pad: max,
            output: max,
        };
        assert!(!all_max.is_consistent());
        assert!(!Axis {
            kernel: 0,
            output: 0,
            ..all_max
        }
        .is_consistent());
        assert!(!Axis { pad: 0, ..all_max }.is_consistent());
        // Taps of a position past usize::MAX are simply none.
        assert_eq!(
            Axis {
                stride: max,
                ..base
            }
            .taps(2),
            0..0
        );
        assert_eq!(Axis { input: max, ..base }.taps(0), 0..0);
    }

    /// Explicit padding with SAME's amounts is SAME's axis; with VALID's (none) VALID's; and
    /// every explicit axis is consistent, or refused.
    #[test]
    fn explicit_padding_agrees_with_same_and_valid() {
        for input in 1..10usize {
            for (kernel, stride, dilation) in
                (1..5).flat_map(|k| (1..4).flat_map(move |s| (1..3).map(move |d| (k, s, d))))
            {
                let dilated = dilated_kernel(kernel, dilation).unwrap();
                let same = Axis::new(Padding::Same, input, kernel, stride, dilation).unwrap();
                let total = ((same.output - 1) * stride + dilated).saturating_sub(input);
                let amounts = (same.pad, total - same.pad);
                if amounts.1 < dilated {
                    let explicit = Axis::explicit(amounts, input, kernel, stride, dilation);
                    assert_eq!(explicit, Some(same), "{input} {kernel} {stride} {dilation}");
                }
                let valid = Axis::new(Padding::Valid, input, kernel, stride, dilation);
                assert_eq!(
                    Axis::explicit((0, 0), input, kernel, stride, dilation),
                    valid
                );
                for before in 0..dilated + 1 {
                    for after in 0..dilated + 1 {
                        let e = Axis::explicit((before, after), input, kernel, stride, dilation);
                        if before >= dilated || after >= dilated {
                            assert_eq!(e, None);
                        } else if let Some(e) = e {
                            assert!(e.is_consistent());
                            let padded = input + before + after;
                            assert_eq!(e.output, (padded - dilated) / stride + 1);
                        } else {
                            assert!(input + before + after < dilated);
                        }
                    }
                }
            }
        }
        let explicit = Padding::Explicit {
            h: (1, 1),
            w: (0, 1),
        };
        let fit = Window::for_kernel(Shape4::new(1, 8, 7, 3), (3, 3), explicit, (2, 2), (1, 1));
        let fit = fit.unwrap();
        assert_eq!(
            (
                fit.out_h,
                fit.out_w,
                fit.window.pad_top,
                fit.window.pad_left
            ),
            (4, 3, 1, 0)
        );
        assert_eq!(explicit.output_and_pad(8, 3, 2, 1), None);
    }

    #[test]
    fn window_for_kernel_places_both_axes() {
        let input = Shape4::new(1, 7, 4, 3);
        let fit = Window::for_kernel(input, (3, 2), Padding::Same, (2, 1), (2, 1)).unwrap();
        let rows = Axis::new(Padding::Same, 7, 3, 2, 2).unwrap();
        let cols = Axis::new(Padding::Same, 4, 2, 1, 1).unwrap();
        assert_eq!((fit.out_h, fit.out_w), (rows.output, cols.output));
        assert_eq!(fit.window.rows(7, 3, fit.out_h), rows);
        assert_eq!(fit.window.cols(4, 2, fit.out_w), cols);
        assert_eq!(Window::from_axes(&rows, &cols), fit.window);
        assert_eq!(
            Window::for_kernel(input, (8, 1), Padding::Valid, (1, 1), (1, 1)),
            None
        );
    }
}
