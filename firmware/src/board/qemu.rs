//! QEMU `mps2-an386` (Cortex-M4F): semihosting for the log and the exit status, SysTick under
//! `-icount shift=0` for instruction counts.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hio};

use crate::cost::{Meter, Unit};

/// The board's name, for logs (interned: the words stay out of flash).
pub fn name() -> defmt::Str {
    defmt::intern!("qemu-mps2-an386")
}

/// mps2-an386's core clock is 25 MHz; at one instruction per ns that is 40 instructions a tick.
const INSTRUCTIONS_PER_TICK: u64 = 40;
const SYST_RELOAD: u32 = 0x00FF_FFFF;

/// Completed SysTick periods (2^24 ticks each), counted by the SysTick exception.
static SYST_WRAPS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick free-running on the core clock and returns an instruction meter.
pub fn init() -> Meter {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        exit(false)
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYST_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    Meter {
        read: read_instructions,
        mask: u64::MAX,
        unit: Unit::Instructions,
    }
}

fn read_instructions() -> u64 {
    loop {
        let wraps = SYST_WRAPS.load(Ordering::Acquire);
        let current = SYST::get_current();
        // A wrap between the two loads would pair a new count with an old period: read again.
        if SYST_WRAPS.load(Ordering::Acquire) == wraps {
            let in_period = (SYST_RELOAD + 1 - current) & SYST_RELOAD;
            let ticks = (u64::from(wraps) << 24) | u64::from(in_period);
            return ticks * INSTRUCTIONS_PER_TICK;
        }
    }
}

#[exception]
fn SysTick() {
    SYST_WRAPS.fetch_add(1, Ordering::AcqRel);
}

/// Where learned weights are kept: RAM that a reset does not clear.
pub fn weight_flash() -> crate::retained::RetainedFlash {
    match crate::retained::RetainedFlash::take() {
        Some(flash) => flash,
        None => exit(false),
    }
}

/// A system reset: the program starts again from the reset vector; retained RAM survives.
pub fn reboot() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// Ends the QEMU run; the exit status reaches the host as QEMU's own.
pub fn exit(success: bool) -> ! {
    let status = if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    };
    loop {
        debug::exit(status);
    }
}

extern "C" {
    /// cortex-m-rt's handler for exceptions and interrupts that have none of their own.
    fn DefaultHandler();
}

/// The device interrupt part of the vector table. Nothing enables an interrupt on this board,
/// so one entry is enough (cortex-m-rt's link.x requires at least one); cortex-m-rt's generic
/// table has 240, 956 bytes of flash more.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
#[used]
static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [DefaultHandler];

// Formatting the panic's arguments would link all of core::fmt (~2 KB of flash); a message that
// is a plain string literal is printed as is, anything else as its source location.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match (info.message().as_str(), info.location()) {
        (Some(message), _) => defmt::error!("panic: {=str}", message),
        (None, Some(at)) => defmt::error!("panic at {=str}:{=u32}", at.file(), at.line()),
        (None, None) => defmt::error!("panic"),
    }
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!("HardFault at pc={=u32:#010x}", frame.pc());
    exit(false)
}

/// defmt frames leave through semihosting's stdout; the host decodes them with the ELF's table.
#[defmt::global_logger]
struct SemihostingLogger;

/// Logger state, only touched inside the critical section that `acquire` opens.
struct LoggerState {
    encoder: defmt::Encoder,
    restore: critical_section::RestoreState,
    out: OutBuffer,
}

/// Batches encoded bytes so each semihosting call (a trap to the host) carries many.
struct OutBuffer {
    bytes: [u8; 128],
    len: usize,
}

impl OutBuffer {
    fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.len >= self.bytes.len() {
                self.flush();
            }
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            }
        }
    }

    fn flush(&mut self) {
        // A failed write has nowhere to be reported; the host then sees a truncated frame.
        if let Ok(mut out) = hio::hstdout() {
            let _ = out.write_all(self.bytes.get(..self.len).unwrap_or_default());
        }
        self.len = 0;
    }
}

struct LoggerCell(UnsafeCell<LoggerState>);
// SAFETY: the state is only reached between `acquire` and `release`, inside a critical section
// on a single-core chip, so no two contexts ever hold a reference at once.
unsafe impl Sync for LoggerCell {}

static LOGGER: LoggerCell = LoggerCell(UnsafeCell::new(LoggerState {
    encoder: defmt::Encoder::new(),
    restore: critical_section::RestoreState::invalid(),
    out: OutBuffer {
        bytes: [0; 128],
        len: 0,
    },
}));

/// # Safety
/// Only between `acquire` and `release`, inside their critical section.
unsafe fn logger_state() -> &'static mut LoggerState {
    // SAFETY: the caller holds the logger's critical section, so this is the only reference.
    unsafe { &mut *LOGGER.0.get() }
}

// SAFETY: `acquire` enters a critical section that `release` leaves, so the logger state is
// accessed by one context at a time; defmt guarantees the acquire/write/release order.
unsafe impl defmt::Logger for SemihostingLogger {
    fn acquire() {
        // SAFETY: paired with the `critical_section::release` in `release`.
        let restore = unsafe { critical_section::acquire() };
        // SAFETY: inside the critical section just entered.
        let state = unsafe { logger_state() };
        state.restore = restore;
        let LoggerState { encoder, out, .. } = state;
        encoder.start_frame(|bytes| out.push(bytes));
    }

    unsafe fn flush() {
        // SAFETY: defmt calls flush only while the logger is acquired.
        unsafe { logger_state() }.out.flush();
    }

    unsafe fn release() {
        // SAFETY: called after `acquire`, still inside its critical section.
        let state = unsafe { logger_state() };
        let LoggerState {
            encoder,
            out,
            restore,
        } = state;
        encoder.end_frame(|bytes| out.push(bytes));
        out.flush();
        // SAFETY: leaves the critical section entered in `acquire`.
        unsafe { critical_section::release(*restore) };
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between `acquire` and `release`.
        let LoggerState { encoder, out, .. } = unsafe { logger_state() };
        encoder.write(bytes, |encoded| out.push(encoded));
    }
}
