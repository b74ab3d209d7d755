//! Every QEMU machine mote runs on: semihosting for the log and the exit status, SysTick under
//! `-icount shift=0` for instruction counts. The machines differ in their name and their core
//! clock (QEMU's machine definitions): mps2-an385 (Cortex-M3), mps2-an386 (Cortex-M4F) and
//! mps2-an500 (Cortex-M7) run at 25 MHz, mps2-an505 (Cortex-M33) at 20 MHz, mps3-an547
//! (Cortex-M55) at 32 MHz, the micro:bit's nRF51 (Cortex-M0) at 16 MHz.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hio};

use crate::cost::{Meter, Unit};

/// The board's name, for logs (interned: the words stay out of flash, as do the other
/// machines' names here).
// Clippy sees every `defmt::intern!` as the same block; the strings differ.
#[allow(clippy::if_same_then_else)]
pub fn name() -> defmt::Str {
    if cfg!(feature = "board-qemu-m3") {
        defmt::intern!("qemu-mps2-an385")
    } else if cfg!(feature = "board-qemu-m7") {
        defmt::intern!("qemu-mps2-an500")
    } else if cfg!(feature = "board-qemu-m33") {
        defmt::intern!("qemu-mps2-an505")
    } else if cfg!(feature = "board-qemu-m55") {
        defmt::intern!("qemu-mps3-an547")
    } else if cfg!(feature = "board-microbit") {
        defmt::intern!("qemu-microbit")
    } else {
        defmt::intern!("qemu-mps2-an386")
    }
}

/// How the meter counts, for logs.
#[allow(clippy::if_same_then_else)]
pub fn meter_method() -> defmt::Str {
    if cfg!(feature = "board-qemu-m33") {
        defmt::intern!("SysTick x 50 under qemu -icount shift=0")
    } else if cfg!(feature = "board-qemu-m55") {
        defmt::intern!("SysTick x 31.25 under qemu -icount shift=0")
    } else if cfg!(feature = "board-microbit") {
        defmt::intern!("SysTick x 62.5 under qemu -icount shift=0")
    } else {
        defmt::intern!("SysTick x 40 under qemu -icount shift=0")
    }
}

/// Instructions per SysTick tick, as a fraction: one instruction per virtual ns, one tick per
/// core clock period (25 MHz: 40 ns; 20 MHz: 50; 32 MHz: 31.25; 16 MHz: 62.5).
const INSTRUCTIONS_PER_TICK: (u64, u64) = if cfg!(feature = "board-qemu-m33") {
    (50, 1)
} else if cfg!(feature = "board-qemu-m55") {
    (125, 4)
} else if cfg!(feature = "board-microbit") {
    (125, 2)
} else {
    (40, 1)
};
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
            let (num, den) = INSTRUCTIONS_PER_TICK;
            return ticks * num / den;
        }
    }
}

#[exception]
fn SysTick() {
    // The handler is the only writer, so a load and a store suffice (Armv6-M, the micro:bit's
    // core, has no atomic read-modify-write).
    SYST_WRAPS.store(SYST_WRAPS.load(Ordering::Acquire) + 1, Ordering::Release);
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
    if logger_busy() {
        raw_error(b"panic during a log call", None);
        exit(false)
    }
    match (info.message().as_str(), info.location()) {
        (Some(message), _) => defmt::error!("panic: {=str}", message),
        (None, Some(at)) => defmt::error!("panic at {=str}:{=u32}", at.file(), at.line()),
        (None, None) => defmt::error!("panic"),
    }
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    // A fault in the middle of a log call: the logger's frame is half written and its state
    // in use, so the message goes out raw, on semihosting's stderr, outside defmt's stream.
    if logger_busy() {
        raw_error(b"HardFault during a log call at pc=", Some(frame.pc()));
    } else {
        defmt::error!("HardFault at pc={=u32:#010x}", frame.pc());
    }
    exit(false)
}

