//! STRIDED_SLICE and SLICE: copy a strided box of the input. Both lower to one walk per NHWC
//! axis (first index, step, and the output's count), resolved on the host exactly as
//! TFLite-Micro's Prepare and Eval resolve begin, end, strides and masks; the kernel then only
//! copies, a contiguous run at a time where the innermost step is 1.
//!
//! The copy moves raw elements of any type, as TFLite-Micro's does: input and output need not
//! share quantization (TFLite-Micro does not check it either).

use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::{record_params, Field, SlotReader, SlotWriter};
use super::Shape4;
use crate::format::OpCode;
use crate::model::{Decoder, Scratch};
use crate::Error;

/// Where the slice starts and how it steps along each NHWC axis; which axes TFLite's
/// `shrink_axis_mask` removes from the output (bit `k`: NHWC axis `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SliceWalk {
    /// First input index per axis.
    pub start: [i32; 4],
    /// Step per axis (never 0; negative walks backwards).
    pub stride: [i32; 4],
    /// Axes of count 1 the output drops.
    pub shrink: i32,
}

/// Starts in `0..=i32::MAX`, strides non-zero, the mask in `0..=15`.
impl Field for SliceWalk {
    fn write(&self, w: &mut SlotWriter) {
        for v in self.start.iter().chain(&self.stride) {
            w.put(*v);
        }
        w.put(self.shrink);
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let start = [(); 4].map(|_| r.ranged(0, i32::MAX, 0, why!("negative slice start")));
        let stride = [(); 4].map(|_| {
            let v = r.take();
            if v == 0 {
                r.reject(why!("slice stride must not be 0"));
                return 1;
            }
            v
        });
        let shrink = r.ranged(0, 15, 0, why!("shrink mask out of range"));
        SliceWalk {
            start,
            stride,
            shrink,
        }
    }
}

record_params! {
    /// STRIDED_SLICE's and SLICE's record parameters.
    pub struct StridedSliceParams {
        /// The walk over the input.
        pub walk: SliceWalk,
    }
}

/// TFLite's STRIDED_SLICE masks and flags (its `StridedSliceOptions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceMasks {
    /// Axes whose begin is ignored (the whole range from the walk's first end).
    pub begin: i32,
    /// Axes whose end is ignored.
    pub end: i32,
    /// Ellipsis axes (TFLite-Micro ignores the mask; mote refuses it).
    pub ellipsis: i32,
    /// New axes (TFLite-Micro ignores the mask; mote refuses it).
    pub new_axis: i32,
    /// Axes removed from the output.
    pub shrink: i32,
    /// End indices relative to begin (TFLite-Micro ignores the flag; mote refuses it).
    pub offset: bool,
}

/// One axis of a resolved slice, in the input's own rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisSlice {
    /// First input index.
    pub start: usize,
    /// Step.
    pub stride: i32,
    /// Elements taken (at least 1).
    pub count: usize,
    /// Whether the output drops this axis.
    pub shrink: bool,
}

/// `x` clamped to `lo..=hi`, as TFLite's `Clamp`.
fn clamp(x: i64, lo: i64, hi: i64) -> i64 {
    x.max(lo).min(hi)
}

