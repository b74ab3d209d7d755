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
}
