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

/// The painted region, `[bottom, limit)`, below the frame that painted it.
#[derive(Clone, Copy)]
pub struct Painted {
    bottom: usize,
    limit: usize,
}

/// Fills the free stack below the current frame with the pattern.
#[inline(always)]
pub fn paint() -> Painted {
    let top = addr_of!(_stack_start) as usize;
    let end = addr_of!(_stack_end) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = end.max(sp.saturating_sub(SPAN)).next_multiple_of(4);
    let limit = (sp.min(top).saturating_sub(GUARD) & !3).max(bottom);
    let painted = Painted { bottom, limit };
    painted.fill(limit);
    painted
}

impl Painted {
    /// Paints `[bottom, below)` again (word-aligned, within the region).
    #[inline(always)]
    fn fill(&self, below: usize) {
        for addr in (self.bottom..below.min(self.limit)).step_by(4) {
            // SAFETY: [bottom, below) lies between the end of .bss and below the live stack
            // frames (a guard below the SP of whoever calls), memory nothing else uses;
            // word-aligned.
            unsafe { write_volatile(addr as *mut u32, PAINT) };
        }
    }

    /// Paints again everything below the caller's frame (a guard below its SP), so the next
    /// [`Self::peak_bytes`] sees only what runs after this.
    #[inline(always)]
    pub fn repaint_below_caller(&self) {
        let sp = cortex_m::register::msp::read() as usize;
        self.fill(sp.saturating_sub(GUARD) & !3);
    }

    /// Bytes of stack used below the painting frame since the last paint: what the code run
    /// in between needed, excluding the harness above it.
    #[inline(always)]
    pub fn peak_bytes(&self) -> usize {
        (self.limit + GUARD).saturating_sub(self.lowest_used())
    }

    /// Bytes from the top of the stack down to the deepest a peak of `peak_bytes` below this
    /// painting frame reached.
    pub fn depth_from_top(&self, peak_bytes: usize) -> usize {
        top().saturating_sub(self.limit + GUARD) + peak_bytes
    }

    /// The lowest address the pattern no longer holds (`limit` if it holds everywhere).
    #[inline(always)]
    fn lowest_used(&self) -> usize {
        let mut addr = self.bottom;
        // SAFETY: reads aligned words of RAM inside the stack region painted by `paint`.
        while addr < self.limit && unsafe { read_volatile(addr as *const u32) } == PAINT {
            addr += 4;
        }
        addr
    }
}

fn top() -> usize {
    addr_of!(_stack_start) as usize
}

/// The stack since reset: painted once, first thing in `main`, and read as the deepest any
/// code has gone, from the top of the stack (the reset handler's and `main`'s frames included).
#[derive(Clone, Copy)]
pub struct FromReset(Painted);

/// Paints the free stack for [`FromReset`].
#[inline(always)]
pub fn paint_from_reset() -> FromReset {
    FromReset(paint())
}

impl FromReset {
    /// Bytes from the top of the stack to the deepest word used since the paint.
    pub fn peak_bytes(&self) -> usize {
        top().saturating_sub(self.0.lowest_used())
    }
}