/// Resolves STRIDED_SLICE's constant `begin`, `end` and `strides` for an input of `dims`, as
/// TFLite-Micro's `StridedSliceStartForAxis` and `StridedSliceEndForAxis` do. Refused: a zero
/// stride, the masks TFLite-Micro ignores, an empty slice, a shrunk axis TFLite-Micro would
/// write nothing for.
pub fn resolve_strided(
    dims: &[usize],
    (begin, end, strides): (&[i32], &[i32], &[i32]),
    masks: SliceMasks,
) -> Result<[AxisSlice; 4], &'static str> {
    if masks.ellipsis != 0 || masks.new_axis != 0 || masks.offset {
        return Err(
            "STRIDED_SLICE: ellipsis_mask, new_axis_mask and offset are not supported \
                    (TFLite-Micro ignores them)",
        );
    }
    check_rank(dims, [begin.len(), end.len(), strides.len()])?;
    let mut axes = [FULL_AXIS; 4];
    for (k, &size) in dims.iter().enumerate() {
        let size = i64::try_from(size).map_err(|_| "dimension too large")?;
        let stride = strides[k];
        let bit = |mask: i32| mask & (1 << k) != 0;
        let forward = stride > 0;
        if stride == 0 {
            return Err("STRIDED_SLICE: a stride is 0");
        }
        let wrap = |x: i64| if x < 0 { x + size } else { x };
        let (lo, hi) = if forward { (0, size) } else { (-1, size - 1) };
        let mut start = clamp(wrap(begin[k].into()), lo, hi);
        if bit(masks.begin) {
            start = if forward { 0 } else { size - 1 };
        }
        let shrink = bit(masks.shrink);
        let count = if shrink {
            // TFLite-Micro's Eval stops at start + 1, so it copies nothing backwards or past
            // the end (its Prepare still expects one element).
            if !forward || start >= size {
                return Err(
                    "STRIDED_SLICE: a shrunk axis starts outside the input or walks \
                            backwards",
                );
            }
            1
        } else {
            let mut stop = clamp(wrap(end[k].into()), lo, hi);
            if bit(masks.end) {
                stop = if forward { size } else { -1 };
            }
            let step = i64::from(stride);
            let span = if forward { stop - start } else { start - stop };
            match span > 0 {
                true => (span + step.abs() - 1) / step.abs(),
                false => 0,
            }
        };
        if count == 0 {
            return Err("STRIDED_SLICE: the slice is empty");
        }
        axes[k + 4 - dims.len()] = AxisSlice {
            start: usize::try_from(start).map_err(|_| "slice start out of range")?,
            stride,
            count: usize::try_from(count).map_err(|_| "slice too long")?,
            shrink,
        };
    }
    Ok(axes)
}

/// Resolves SLICE's constant `begin` and `size` (`-1`: to the end) as TFLite-Micro's
/// `GetValidatedBeginAndSizeVectors` does; an empty slice is refused.
pub fn resolve_slice(
    dims: &[usize],
    begin: &[i32],
    size: &[i32],
) -> Result<[AxisSlice; 4], &'static str> {
    check_rank(dims, [begin.len(), size.len(), size.len()])?;
    let mut axes = [FULL_AXIS; 4];
    for (k, &dim) in dims.iter().enumerate() {
        let dim = i64::try_from(dim).map_err(|_| "dimension too large")?;
        let b = i64::from(begin[k]);
        if !(0..=dim).contains(&b) {
            return Err("SLICE: begin outside the input");
        }
        let count = match size[k] {
            -1 => dim - b,
            s => i64::from(s),
        };
        if count < 0 || count > dim - b {
            return Err("SLICE: size runs past the input");
        }
        if count == 0 {
            return Err("SLICE: the slice is empty");
        }
        axes[k + 4 - dims.len()] = AxisSlice {
            start: b as usize,
            stride: 1,
            count: count as usize,
            shrink: false,
        };
    }
    Ok(axes)
}

/// A padded leading axis: its one element.
const FULL_AXIS: AxisSlice = AxisSlice {
    start: 0,
    stride: 1,
    count: 1,
    shrink: false,
};

fn check_rank(dims: &[usize], lens: [usize; 3]) -> Result<(), &'static str> {
    if !(1..=4).contains(&dims.len()) {
        return Err("slices of rank 1 to 4 are supported");
    }
    match lens.iter().all(|&l| l == dims.len()) {
        true => Ok(()),
        false => Err("begin, end/size and strides must have one element per input axis"),
    }
}

/// The output's TFLite shape: the counts of the axes kept, in the input's rank.
pub fn output_dims(axes: &[AxisSlice; 4], rank: usize) -> impl Iterator<Item = usize> + '_ {
    axes[4 - rank..]
        .iter()
        .filter(|a| !a.shrink)
        .map(|a| a.count)
}

