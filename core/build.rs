//! Sets `cfg(mote_dsp)` when the target has the Arm DSP extension (SMLAD, SXTB16, ...), which
//! stable Rust does not expose as a `target_feature`: every ARMv7E-M target (`thumbv7em-*`,
//! Cortex-M4/M7), and ARMv8-M Mainline (`thumbv8m.main-*`, where DSP is optional) when the build
//! enables it (`-C target-feature=+dsp`, or `-C target-cpu=` a core that has it).
//! `ops::simd` uses hand-written DSP kernels under this cfg and portable Rust otherwise.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mote_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let v8m_dsp = target.starts_with("thumbv8m.main")
        && (flags.contains("+dsp")
            || ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"]
                .iter()
                .any(|cpu| flags.contains(&format!("target-cpu={cpu}"))));
    if target.starts_with("thumbv7em") || v8m_dsp {
        println!("cargo::rustc-cfg=mote_dsp");
    }
}
