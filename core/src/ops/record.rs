//! An operator's integer parameters in its blob record: one typed struct per operator, whose
//! fields are written and read in declaration order by one macro, so the host's writer and the
//! device's reader cannot disagree on a slot.
//!
//! The first [`PARAM_SLOTS`] of [`OpRecord::params`](crate::format::OpRecord::params) belong to
//! the operator; the last two are every operator's planned kernel scratch
//! ([`SCRATCH_OFFSET`], [`SCRATCH_LEN`]).

use super::{Int8Stage, Window};
use crate::format::OP_PARAMS;
use crate::Why;

/// Parameter slots an operator's own parameters may use.
pub const PARAM_SLOTS: usize = OP_PARAMS - 2;
/// Slot of the arena offset of the operator's kernel scratch (word-aligned).
pub const SCRATCH_OFFSET: usize = OP_PARAMS - 2;
/// Slot of the scratch's length in bytes (0: none; the kernel then runs its reference path).
pub const SCRATCH_LEN: usize = OP_PARAMS - 1;

/// Reads an operator's slots in order. A value out of its range is latched (the first one
/// wins) and read as a harmless placeholder, as the layer decoder does.
#[derive(Debug)]
pub struct SlotReader<'r> {
    slots: &'r [i32; OP_PARAMS],
    next: usize,
    failed: Option<Why>,
}

impl<'r> SlotReader<'r> {
    /// A reader at the first slot.
    pub fn new(slots: &'r [i32; OP_PARAMS]) -> Self {
        Self {
            slots,
            next: 0,
            failed: None,
        }
    }

    /// The next slot (0 past the operator's slots, which [`RecordParams`]'s tests rule out).
    pub fn take(&mut self) -> i32 {
        let v = match self.next < PARAM_SLOTS {
            true => self.slots[self.next],
            false => 0,
        };
        self.next += 1;
        v
    }

    /// Latches `what` unless an earlier read failed.
    #[cold]
    #[inline(never)]
    pub fn reject(&mut self, what: Why) {
        if self.failed.is_none() {
            self.failed = Some(what);
        }
    }

    /// The next slot, which must lie in `lo..=hi` (else `placeholder`, latching `what`).
    #[inline(always)]
    pub fn ranged(&mut self, lo: i32, hi: i32, placeholder: i32, what: Why) -> i32 {
        let v = self.take();
        if (lo..=hi).contains(&v) {
            v
        } else {
            self.reject(what);
            placeholder
        }
    }

    /// The first out-of-range value's reason, if any.
    pub fn failure(&self) -> Option<Why> {
        self.failed
    }

    /// Slots read so far.
    pub fn used(&self) -> usize {
        self.next
    }
}

/// Writes an operator's slots in order; a value that does not fit an `i32` slot is an error.
#[derive(Debug)]
pub struct SlotWriter {
    slots: [i32; OP_PARAMS],
    next: usize,
    overflow: bool,
}

impl SlotWriter {
    /// `v` into the next slot.
    pub fn put(&mut self, v: i32) {
        match self.slots.get_mut(self.next) {
            Some(slot) if self.next < PARAM_SLOTS => *slot = v,
            _ => self.overflow = true,
        }
        self.next += 1;
    }

    /// A size or count into the next slot.
    pub fn put_usize(&mut self, v: usize) {
        match i32::try_from(v) {
            Ok(v) => self.put(v),
            Err(_) => {
                self.overflow = true;
                self.next += 1;
            }
        }
    }
}

