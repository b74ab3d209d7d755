//! nRF52840-DK, flashed and logged through probe-rs: defmt over RTT, DWT cycle counts.

use cortex_m::peripheral::DWT;
use defmt_rtt as _;
use panic_probe as _;

use crate::cost::{Meter, Unit};

/// The board's name, for logs.
pub const NAME: &str = "nrf52840-dk";

/// Enables the DWT cycle counter and returns a cycle meter.
pub fn init() -> Meter {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        exit(false)
    };
    cp.DCB.enable_trace();
    DWT::unlock();
    cp.DWT.enable_cycle_counter();
    Meter {
        read: || u64::from(DWT::cycle_count()),
        mask: u64::from(u32::MAX),
        unit: Unit::Cycles,
    }
}

/// Stops the program: a breakpoint ends `probe-rs run` cleanly, a fault makes it fail.
pub fn exit(success: bool) -> ! {
    if success {
        loop {
            cortex_m::asm::bkpt();
        }
    }
    panic_probe::hard_fault()
}
