//! Measuring peak stack use by painting: fill the unused stack with a pattern, run, then find
//! the lowest word the pattern no longer holds.

use core::ptr::{addr_of, read_volatile, write_volatile};

extern "C" {
    /// Top of the stack (the initial SP), from cortex-m-rt's link.x.
    static _stack_start: u32;
    /// Lowest address the stack may grow to (end of .bss/.uninit).
    static _stack_end: u32;
}

const PAINT: u32 = 0xA5A5_A5A5;
/// Paint at most this far below the current SP: enough for any kernel, quick to scan.
const SPAN: usize = 32 * 1024;
/// Leave the words just below the SP alone: `paint`'s own frame lives there.
const GUARD: usize = 64;

#[inline(always)]
fn bounds() -> (usize, usize) {
    let top = addr_of!(_stack_start) as usize;
    let end = addr_of!(_stack_end) as usize;
    // Both `paint` and `peak_bytes` are called from the same frame, so the SP here is the same.
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = end.max(sp.saturating_sub(SPAN)).next_multiple_of(4);
    let limit = (sp.min(top).saturating_sub(GUARD) & !3).max(bottom);
    (bottom, limit)
}

/// Fills the free stack below the current frame with the pattern.
#[inline(always)]
pub fn paint() {
    let (bottom, limit) = bounds();
    for addr in (bottom..limit).step_by(4) {
        // SAFETY: [bottom, limit) lies between the end of .bss and below the live stack frame
        // (a guard below the current SP), memory nothing else uses; word-aligned.
        unsafe { write_volatile(addr as *mut u32, PAINT) };
    }
}

/// Bytes of stack used below the caller's frame since the last [`paint`] (called from the
/// same frame): what the code run in between needed, excluding the harness above it.
#[inline(always)]
pub fn peak_bytes() -> usize {
    let (bottom, limit) = bounds();
    let mut addr = bottom;
    // SAFETY: reads aligned words of RAM inside the stack region painted by `paint`.
    while addr < limit && unsafe { read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    (limit + GUARD).saturating_sub(addr)
}
