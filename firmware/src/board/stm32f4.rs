//! STM32F4 Nucleo (NUCLEO-F411RE), flashed and logged through probe-rs: defmt over RTT, the core
//! at 100 MHz (its maximum) from the internal oscillator, DWT cycle counts.

use cortex_m::peripheral::DWT;
use defmt_rtt as _;
use panic_probe as _;
use stm32f4xx_hal::{pac, prelude::*, rcc::Config};

use crate::cost::{Meter, Unit};

/// The board's name, for logs (interned: the words stay out of flash).
pub fn name() -> defmt::Str {
    defmt::intern!("nucleo-f411re")
}

/// Sets the clocks, enables the DWT cycle counter and returns a cycle meter.
pub fn init() -> Meter {
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        exit(false)
    };
    // The PLL from the 16 MHz HSI (the Nucleo's HSE is a jumper option): 100 MHz needs three
    // flash wait states, which the HAL sets; cycle counts include them.
    let _rcc = dp.RCC.freeze(Config::hsi().sysclk(100.MHz()));
    cp.DCB.enable_trace();
    DWT::unlock();
    cp.DWT.enable_cycle_counter();
    Meter {
        read: || u64::from(DWT::cycle_count()),
        mask: u64::from(u32::MAX),
        unit: Unit::Cycles,
    }
}

/// Learned weights: retained RAM (they survive a reset, not a power cycle). The F411's flash
/// sectors are 16 to 128 KiB, each erased whole; a flash store needs two sectors set aside.
pub fn weight_flash() -> crate::retained::RetainedFlash {
    match crate::retained::RetainedFlash::take() {
        Some(flash) => flash,
        None => exit(false),
    }
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
