//! MAXIMUM and MINIMUM, int8 with TFLite's broadcasting.
//!
//! TFLite-Micro compares the int8 codes themselves (`MaximumMinimumBroadcastSlow`) and never
//! reads a quantization: the converter gives both inputs and the output one scale and zero
//! point. mote does the same, so it matches TFLite even where a file's scales differ.

use super::broadcast::{lower_binary, Binary, BinaryIo};
use super::lower::{LowerError, Lowering};
use super::operator::{Io, Operator, Views};
use super::record::NoParams;
use crate::format::OpCode;
use crate::model::Decoder;
use crate::Error;

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extremum {
    /// The larger code.
    Max,
    /// The smaller code.
    Min,
}

impl Binary for Extremum {
    #[inline(always)]
    fn one(&self, x: i8, y: i8) -> i8 {
        match self {
            Extremum::Max => x.max(y),
            Extremum::Min => x.min(y),
        }
    }

    fn vv(&self, a: &[i8], b: &[i8], out: &mut [i8]) {
        match self {
            Extremum::Max => words(a, b, out, max4),
            Extremum::Min => words(a, b, out, min4),
        }
    }
}

/// `f` on four int8 lanes at a time (whole words of `a`, `b` and `out`), the rest one by one.
#[inline(always)]
fn words(a: &[i8], b: &[i8], out: &mut [i8], f: fn(u32, u32) -> u32) {
    let quads = out
        .chunks_exact_mut(4)
        .zip(a.chunks_exact(4).zip(b.chunks_exact(4)));
    let mut done = 0;
    for (o, (x, y)) in quads {
        let word = |s: &[i8]| u32::from_le_bytes([s[0] as u8, s[1] as u8, s[2] as u8, s[3] as u8]);
        let r = f(word(x), word(y)).to_le_bytes();
        for (o, r) in o.iter_mut().zip(r) {
            *o = r as i8;
        }
        done += 4;
    }
    let tail = out.iter_mut().zip(a.iter().zip(b)).skip(done);
    // One lane in the low byte; the zero lanes above it stay zero.
    for (o, (&x, &y)) in tail {
        let r = f(u32::from(x as u8), u32::from(y as u8)) as u8;
        *o = r as i8;
    }
}

/// For each of the four bytes: all ones where `x`'s signed byte is below `y`'s.
#[inline(always)]
fn below_mask(x: u32, y: u32) -> u32 {
    // Flip the sign bits: signed order becomes unsigned order. Then compare the even and the
    // odd bytes in 16-bit lanes: (x | 0x100) - y keeps bit 8 exactly when x >= y.
    let (x, y) = (x ^ 0x8080_8080, y ^ 0x8080_8080);
    let lanes = |x: u32, y: u32| {
        let ge = ((x & 0x00FF_00FF) | 0x0100_0100).wrapping_sub(y & 0x00FF_00FF) & 0x0100_0100;
        // 0x100 -> 0x00 (x >= y), 0x000 -> 0xFF (x < y), per 16-bit lane.
        (ge >> 8) ^ 0x0001_0001
    };
    let even = lanes(x, y);
    let odd = lanes(x >> 8, y >> 8);
    (even | (odd << 8)).wrapping_mul(0xFF)
}

/// Byte-wise signed maximum.
#[inline(always)]
fn max4(x: u32, y: u32) -> u32 {
    let below = below_mask(x, y);
    (y & below) | (x & !below)
}

/// Byte-wise signed minimum.
#[inline(always)]
fn min4(x: u32, y: u32) -> u32 {
    let below = below_mask(x, y);
    (x & below) | (y & !below)
}

/// MAXIMUM or MINIMUM, decoded.
#[derive(Debug, Clone, Copy)]
pub struct MaximumMinimum<'a> {
    /// Which of the two.
    pub which: Extremum,
    /// Inputs, output and the broadcast walk.
    pub tensors: BinaryIo<'a>,
}

impl<'a> Operator<'a> for MaximumMinimum<'a> {
    type Params = NoParams;
    type In = i8;
    type Out = i8;
    const INPUTS: usize = 2;

    fn lower(cx: &mut Lowering<'_>) -> Result<(), LowerError> {
        lower_binary(cx)?;
        cx.params(&NoParams)
    }

    fn decode(d: &Decoder<'_, 'a>, _: NoParams) -> Self {
        let which = match d.opcode() {
            OpCode::Minimum => Extremum::Min,
            _ => Extremum::Max,
        };
        MaximumMinimum {
            which,
            tensors: BinaryIo::decode(d),
        }
    }

    fn io(&self) -> Option<Io> {
        Some(self.tensors.io())
    }

    fn run(&self, v: Views<'_, i8, i8>) -> Result<(), Error> {
        let op = match self.which {
            Extremum::Max => OpCode::Maximum,
            Extremum::Min => OpCode::Minimum,
        };
        super::built(op)?;
        self.tensors.run(&self.which, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::broadcast::tests::check_against_naive;
    use crate::test_support::Rng;

    #[test]
    fn word_lanes_equal_the_byte_comparison() {
        let mut rng = Rng(0x3A3A_0001);
        let corners = [0u8, 1, 0x7F, 0x80, 0x81, 0xFF];
        for i in 0..200_000u32 {
            let (x, y) = match i < 36 {
                true => {
                    let (p, q) = (corners[i as usize / 6], corners[i as usize % 6]);
                    (
                        u32::from_le_bytes([p, q, p, q]),
                        u32::from_le_bytes([q, p, p, q]),
                    )
                }
                false => (rng.next() as u32, rng.next() as u32),
            };
            let (xs, ys) = (x.to_le_bytes(), y.to_le_bytes());
            let max = max4(x, y).to_le_bytes();
            let min = min4(x, y).to_le_bytes();
            for k in 0..4 {
                let (p, q) = (xs[k] as i8, ys[k] as i8);
                assert_eq!(max[k] as i8, p.max(q), "{x:#x} {y:#x}");
                assert_eq!(min[k] as i8, p.min(q), "{x:#x} {y:#x}");
            }
        }
    }

    #[test]
    fn loops_equal_the_per_element_comparison() {
        let mut rng = Rng(0x3A3A_0002);
        check_against_naive(&Extremum::Max, &mut rng, 200);
        check_against_naive(&Extremum::Min, &mut rng, 200);
    }
}