/// `message` and `value` in hex, as plain text on semihosting's stderr (which the host shows
/// apart from the defmt stream); no formatting machinery.
fn raw_error(message: &[u8], value: Option<u32>) {
    let Ok(mut err) = hio::hstderr() else {
        return;
    };
    let _ = err.write_all(message);
    if let Some(v) = value {
        let mut hex = *b"0x00000000";
        for (i, d) in hex[2..].iter_mut().enumerate() {
            let nibble = (v >> (28 - 4 * i)) & 0xF;
            *d = b"0123456789abcdef"[nibble as usize];
        }
        let _ = err.write_all(&hex);
    }
    let _ = err.write_all(b"\n");
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
// SAFETY: the state is only reached by the context that owns the logger (`DEPTH` went from 0
// to 1 in its `acquire`), inside a critical section on a single-core chip; a fault or NMI that
// logs meanwhile is nested (`DEPTH` > 1) and never touches it. So no two contexts ever hold a
// reference at once.
unsafe impl Sync for LoggerCell {}

/// Log calls in progress: 0 free, 1 one owner, more: contexts that preempted the owner (a
/// HardFault or NMI is not masked by the critical section) and log meanwhile. Only the
/// innermost context runs, so `DEPTH > 1` while a nested context logs, and its frames are
/// dropped instead of touching the owner's state.
static DEPTH: AtomicUsize = AtomicUsize::new(0);

/// Adds `delta` to `DEPTH` and returns the old value. Armv6-M has no atomic read-modify-write:
/// there it is a load and a store inside the logger's critical section, where only a fault or
/// an NMI can come between the two; one that logs then finds `DEPTH` already counting the
/// owner or not yet, and at worst its line interleaves with the owner's.
fn depth_add(delta: isize) -> usize {
    #[cfg(target_has_atomic = "ptr")]
    {
        if delta >= 0 {
            DEPTH.fetch_add(delta.unsigned_abs(), Ordering::AcqRel)
        } else {
            DEPTH.fetch_sub(delta.unsigned_abs(), Ordering::AcqRel)
        }
    }
    #[cfg(not(target_has_atomic = "ptr"))]
    {
        let old = DEPTH.load(Ordering::Acquire);
        DEPTH.store(old.wrapping_add_signed(delta), Ordering::Release);
        old
    }
}

/// Whether a log call is in progress (a fault handler then writes raw).
fn logger_busy() -> bool {
    DEPTH.load(Ordering::Acquire) != 0
}

/// Whether the running context owns the logger (and may reach its state).
fn owner() -> bool {
    DEPTH.load(Ordering::Acquire) == 1
}

static LOGGER: LoggerCell = LoggerCell(UnsafeCell::new(LoggerState {
    encoder: defmt::Encoder::new(),
    restore: critical_section::RestoreState::invalid(),
    out: OutBuffer {
        bytes: [0; 128],
        len: 0,
    },
}));

/// # Safety
/// Only by the owner ([`owner`] true), between its `acquire` and `release`, with no other
/// reference from an earlier call still alive.
unsafe fn logger_state() -> &'static mut LoggerState {
    // SAFETY: the caller owns the logger (see `LoggerCell`), so this is the only reference.
    unsafe { &mut *LOGGER.0.get() }
}

// SAFETY: only the owning context (the one whose `acquire` took `DEPTH` from 0 to 1, inside a
// critical section) reaches the state, one call at a time; a context that preempts it and logs
// only counts itself in and out. defmt guarantees the acquire/write/release order per context.
unsafe impl defmt::Logger for SemihostingLogger {
    fn acquire() {
        // SAFETY: paired with the `critical_section::release` in `release` (a nested context's
        // restore state is "interrupts were off", so its release changes nothing).
        let restore = unsafe { critical_section::acquire() };
        if depth_add(1) != 0 {
            // Nested: the owner's frame is half written; this one is dropped.
            return;
        }
        // SAFETY: this context just became the owner.
        let state = unsafe { logger_state() };
        state.restore = restore;
        let LoggerState { encoder, out, .. } = state;
        encoder.start_frame(|bytes| out.push(bytes));
    }

    unsafe fn flush() {
        if owner() {
            // SAFETY: the owner, between its acquire and release.
            unsafe { logger_state() }.out.flush();
        }
    }

    unsafe fn release() {
        if !owner() {
            // A nested context leaving: the interrupts stay as the owner set them.
            depth_add(-1);
            return;
        }
        // SAFETY: the owner, after its `acquire`.
        let state = unsafe { logger_state() };
        let LoggerState {
            encoder,
            out,
            restore,
        } = state;
        encoder.end_frame(|bytes| out.push(bytes));
        out.flush();
        let restore = *restore;
        // The state is no longer referenced: hand the logger back, then leave the section.
        DEPTH.store(0, Ordering::Release);
        // SAFETY: leaves the critical section entered in `acquire`.
        unsafe { critical_section::release(restore) };
    }

    unsafe fn write(bytes: &[u8]) {
        if owner() {
            // SAFETY: the owner, between its acquire and release.
            let LoggerState { encoder, out, .. } = unsafe { logger_state() };
            encoder.write(bytes, |encoded| out.push(encoded));
        }
    }
}
