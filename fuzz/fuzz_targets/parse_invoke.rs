//! Any bytes (with a valid CRC): `Model::parse` returns a model or an error; an accepted model is invoked on an
//! arena of the size it declares. A panic, overflow or out-of-bounds access is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_core::{Interpreter, Model};

fuzz_target!(|data: &[u8]| {
    // Model::parse needs a 4-byte-aligned start, as a blob in flash has.
    let mut words = vec![0u32; data.len().div_ceil(4)];
    // SAFETY: the u32 buffer is at least data.len() bytes; u8 has no alignment requirement.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) };
    bytes[..data.len()].copy_from_slice(data);
    // Reseal the CRC so mutations reach the structural checks behind it (the CRC check itself
    // is covered by the unit tests).
    if data.len() >= 16 {
        let crc = mote_core::crc32::crc32(&bytes[16..data.len()]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(model) = Model::parse(&bytes[..data.len()]) else { return };
    if model.arena_size() > 1 << 22 {
        return;
    }
    let mut arena = vec![0u32; model.arena_size().div_ceil(4)];
    // SAFETY: as above, viewing the arena's words as bytes.
    let arena = unsafe { std::slice::from_raw_parts_mut(arena.as_mut_ptr().cast::<u8>(), arena.len() * 4) };
    if let Ok(mut interpreter) = Interpreter::new(model, arena) {
        let _ = interpreter.invoke();
    }
});
