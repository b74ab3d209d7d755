//! The output stages every kernel shares: int8 requantization with its zero point and
//! clamp, the checks of an int8 layer's constants, and the f32 clamp.

use super::conv2d::same;
use super::{Int8Stage, Requant};
use crate::quant::QuantizedMultiplier;
use crate::Error;

/// Checks an int8 layer's stage and requantization constants for `channels` outputs.
pub(crate) fn check_int8(
    stage: &Int8Stage,
    requant: Requant,
    channels: usize,
    requant_what: crate::Why,
) -> Result<(), Error> {
    let invalid = |what| Err(Error::InvalidParameter { what });
    // Zero points are int8, so `-zero_point` lies in -127..=128. This also keeps every
    // product in the inner loops far from overflowing.
    if !(-127..=128).contains(&stage.input_offset) {
        return invalid(why!("int8 input_offset outside -127..=128"));
    }
    if !(-128..=127).contains(&stage.output_offset) {
        return invalid(why!("int8 output_offset outside -128..=127"));
    }
    if stage.act_min > stage.act_max {
        return invalid(why!("int8 activation range is empty (act_min > act_max)"));
    }
    if requant.len() != 1 {
        same(requant_what, channels, requant.len())?;
    }
    // `QuantizedMultiplier::from_f64` stays in this range; outside it `apply` is meaningless.
    if requant.iter().any(|q| !(-31..=30).contains(&q.shift)) {
        return invalid(why!("requant shift outside -31..=30"));
    }
    Ok(())
}

/// The int8 output stage: requantize, add the output zero point, clamp to the activation.
#[inline]
pub(crate) fn requantize(acc: i32, q: QuantizedMultiplier, stage: &Int8Stage) -> i8 {
    // Wrapping, as the C++ int32 addition behaves; only a saturated `apply` can get near it.
    let v = q.apply(acc).wrapping_add(stage.output_offset);
    v.max(i32::from(stage.act_min))
        .min(i32::from(stage.act_max)) as i8
}

/// Rejects an empty or NaN f32 clamp range.
pub(crate) fn check_clamp((lo, hi): (f32, f32)) -> Result<(), Error> {
    if lo <= hi {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            what: why!("f32 clamp range is empty or NaN"),
        })
    }
}

/// `min(max(x, lo), hi)` as C++'s `std::max`/`std::min` compute it, so NaN passes through.
#[inline]
pub(crate) fn clamp_f32(x: f32, (lo, hi): (f32, f32)) -> f32 {
    let x = if x < lo { lo } else { x };
    if hi < x {
        hi
    } else {
        x
    }
}
