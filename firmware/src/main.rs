//! mote firmware: runs mote-core on a Cortex-M board (or QEMU's mps2-an386) and reports results
//! and their cost through defmt.
#![no_std]
#![no_main]

#[cfg(all(feature = "qemu", feature = "nrf52840"))]
compile_error!("choose exactly one board feature: `qemu` or `nrf52840`, not both");
#[cfg(not(any(feature = "qemu", feature = "nrf52840")))]
compile_error!("choose exactly one board feature: `qemu` or `nrf52840`");

mod board;
mod cost;

use core::hint::black_box;
use cortex_m_rt::entry;
use mote_core::quant::dot_i8;

/// Length of the demo vectors: long enough that the loop, not the call, dominates the count.
const DEMO_LEN: usize = 1024;

/// Deterministic int8 test vector `v[i] = (i * step + start) mod 256`, reinterpreted as i8.
/// The QEMU integration test rebuilds the same vectors on the host.
const fn demo_vector(step: usize, start: usize) -> [i8; DEMO_LEN] {
    let mut v = [0i8; DEMO_LEN];
    let mut i = 0;
    while i < DEMO_LEN {
        v[i] = ((i * step + start) % 256) as u8 as i8;
        i += 1;
    }
    v
}

static DEMO_A: [i8; DEMO_LEN] = demo_vector(7, 3);
static DEMO_B: [i8; DEMO_LEN] = demo_vector(13, 5);

#[entry]
fn main() -> ! {
    let meter = board::init();
    defmt::println!(
        "mote-firmware {=str} on {=str}",
        env!("CARGO_PKG_VERSION"),
        board::NAME
    );

    // Built with MOTE_FIRMWARE_FAULT set, the firmware fails on purpose so tests can check that
    // a panic or a fault ends the run with a failing status instead of hanging.
    match option_env!("MOTE_FIRMWARE_FAULT") {
        Some("panic") => panic!("deliberate panic (MOTE_FIRMWARE_FAULT=panic)"),
        Some("hardfault") => cortex_m::asm::udf(),
        _ => {}
    }

    // black_box keeps the compiler from folding the product of two constant vectors.
    let (a, b) = (black_box(&DEMO_A[..]), black_box(&DEMO_B[..]));
    let start = meter.now();
    let result = dot_i8(a, black_box(3), b, black_box(-5));
    let spent = meter.since(start);

    let ok = match result {
        Ok(value) => {
            defmt::println!("dot_i8 n={=usize} result={=i32}", DEMO_LEN, value);
            true
        }
        Err(e) => {
            defmt::error!("dot_i8 failed: {}", e);
            false
        }
    };
    defmt::println!(
        "cost {=u64} {=str} ({=str})",
        spent.count,
        spent.unit.as_str(),
        spent.unit.method()
    );
    board::exit(ok)
}
