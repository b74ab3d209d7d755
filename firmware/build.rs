//! Picks the board's memory map and passes the linker scripts to the firmware binary only.
use std::{env, fs, path::PathBuf};

fn main() {
    let qemu = env::var_os("CARGO_FEATURE_QEMU").is_some();
    let nrf = env::var_os("CARGO_FEATURE_NRF52840").is_some();
    let memory = match (qemu, nrf) {
        (true, false) => "memory-qemu.x",
        (false, true) => "memory-nrf52840.x",
        // main.rs reports the mistake with compile_error!; keep the build script quiet.
        _ => return,
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    embed_model(&out);
}

/// The model the firmware runs: `MOTE_MODEL` (a `.mote` file) with `MOTE_MODEL_INPUT` (raw int8
/// input vectors, back to back), else the demo model committed under `models/`.
fn embed_model(out: &std::path::Path) {
    println!("cargo:rerun-if-env-changed=MOTE_MODEL");
    println!("cargo:rerun-if-env-changed=MOTE_MODEL_INPUT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let model = env::var_os("MOTE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("models/demo.mote"));
    let input = env::var_os("MOTE_MODEL_INPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("models/demo_input.i8"));
    println!("cargo:rerun-if-changed={}", model.display());
    println!("cargo:rerun-if-changed={}", input.display());
    let bytes =
        fs::read(&model).unwrap_or_else(|e| panic!("reading the model {}: {e}", model.display()));
    let input_len = fs::metadata(&input)
        .unwrap_or_else(|e| panic!("reading the model input {}: {e}", input.display()))
        .len();
    // The arena size sits in the blob's header (bytes 16..20); mote-core validates the rest.
    let arena = match bytes.get(..20) {
        Some(h) if &h[..4] == b"MOTE" => u32::from_le_bytes([h[16], h[17], h[18], h[19]]),
        _ => panic!("{} is not a .mote model", model.display()),
    };
    let code = format!(
        "/// The model's bytes.\n\
         pub static MODEL: Aligned<[u8; {model_len}]> = Aligned(*include_bytes!({model:?}));\n\
         /// Raw int8 input vectors, back to back.\n\
         pub static INPUT: [u8; {input_len}] = *include_bytes!({input:?});\n\
         /// Arena bytes the model needs (planned offline by mote-host).\n\
         pub const ARENA_SIZE: usize = {arena};\n",
        model_len = bytes.len(),
    );
    fs::write(out.join("model.rs"), code).expect("write model.rs");
}
