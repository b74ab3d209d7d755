//! Raspberry Pi Pico (RP2040, Cortex-M0+), flashed and logged through probe-rs: defmt over RTT,
//! the core at 125 MHz from the 12 MHz crystal. The Cortex-M0+ has no DWT cycle counter, so the
//! meter is the RP2040's 64-bit 1 MHz timer: microseconds.

use defmt_rtt as _;
use panic_probe as _;
use rp2040_hal::{clocks::init_clocks_and_plls, pac, Timer, Watchdog};

use crate::cost::{Meter, Unit};

/// The second-stage bootloader the boot ROM runs first, for the Pico's W25Q080 flash; the
/// linker script puts it in the first 256 bytes of flash (and names it, unmangled, to keep it).
#[link_section = ".boot2"]
#[no_mangle]
#[used]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XOSC_HZ: u32 = 12_000_000;

/// The board's name, for logs (interned: the words stay out of flash).
pub fn name() -> defmt::Str {
    defmt::intern!("rp2040-pico")
}

/// Starts the crystal, the PLLs and the timer, and returns a microsecond meter.
pub fn init() -> Meter {
    let Some(mut dp) = pac::Peripherals::take() else {
        exit(false)
    };
    let mut watchdog = Watchdog::new(dp.WATCHDOG);
    // Also makes the watchdog tick once a microsecond, which the timer counts.
    let Ok(clocks) = init_clocks_and_plls(
        XOSC_HZ,
        dp.XOSC,
        dp.CLOCKS,
        dp.PLL_SYS,
        dp.PLL_USB,
        &mut dp.RESETS,
        &mut watchdog,
    ) else {
        exit(false)
    };
    let timer = Timer::new(dp.TIMER, &mut dp.RESETS, &clocks);
    // The meter reads the counter itself (a `fn`, no state); the timer stays running.
    let _ = timer;
    Meter {
        read: read_microseconds,
        mask: u64::MAX,
        unit: Unit::Microseconds,
    }
}

/// The timer's 64-bit count; the high word is read again if the low one wrapped meanwhile.
fn read_microseconds() -> u64 {
    // SAFETY: TIMERAWH and TIMERAWL are read-only views of the free-running counter: reading
    // them has no side effect and cannot disturb the `Timer` that `init` set up.
    let timer = unsafe { &*pac::TIMER::ptr() };
    let mut high = timer.timerawh().read().bits();
    loop {
        let low = timer.timerawl().read().bits();
        let again = timer.timerawh().read().bits();
        if again == high {
            return (u64::from(high) << 32) | u64::from(low);
        }
        high = again;
    }
}

/// Learned weights: retained RAM (they survive a reset, not a power cycle); a flash store
/// needs the RP2040's flash functions run from RAM while execute-in-place is off.
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
