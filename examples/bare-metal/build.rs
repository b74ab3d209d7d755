//! Hands cortex-m-rt's linker script and this board's memory map to the linker.
//!
//! In a build script rather than `.cargo/config.toml`'s rustflags: a `RUSTFLAGS` in the
//! environment (CI sets `-D warnings`) would replace those.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
