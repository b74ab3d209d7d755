//! Any bytes (with a valid CRC): `Model::parse` returns a model or an error; an accepted model is
//! invoked (its operators decoded as they run, or once beforehand) on an arena of the size it
//! declares and must run: a panic, overflow or out-of-bounds access is a
//! finding, and so is an error from `invoke` (a model that parses cannot fail on a parameter).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_core::format::{blob_crc, DType, CRC_OFFSET, HEADER_LEN};
use mote_core::{Interpreter, Model};

fuzz_target!(|data: &[u8]| {
    // Model::parse needs a 4-byte-aligned start, as a blob in flash has.
    let mut words = vec![0u32; data.len().div_ceil(4)];
    // SAFETY: the u32 buffer is at least data.len() bytes; u8 has no alignment requirement.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) };
    bytes[..data.len()].copy_from_slice(data);
    let bytes = &mut bytes[..data.len()];
    // Reseal the CRC (over the length the header declares) so mutations reach the structural
    // checks behind it (the CRC check itself is covered by the unit tests).
    if bytes.len() >= HEADER_LEN {
        let declared = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let crc = blob_crc(&bytes[..declared.min(bytes.len())]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(model) = Model::parse(bytes) else { return };
    if model.arena_size() > 1 << 22 {
        return;
    }
    let mut arena = vec![0u32; model.arena_size().div_ceil(4)];
    // SAFETY: as above, viewing the arena's words as bytes.
    let arena = unsafe { std::slice::from_raw_parts_mut(arena.as_mut_ptr().cast::<u8>(), arena.len() * 4) };
    // Half the runs decode every operator once beforehand, the other half as each runs.
    let mut slots = vec![None; usize::from(model.op_count())];
    let mut interpreter = match data.first().is_some_and(|b| b & 1 == 1) {
        true => Interpreter::with_decoded(model, arena, &mut slots),
        false => Interpreter::new(model, arena),
    }
    .expect("an arena of the declared size, a slot per operator");
    // Inputs from the fuzzer's bytes too, so the kernels see more than zeros.
    let mut fill = data.iter().rev().copied().cycle();
    for i in 0..model.input_count() {
        match model.input(i).map(|t| t.dtype()) {
            Ok(DType::I8) => {
                for x in interpreter.input_i8(i).unwrap() {
                    *x = fill.next().unwrap_or(0) as i8;
                }
            }
            Ok(DType::F32) => {
                for x in interpreter.input_f32(i).unwrap() {
                    *x = f32::from(fill.next().unwrap_or(0) as i8) * 0.37;
                }
            }
            _ => {}
        }
    }
    if let Err(e) = interpreter.invoke() {
        panic!("parse accepted a model that invoke refused: {e}");
    }
});