/// STRIDED_SLICE or SLICE, decoded: byte offsets and steps precomputed.
#[derive(Debug, Clone, Copy)]
pub struct StridedSlice {
    /// Byte offset of the first element copied.
    pub base: usize,
    /// Byte step per NHWC axis.
    pub step: [isize; 4],
    /// Elements per NHWC axis.
    pub count: [usize; 4],
    /// Bytes per element.
    pub element: usize,
    /// Input tensor.
    pub input: u16,
    /// Output tensor.
    pub output: u16,
}

impl<'a> Operator<'a> for StridedSlice {
    type Params = StridedSliceParams;
    type In = u8;
    type Out = u8;
    const INPUTS: usize = 1;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        let input = cx.input(0)?;
        let t = cx.tensor(input)?;
        let out = cx.tensor(cx.output())?;
        if out.dtype != t.dtype {
            return Err(LowerError::WrongType {
                tensor: cx.output(),
                role: "output",
                expected: t.dtype,
            });
        }
        let constant = |slot: usize| -> Result<&[i32], LowerError> {
            cx.tensor(cx.input(slot)?)?
                .i32_data
                .ok_or(LowerError::Unsupported {
                    what: "slice indices must be int32 constants",
                })
        };
        let unsupported = |what| LowerError::Unsupported { what };
        let axes = match cx.opcode() {
            OpCode::Slice => resolve_slice(t.dims, constant(1)?, constant(2)?),
            _ => {
                let o = cx.options();
                let masks = SliceMasks {
                    begin: o.begin_mask,
                    end: o.end_mask,
                    ellipsis: o.ellipsis_mask,
                    new_axis: o.new_axis_mask,
                    shrink: o.shrink_axis_mask,
                    offset: o.offset,
                };
                let ends = (constant(1)?, constant(2)?, constant(3)?);
                resolve_strided(t.dims, ends, masks)
            }
        }
        .map_err(unsupported)?;
        if !output_dims(&axes, t.dims.len()).eq(out.dims.iter().copied()) {
            let [n, h, w, c] = axes.map(|a| a.count);
            return Err(LowerError::WrongOutputShape {
                tensor: cx.output(),
                expected: Shape4::new(n, h, w, c),
            });
        }
        let mut walk = SliceWalk {
            start: [0; 4],
            stride: [1; 4],
            shrink: 0,
        };
        for (k, a) in axes.iter().enumerate() {
            walk.start[k] = i32::try_from(a.start).map_err(|_| unsupported("slice too large"))?;
            walk.stride[k] = a.stride;
            walk.shrink |= i32::from(a.shrink) << k;
        }
        cx.params(&StridedSliceParams { walk })
    }

    fn decode(d: &Decoder<'_, 'a>, params: StridedSliceParams) -> Self {
        let input = d.any_tensor(0);
        let output = d.any_tensor(usize::MAX);
        d.check(
            input.record.storage == crate::format::Storage::Arena
                && output.record.storage == crate::format::Storage::Arena,
            why!("a slice works on activations"),
        );
        d.check(
            input.dtype() == output.dtype(),
            why!("a slice's input and output types differ"),
        );
        let walk = params.walk;
        let counts = counts(walk.shrink, output.shape);
        d.check(
            counts.is_some(),
            why!("the slice's output has a dimension where an axis is shrunk"),
        );
        let count = counts.unwrap_or([1; 4]);
        let s = input.shape;
        let element = input.dtype().size();
        let pitch = [s.h * s.w * s.c, s.w * s.c, s.c, 1].map(|p| p.saturating_mul(element));
        let sizes = [s.n, s.h, s.w, s.c];
        let mut base = 0usize;
        let mut step = [0isize; 4];
        for k in 0..4 {
            let fits = walk_fits(walk.start[k], walk.stride[k], count[k], sizes[k]);
            d.check(fits, why!("the slice walks outside the input"));
            base = base.saturating_add((walk.start[k] as usize).saturating_mul(pitch[k]));
            step[k] = (walk.stride[k] as isize).saturating_mul(pitch[k] as isize);
        }
        let (step, count) = merge_runs(step, count, element);
        StridedSlice {
            base,
            step,
            count,
            element,
            input: input.index,
            output: output.index,
        }
    }

    fn io(&self) -> Option<Io> {
        Some(Io::unary(self.input, self.output, Scratch::default()))
    }

    fn run(&self, v: Views<'_, u8, u8>) -> Result<(), Error> {
        strided_slice(self, v.inputs[0].data, v.output.data)
    }
}

