//! Reinterpreting byte buffers as typed slices without copying: the one place where mote-core
//! turns `[u8]` (a flash-resident blob, the caller's arena) into `[i8]`, `[i32]` or `[f32]`.

use crate::format::DType;

#[cfg(target_endian = "big")]
compile_error!("mote's blob and arena are little-endian; big-endian targets are not supported");

/// Plain-old-data element types: every bit pattern is a valid value, no padding.
///
/// # Safety
/// Implement only for types with no invalid bit patterns and no padding bytes.
pub unsafe trait Pod: Copy {}
// SAFETY: integers and floats accept every bit pattern and have no padding.
unsafe impl Pod for i8 {}
// SAFETY: as above.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for i16 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for f32 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: arrays of u32 have no padding and accept every bit pattern.
unsafe impl Pod for [u32; 2] {}
// SAFETY: as above.
unsafe impl Pod for [u32; 4] {}
// SAFETY: arrays of integers have no padding and accept every bit pattern.
unsafe impl Pod for [i32; 2] {}
// SAFETY: as above.
unsafe impl Pod for [u8; 2] {}
// SAFETY: `#[repr(C)]` pair of i32: no padding, every bit pattern valid.
unsafe impl Pod for crate::quant::QuantizedMultiplier {}

/// The element types a model's tensors have, each with its [`DType`].
pub trait Element: Pod {
    /// Its type in the blob.
    const DTYPE: DType;
}

impl Element for i8 {
    const DTYPE: DType = DType::I8;
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
impl Element for i16 {
    const DTYPE: DType = DType::I16;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

/// Views `bytes` as `[T]`, or `None` if it is misaligned for `T` or not a whole number of `T`s.
pub(crate) fn slice<T: Pod>(bytes: &[u8]) -> Option<&[T]> {
    let size = core::mem::size_of::<T>();
    if bytes.len() % size != 0 || bytes.as_ptr().align_offset(core::mem::align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: the pointer is aligned for T (checked), the length covers exactly
    // `len / size` Ts inside `bytes`, T is Pod so any bytes are a valid T, and the
    // lifetime and immutability are inherited from `bytes`.
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Mutable version of [`slice`].
pub(crate) fn slice_mut<T: Pod>(bytes: &mut [u8]) -> Option<&mut [T]> {
    let size = core::mem::size_of::<T>();
    if bytes.len() % size != 0 || bytes.as_ptr().align_offset(core::mem::align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: as in `slice`; the exclusive borrow of `bytes` moves to the returned slice, and
    // any T written is a valid sequence of bytes since T is Pod.
    Some(unsafe {
        core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), bytes.len() / size)
    })
}

/// Splits `n` values of `T` off the front of `bytes` (moved past them), or `None` if `bytes`
/// is too short or misaligned for `T`.
pub(crate) fn take_mut<'a, T: Pod>(bytes: &mut &'a mut [u8], n: usize) -> Option<&'a mut [T]> {
    let len = n.checked_mul(core::mem::size_of::<T>())?;
    // Each part ends on a multiple of 8, so the next part stays aligned.
    let step = len.next_multiple_of(8).min(bytes.len());
    if len > bytes.len() {
        return None;
    }
    let (head, tail) = core::mem::take(bytes).split_at_mut(step);
    *bytes = tail;
    slice_mut(&mut head[..len])
}

/// Views int8 values as i32 words, or `None` if misaligned or not a whole number of words.
pub(crate) fn i8_as_i32_mut(values: &mut [i8]) -> Option<&mut [i32]> {
    if values.len() % 4 != 0 || values.as_ptr().align_offset(4) != 0 {
        return None;
    }
    // SAFETY: aligned for i32 and exactly `len / 4` words long (both checked); every bit
    // pattern is a valid i32 and a valid i8, so either view may write anything; the exclusive
    // borrow of `values` moves to the result.
    Some(unsafe {
        core::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<i32>(), values.len() / 4)
    })
}

/// Views words as their bytes (every u32 is four valid bytes): a word-aligned byte buffer.
#[cfg(test)]
pub(crate) fn words_as_bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: u8 has alignment 1 and every bit pattern is valid; the length covers exactly
    // the words' bytes; the exclusive borrow of `words` moves to the result.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_misaligned_and_ragged_views() {
        let words = [0x0403_0201u32, 0x0807_0605];
        // SAFETY: viewing two u32 as 8 bytes, in bounds.
        let bytes: &[u8] = unsafe { core::slice::from_raw_parts(words.as_ptr().cast(), 8) };
        assert_eq!(slice::<i32>(bytes), Some(&[0x0403_0201, 0x0807_0605][..]));
        assert_eq!(slice::<i32>(&bytes[1..5]), None);
        assert_eq!(slice::<i32>(&bytes[..6]), None);
        assert_eq!(slice::<i8>(&bytes[1..3]), Some(&[2i8, 3][..]));
    }
}
