//! Bulk copies and fills of 8-bit tensors, and the 256-entry table lookup, a word at a time.
//!
//! The firmware's `__aeabi_memcpy`/`__aeabi_memset` are byte loops (kept short for flash), so
//! a `copy_from_slice` or `fill` of a long run costs about five instructions per byte. These
//! move four words per iteration through unaligned word loads and stores (which the M4 does in
//! one instruction each). Each iteration stores four separate words, so the compiler cannot
//! turn the loop back into one call to those byte loops (it only does so when one store covers
//! a whole iteration).

use core::mem::take;

/// An 8-bit element type: int8 or uint8 codes, moved as raw bytes.
pub trait Byte: Copy {
    /// The code's bits.
    fn bits(self) -> u8;
    /// The code with these bits.
    fn from_bits(bits: u8) -> Self;
}

impl Byte for u8 {
    #[inline(always)]
    fn bits(self) -> u8 {
        self
    }
    #[inline(always)]
    fn from_bits(bits: u8) -> Self {
        bits
    }
}

impl Byte for i8 {
    #[inline(always)]
    fn bits(self) -> u8 {
        self as u8
    }
    #[inline(always)]
    fn from_bits(bits: u8) -> Self {
        bits as i8
    }
}

/// Bytes per iteration of the word loops.
const BLOCK: usize = 16;

/// The word at `block[at..at + 4]` (one unaligned load on the M4).
#[inline(always)]
fn word<T: Byte>(block: &[T], at: usize) -> u32 {
    u32::from_le_bytes([
        block[at].bits(),
        block[at + 1].bits(),
        block[at + 2].bits(),
        block[at + 3].bits(),
    ])
}

/// Stores `w` at `block[at..at + 4]` (one unaligned store on the M4).
#[inline(always)]
fn put<T: Byte>(block: &mut [T], at: usize, w: u32) {
    for (k, b) in w.to_le_bytes().into_iter().enumerate() {
        block[at + k] = T::from_bits(b);
    }
}

/// `dst.copy_from_slice(src)` over the shorter of the two, a block of four words at a time.
#[inline]
pub fn copy<T: Byte>(dst: &mut [T], src: &[T]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let mut to = dst.chunks_exact_mut(BLOCK);
    let mut from = src.chunks_exact(BLOCK);
    for (d, s) in (&mut to).zip(&mut from) {
        let (a, b, c, e) = (word(s, 0), word(s, 4), word(s, 8), word(s, 12));
        put(d, 0, a);
        put(d, 4, b);
        put(d, 8, c);
        put(d, 12, e);
    }
    let (dst, src) = (to.into_remainder(), from.remainder());
    if !dst.is_empty() {
        copy_short(dst, src);
    }
}

/// The tail of [`copy`] (under a block): a word pair, a word, then bytes, as far as they go.
/// Out of line, so that the loops calling [`copy`] on whole blocks stay small.
#[inline(never)]
fn copy_short<T: Byte>(dst: &mut [T], src: &[T]) {
    let (mut dst, mut src) = (dst, src);
    if dst.len() >= 8 && src.len() >= 8 {
        let ((d, dst_rest), (s, src_rest)) = (take(&mut dst).split_at_mut(8), src.split_at(8));
        put(d, 0, word(s, 0));
        put(d, 4, word(s, 4));
        (dst, src) = (dst_rest, src_rest);
    }
    if dst.len() >= 4 && src.len() >= 4 {
        let ((d, dst_rest), (s, src_rest)) = (take(&mut dst).split_at_mut(4), src.split_at(4));
        put(d, 0, word(s, 0));
        (dst, src) = (dst_rest, src_rest);
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// `dst.fill(value)`, a block of four words at a time.
#[inline]
pub fn fill<T: Byte>(dst: &mut [T], value: T) {
    let w = u32::from(value.bits()) * 0x0101_0101;
    let mut to = dst.chunks_exact_mut(BLOCK);
    for d in &mut to {
        put(d, 0, w);
        put(d, 4, w);
        put(d, 8, w);
        put(d, 12, w);
    }
    let mut rest = to.into_remainder();
    if rest.len() >= 8 {
        let (d, tail) = take(&mut rest).split_at_mut(8);
        put(d, 0, w);
        put(d, 4, w);
        rest = tail;
    }
    if rest.len() >= 4 {
        let (d, tail) = take(&mut rest).split_at_mut(4);
        put(d, 0, w);
        rest = tail;
    }
    for d in rest {
        *d = value;
    }
}

/// `output[i] = table[input[i]]` over the shorter of the two, four bytes per word.
#[inline]
pub fn lookup<T: Byte, U: Byte>(table: &[U; 256], input: &[T], output: &mut [U]) {
    let n = input.len().min(output.len());
    let (input, output) = (&input[..n], &mut output[..n]);
    let t = |x: u32| u32::from(table[(x & 0xFF) as usize].bits());
    let mut to = output.chunks_exact_mut(8);
    let mut from = input.chunks_exact(8);
    for (d, s) in (&mut to).zip(&mut from) {
        let (a, b) = (word(s, 0), word(s, 4));
        put(
            d,
            0,
            t(a) | t(a >> 8) << 8 | t(a >> 16) << 16 | t(a >> 24) << 24,
        );
        put(
            d,
            4,
            t(b) | t(b >> 8) << 8 | t(b >> 16) << 16 | t(b >> 24) << 24,
        );
    }
    for (d, s) in to.into_remainder().iter_mut().zip(from.remainder()) {
        *d = table[usize::from(s.bits())];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to a few blocks, at every offset of source and destination.
    #[test]
    fn copy_fill_and_lookup_match_the_plain_loops() {
        let src: Vec<i8> = (0..100).map(|k| (k * 37 + 5) as i8).collect();
        let mut table = [0u8; 256];
        for (k, t) in table.iter_mut().enumerate() {
            *t = (k as u8).wrapping_mul(91).wrapping_add(3);
        }
        for len in 0..60 {
            for (so, d_off) in [(0, 0), (1, 0), (0, 3), (2, 1), (3, 3)] {
                let s = &src[so..so + len];
                let mut got = vec![7i8; len + 8];
                let mut want = got.clone();
                copy(&mut got[d_off..d_off + len], s);
                want[d_off..d_off + len].copy_from_slice(s);
                assert_eq!(got, want, "copy {len} {so} {d_off}");
                // A longer destination: only the source's length is written.
                copy(&mut got[d_off..], &s[..len / 2]);
                want[d_off..d_off + len / 2].copy_from_slice(&s[..len / 2]);
                assert_eq!(got, want, "copy {len} {so} {d_off} into a longer one");
                fill(&mut got[d_off..d_off + len], -3);
                want[d_off..d_off + len].fill(-3);
                assert_eq!(got, want, "fill {len} {so} {d_off}");
                let mut out = vec![0u8; len + 8];
                lookup(&table, s, &mut out[d_off..d_off + len]);
                let mut want = vec![0u8; len + 8];
                for (o, &x) in want[d_off..].iter_mut().zip(s) {
                    *o = table[usize::from(x as u8)];
                }
                assert_eq!(out, want, "lookup {len} {so} {d_off}");
            }
        }
    }
}