/// One parameter's encoding: how many slots, written and read in order.
pub trait Field: Sized {
    /// Writes the value.
    fn write(&self, w: &mut SlotWriter);
    /// Reads and range-checks the value.
    fn read(r: &mut SlotReader<'_>) -> Self;
}

/// An operator's typed parameters. Implemented by `record_params!`,
/// never by hand.
pub trait RecordParams: Sized {
    /// The slots, or `None` if a value does not fit its slot or there are too many.
    fn encode(&self) -> Option<[i32; OP_PARAMS]>;
    /// Reads the parameters; an out-of-range slot is latched in `r` and read as a placeholder.
    fn read(r: &mut SlotReader<'_>) -> Self;
    /// The parameters, or why a slot is out of its range.
    fn decode(slots: &[i32; OP_PARAMS]) -> Result<Self, Why> {
        let mut r = SlotReader::new(slots);
        let value = Self::read(&mut r);
        match r.failure() {
            Some(what) => Err(what),
            None => Ok(value),
        }
    }
    /// Slots the parameters take.
    fn slots() -> usize {
        let zeros = [0; OP_PARAMS];
        let mut r = SlotReader::new(&zeros);
        Self::read(&mut r);
        r.used()
    }
}

/// Declares an operator's parameter struct and its one encoding. Fields are [`Field`]s, stored
/// in declaration order from slot 0.
macro_rules! record_params {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::ops::record::RecordParams for $name {
            fn encode(&self) -> Option<[i32; $crate::format::OP_PARAMS]> {
                $crate::ops::record::encode_with(|_w| {
                    $($crate::ops::record::Field::write(&self.$field, _w);)*
                })
            }

            fn read(_r: &mut $crate::ops::record::SlotReader<'_>) -> Self {
                Self {
                    $($field: $crate::ops::record::Field::read(_r),)*
                }
            }
        }
    };
}

pub(crate) use record_params;

/// Runs `write` on a fresh writer: the slots, unless a value overflowed.
#[doc(hidden)]
pub fn encode_with(write: impl FnOnce(&mut SlotWriter)) -> Option<[i32; OP_PARAMS]> {
    let mut w = SlotWriter {
        slots: [0; OP_PARAMS],
        next: 0,
        overflow: false,
    };
    write(&mut w);
    (!w.overflow).then_some(w.slots)
}

/// A raw integer; its operator's decoder checks its range.
impl Field for i32 {
    fn write(&self, w: &mut SlotWriter) {
        w.put(*self);
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        r.take()
    }
}

/// A size (a filter side, a multiplier): `1..=0xFFFF`.
impl Field for usize {
    fn write(&self, w: &mut SlotWriter) {
        w.put_usize(*self);
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        r.ranged(1, 0xFFFF, 1, why!("size parameter must be in 1..=65535")) as usize
    }
}

/// Strides and dilations in `1..=0xFFFF`, paddings in `0..=0xFFFF`.
impl Field for Window {
    fn write(&self, w: &mut SlotWriter) {
        for v in [
            self.stride_h,
            self.stride_w,
            self.dilation_h,
            self.dilation_w,
            self.pad_top,
            self.pad_left,
        ] {
            w.put_usize(v);
        }
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let mut positive = |what| r.ranged(1, 0xFFFF, 1, what) as usize;
        let stride_h = positive(why!("stride must be positive"));
        let stride_w = positive(why!("stride must be positive"));
        let dilation_h = positive(why!("dilation must be positive"));
        let dilation_w = positive(why!("dilation must be positive"));
        let mut pad = || r.ranged(0, 0xFFFF, 0, why!("negative or huge padding")) as usize;
        Window {
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top: pad(),
            pad_left: pad(),
        }
    }
}

/// Zero points in the int8 range (the input's negated) and a non-empty int8 clamp.
impl Field for Int8Stage {
    fn write(&self, w: &mut SlotWriter) {
        w.put(self.input_offset);
        w.put(self.output_offset);
        w.put(self.act_min.into());
        w.put(self.act_max.into());
    }
    fn read(r: &mut SlotReader<'_>) -> Self {
        let zero_point = why!("zero point out of the int8 range");
        let input_offset = r.ranged(-127, 128, 0, zero_point);
        let output_offset = r.ranged(-128, 127, 0, zero_point);
        let clamp = why!("activation clamp out of the int8 range");
        let act_min = r.ranged(-128, 127, -128, clamp) as i8;
        let act_max = r.ranged(-128, 127, 127, clamp) as i8;
        if act_min > act_max {
            r.reject(why!("activation clamp is empty"));
        }
        Int8Stage {
            input_offset,
            output_offset,
            act_min,
            act_max,
        }
    }
}

/// No parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoParams;

impl RecordParams for NoParams {
    fn encode(&self) -> Option<[i32; OP_PARAMS]> {
        Some([0; OP_PARAMS])
    }
    fn read(_: &mut SlotReader<'_>) -> Self {
        NoParams
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Layer, OpCode};