/// Elements per NHWC axis: 1 for shrunk axes, the output's dimensions in order for the rest
/// (the output's leading dimensions, standing for the shrunk axes, must be 1).
fn counts(shrink: i32, out: Shape4) -> Option<[usize; 4]> {
    let dims = [out.n, out.h, out.w, out.c];
    let kept = (0..4).filter(|k| shrink & (1 << k) == 0).count();
    if dims[..4 - kept].iter().any(|&d| d != 1) {
        return None;
    }
    let mut next = dims[4 - kept..].iter();
    let mut counts = [1; 4];
    for (k, c) in counts.iter_mut().enumerate() {
        if shrink & (1 << k) == 0 {
            *c = *next.next()?;
        }
    }
    Some(counts)
}

/// Outer axes whose elements continue the inner run (a slice of whole rows or images) folded
/// into it, so the kernel copies longer runs.
fn merge_runs(
    mut step: [isize; 4],
    mut count: [usize; 4],
    element: usize,
) -> ([isize; 4], [usize; 4]) {
    if step[3] != element as isize {
        return (step, count);
    }
    for k in (0..3).rev() {
        let run = count[3].saturating_mul(element);
        if count[k] > 1 && step[k] != run as isize {
            break;
        }
        count[3] = count[3].saturating_mul(count[k]);
        (count[k], step[k]) = (1, 0);
    }
    (step, count)
}

/// Whether `count` steps of `stride` from `start` stay inside `0..size`.
fn walk_fits(start: i32, stride: i32, count: usize, size: usize) -> bool {
    let (Ok(size), Ok(count)) = (i64::try_from(size), i64::try_from(count)) else {
        return false;
    };
    let last = (count - 1)
        .checked_mul(stride.into())
        .and_then(|span| span.checked_add(start.into()));
    count >= 1
        && (0..size).contains(&i64::from(start))
        && last.is_some_and(|l| (0..size).contains(&l))
}

/// The copy: for each n, h, w of the output, a run of `count[3]` elements, contiguous where
/// the channel step is one element.
// Not inlined into the interpreter: its frame would add to every other operator's.
#[inline(never)]
pub fn strided_slice(layer: &StridedSlice, input: &[u8], output: &mut [u8]) -> Result<(), Error> {
    super::built(OpCode::StridedSlice)?;
    let [cn, ch, cw, cc] = layer.count;
    let e = layer.element;
    let run = cc.checked_mul(e).ok_or(Error::ShapeOverflow)?;
    let expected = [cn, ch, cw, run]
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or(Error::ShapeOverflow)?;
    if output.len() != expected || run == 0 {
        return Err(Error::LengthMismatch {
            expected,
            actual: output.len(),
        });
    }
    let outside = || Error::InvalidParameter {
        what: why!("the slice walks outside the input"),
    };
    let [sn, sh, sw, sc] = layer.step;
    let contiguous = sc == e as isize;
    let mut rows = output.chunks_exact_mut(run);
    let mut at_n = layer.base as isize;
    for _ in 0..cn {
        let mut at_h = at_n;
        for _ in 0..ch {
            let mut at = at_h;
            for _ in 0..cw {
                let row = rows.next().ok_or_else(outside)?;
                let from = usize::try_from(at).map_err(|_| outside())?;
                if contiguous {
                    super::bytes::copy(row, input.get(from..from + run).ok_or_else(outside)?);
                } else {
                    copy_strided(input, from as isize, sc, row, e).ok_or_else(outside)?;
                }
                at = at.wrapping_add(sw);
            }
            at_h = at_h.wrapping_add(sh);
        }
        at_n = at_n.wrapping_add(sn);
    }
    Ok(())
}

