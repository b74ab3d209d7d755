//! nRF52840-DK, flashed and logged through probe-rs: defmt over RTT, DWT cycle counts.

use cortex_m::peripheral::DWT;
use defmt_rtt as _;
use panic_probe as _;

use crate::cost::{Meter, Unit};

/// The board's name, for logs (interned: the words stay out of flash).
pub fn name() -> defmt::Str {
    defmt::intern!("nrf52840-dk")
}

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

/// Start of the 32 KiB of flash memory-nrf52840.x leaves out of FLASH for learned weights.
const STORE_START: usize = 0x000F_8000;
const STORE_LEN: usize = 2 * crate::model::STORE_SLOT;
const _: () = assert!(
    STORE_START + STORE_LEN <= 0x0010_0000,
    "weight slots past the end of flash"
);

/// Learned weights go to the chip's flash through the NVMC.
pub fn weight_flash() -> nrf52840_hal::nvmc::Nvmc<nrf52840_hal::pac::NVMC> {
    let Some(p) = nrf52840_hal::pac::Peripherals::take() else {
        exit(false)
    };
    // SAFETY: memory-nrf52840.x ends FLASH at STORE_START, so neither code nor data lives in
    // [STORE_START, STORE_START + STORE_LEN); `Peripherals::take` succeeding means this runs
    // once, and the NVMC driver becomes the region's only user.
    let storage = unsafe { core::slice::from_raw_parts_mut(STORE_START as *mut u8, STORE_LEN) };
    nrf52840_hal::nvmc::Nvmc::new(p.NVMC, storage)
}

/// A system reset.
pub fn reboot() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
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