    /// A small xorshift generator: the slot values are what matters, not their quality.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Mostly small values (where valid parameters live), sometimes extremes.
    fn slot_value(state: &mut u64) -> i32 {
        match next(state) % 8 {
            0 => [i32::MIN, i32::MAX, -129, 128, 0x1_0000, -1][next(state) as usize % 6],
            1 => (next(state) % 256) as i32 - 128,
            _ => (next(state) % 5) as i32,
        }
    }

    /// Every operator's parameters: whatever the decoder accepts, the encoder writes back
    /// slot for slot, within the operator's slots, and nothing past them.
    #[test]
    fn every_operators_parameters_round_trip() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for &op in OpCode::ALL {
            let mut accepted = 0;
            for _ in 0..20_000 {
                let mut slots = [0i32; OP_PARAMS];
                for s in &mut slots[..PARAM_SLOTS] {
                    *s = slot_value(&mut state);
                }
                let Some((used, encoded)) = Layer::params_round_trip(op, &slots) else {
                    continue;
                };
                accepted += 1;
                assert!(used <= PARAM_SLOTS, "{op:?} takes {used} slots");
                assert_eq!(encoded[..used], slots[..used], "{op:?}");
                assert!(encoded[used..].iter().all(|&v| v == 0), "{op:?}");
            }
            assert!(accepted > 100, "{op:?}: only {accepted} valid draws");
        }
    }

    /// Values out of their range are refused, each with its reason, and the first one wins.
    #[test]
    fn out_of_range_slots_are_refused_with_the_first_reason() {
        use crate::ops::conv2d::Conv2dParams;
        let mut slots = [0i32; OP_PARAMS];
        slots[..10].copy_from_slice(&[1, 1, 1, 1, 0, 0, 0, 0, -128, 127]);
        assert!(Conv2dParams::decode(&slots).is_ok());
        let mut bad = slots;
        bad[0] = 0;
        let why = Conv2dParams::decode(&bad).unwrap_err();
        assert_eq!(why.text(), Some("stride must be positive"));
        bad[7] = 1000;
        let why = Conv2dParams::decode(&bad).unwrap_err();
        assert_eq!(why.text(), Some("stride must be positive"));
        let mut empty_clamp = slots;
        empty_clamp[8] = 5;
        empty_clamp[9] = 4;
        let why = Conv2dParams::decode(&empty_clamp).unwrap_err();
        assert_eq!(why.text(), Some("activation clamp is empty"));
    }

    /// A value that does not fit its 32-bit slot cannot be written.
    #[test]
    fn an_oversized_value_is_not_encoded() {
        use crate::ops::depthwise_conv2d::DepthwiseConv2dParams;
        let window = Window::DENSE;
        let stage = Int8Stage {
            input_offset: 0,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
        };
        let fits = DepthwiseConv2dParams {
            window,
            stage,
            depth_multiplier: 3,
        };
        assert_eq!(
            DepthwiseConv2dParams::decode(&fits.encode().unwrap()),
            Ok(fits)
        );
        let huge = DepthwiseConv2dParams {
            depth_multiplier: usize::MAX,
            ..fits
        };
        assert_eq!(huge.encode(), None);
    }
}