/// One output row whose elements lie `step` bytes apart in the input.
fn copy_strided(input: &[u8], from: isize, step: isize, row: &mut [u8], e: usize) -> Option<()> {
    let mut at = from;
    if e == 1 {
        for out in row {
            *out = *input.get(usize::try_from(at).ok()?)?;
            at = at.wrapping_add(step);
        }
    } else {
        for out in row.chunks_exact_mut(e) {
            let i = usize::try_from(at).ok()?;
            super::bytes::copy(out, input.get(i..i + e)?);
            at = at.wrapping_add(step);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strided(dims: &[usize], b: &[i32], e: &[i32], s: &[i32], m: SliceMasks) -> Vec<usize> {
        let axes = resolve_strided(dims, (b, e, s), m).unwrap();
        output_dims(&axes, dims.len()).collect()
    }

    /// numpy's x[1:5:2, ::-1] on a 6x4 input; begin/end masks; negative indices; shrink.
    #[test]
    fn resolution_follows_tflite_micro() {
        let none = SliceMasks::default();
        assert_eq!(strided(&[6, 4], &[1, -1], &[5, -5], &[2, -1], none), [2, 4]);
        let masks = SliceMasks {
            begin: 0b10,
            end: 0b10,
            ..none
        };
        assert_eq!(strided(&[6, 4], &[1, 3], &[5, 0], &[2, -1], masks), [2, 4]);
        let axes = resolve_strided(&[6, 4], (&[1, -1], &[5, -5], &[2, -1]), none).unwrap();
        assert_eq!((axes[3].start, axes[3].count), (3, 4));
        // Shrink: x[:, -2]; the end does not matter.
        let shrink = SliceMasks {
            begin: 1,
            end: 1,
            shrink: 2,
            ..none
        };
        let axes = resolve_strided(&[6, 4], (&[0, -2], &[0, 7], &[1, 1]), shrink).unwrap();
        assert_eq!(output_dims(&axes, 2).collect::<Vec<_>>(), [6]);
        assert_eq!((axes[3].start, axes[3].shrink), (2, true));
        // Out of range ends clamp; empty slices, zero strides and ignored masks are refused.
        assert_eq!(strided(&[5], &[-100], &[100], &[1], none), [5]);
        assert!(resolve_strided(&[5], (&[3], &[1], &[1]), none).is_err());
        assert!(resolve_strided(&[5], (&[0], &[1], &[0]), none).is_err());
        let ellipsis = SliceMasks {
            ellipsis: 1,
            ..none
        };
        assert!(resolve_strided(&[5], (&[0], &[1], &[1]), ellipsis).is_err());
        let back = SliceMasks { shrink: 1, ..none };
        assert!(resolve_strided(&[5], (&[5], &[6], &[1]), back).is_err());
        assert!(resolve_strided(&[5], (&[2], &[1], &[-1]), back).is_err());
    }

    #[test]
    fn slice_sizes_resolve_and_overruns_are_refused() {
        let axes = resolve_slice(&[4, 6], &[1, 2], &[-1, 3]).unwrap();
        assert_eq!(output_dims(&axes, 2).collect::<Vec<_>>(), [3, 3]);
        assert!(resolve_slice(&[4, 6], &[1, 4], &[-1, 3]).is_err());
        assert!(resolve_slice(&[4, 6], &[5, 0], &[-1, 3]).is_err());
        assert!(resolve_slice(&[4, 6], &[0, 0], &[0, 3]).is_err());
    }

    fn layer(dims: [usize; 4], axes: [AxisSlice; 4], element: usize) -> StridedSlice {
        let pitch = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
        StridedSlice {
            base: (0..4).map(|k| axes[k].start * pitch[k] * element).sum(),
            step: [0, 1, 2, 3].map(|k| axes[k].stride as isize * (pitch[k] * element) as isize),
            count: axes.map(|a| a.count),
            element,
            input: 0,
            output: 1,
        }
    }

    /// The kernel against a direct index computation, for int8 and for 2-byte elements.
    #[test]
    fn kernel_copies_the_walk() {
        let dims = [2, 5, 4, 3];
        let axes = resolve_strided(
            &dims,
            (&[1, 4, 0, 2], &[2, 0, 4, -4], &[1, -2, 3, -1]),
            SliceMasks::default(),
        )
        .unwrap();
        let input: Vec<u8> = (0..120u8).collect();
        let mut want = Vec::new();
        for n in 0..axes[0].count {
            for h in 0..axes[1].count {
                for w in 0..axes[2].count {
                    for c in 0..axes[3].count {
                        let at = |k: usize, i: usize| {
                            axes[k].start as i64 + i as i64 * i64::from(axes[k].stride)
                        };
                        let i = ((at(0, n) * 5 + at(1, h)) * 4 + at(2, w)) * 3 + at(3, c);
                        want.push(input[i as usize]);
                    }
                }
            }
        }
        let mut out = vec![0u8; want.len()];
        strided_slice(&layer(dims, axes, 1), &input, &mut out).unwrap();
        assert_eq!(out, want);
        // The same walk over 2-byte elements moves byte pairs.
        let wide: Vec<u8> = input.iter().flat_map(|&b| [b, 200]).collect();
        let mut out2 = vec![0u8; 2 * want.len()];
        strided_slice(&layer(dims, axes, 2), &wide, &mut out2).unwrap();
        let want2: Vec<u8> = want.iter().flat_map(|&b| [b, 200]).collect();
        assert_eq!(out2, want2);
        // A contiguous inner run.
        let axes = resolve_slice(&dims, &[0, 1, 1, 0], &[-1, 2, 2, -1]).unwrap();
        let mut out = vec![0u8; 2 * 2 * 2 * 3];
        strided_slice(&layer(dims, axes, 1), &input, &mut out).unwrap();
        assert_eq!(&out[..6], &input[15..21]);
        // Wrong lengths and walks outside the input are errors, not panics.
        assert!(strided_slice(&layer(dims, axes, 1), &input, &mut [0u8; 5]).is_err());
        assert!(strided_slice(&layer(dims, axes, 1), &input[..50], &mut out).is_err());
    }

    /// Whole rows join the channel run; a gap or a reversed axis stops the merge.
    #[test]
    fn contiguous_axes_merge_into_one_run() {
        // Rows 1..3 of a [1, 4, 5, 3] image: one run of 2 * 5 * 3 elements.
        let (step, count) = merge_runs([60, 15, 3, 1], [1, 2, 5, 3], 1);
        assert_eq!((step, count), ([0, 0, 0, 1], [1, 1, 1, 30]));
        // Columns 1..3 only: the rows stay apart.
        assert_eq!(merge_runs([60, 15, 3, 1], [1, 4, 2, 3], 1).1, [1, 4, 1, 6]);
        // Every other channel: nothing merges.
        assert_eq!(merge_runs([60, 15, 6, 2], [1, 4, 5, 2], 2).1, [1, 4, 5, 2]);
        assert_eq!(merge_runs([60, 15, -3, 1], [1, 4, 5, 3], 1).1, [1, 4, 5, 3]);
    }

    #[test]
    fn counts_follow_the_output_and_the_shrink_mask() {
        assert_eq!(counts(0b0100, Shape4::new(1, 1, 6, 3)), Some([1, 6, 1, 3]));
        assert_eq!(counts(0b0100, Shape4::new(2, 1, 6, 3)), None);
        assert_eq!(counts(0, Shape4::new(2, 1, 6, 3)), Some([2, 1, 6, 3]));
        assert!(walk_fits(3, -1, 4, 4) && !walk_fits(3, -1, 5, 4) && !walk_fits(0, 2, 3, 4));
    }
}
