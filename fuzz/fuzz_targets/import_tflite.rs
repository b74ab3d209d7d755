//! Any bytes: `import_tflite` returns a `.mote` blob or an error. A blob it builds must parse
//! and run (on an arena of the size it declares, inputs from the fuzzer's bytes): a panic,
//! overflow or out-of-bounds access is a finding, and so is a built blob that `Model::parse`
//! refuses or `invoke` fails on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_core::format::DType;
use mote_core::{Interpreter, Model};
use mote_host::tflite::import_tflite;
use mote_host::AlignedBytes;

fuzz_target!(|data: &[u8]| {
    let Ok(built) = import_tflite(data) else {
        return;
    };
    let blob = AlignedBytes::new(&built.bytes);
    let model = match Model::parse(blob.as_slice()) {
        Ok(model) => model,
        Err(e) => panic!("import built a blob the parser refuses: {e}"),
    };
    // Big arenas are legitimate (a model with large tensors) but slow to run.
    if model.arena_size() > 1 << 22 {
        return;
    }
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interpreter =
        Interpreter::new(model, arena.as_mut_slice()).expect("an arena of the declared size");
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
        panic!("import built a model that invoke refused: {e}");
    }
});
