//! Handing something out once, on every core: Armv6-M (Cortex-M0/M0+) has no atomic swap.

use core::sync::atomic::{AtomicBool, Ordering};

/// Sets `flag`; true if this call was the one that set it.
pub fn take(flag: &AtomicBool) -> bool {
    #[cfg(target_has_atomic = "8")]
    {
        !flag.swap(true, Ordering::AcqRel)
    }
    #[cfg(not(target_has_atomic = "8"))]
    {
        critical_section::with(|_| {
            let taken = flag.load(Ordering::Acquire);
            flag.store(true, Ordering::Release);
            !taken
        })
    }
}
