//! Counting what a region of code costs, in the unit the board can honestly measure.
//!
//! QEMU does not model cycles; with `-icount shift=0` its SysTick advances one tick per core
//! clock period of executed instructions (40 on mps2-an386; board/qemu.rs has each machine's),
//! so there the unit is instructions, at that resolution. On a real Cortex-M3/M4/M7 the DWT
//! cycle counter gives cycles; the RP2040's Cortex-M0+ has none, so there a 1 MHz timer gives
//! microseconds.

/// What a [`Cost`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Executed instructions (QEMU's SysTick under `-icount shift=0`).
    #[cfg_attr(not(feature = "semihosting"), allow(dead_code))]
    Instructions,
    /// Core clock cycles (DWT CYCCNT on hardware).
    #[cfg_attr(
        not(any(feature = "board-nrf52840", feature = "board-stm32f4")),
        allow(dead_code)
    )]
    Cycles,
    /// Microseconds (a 1 MHz hardware timer).
    #[cfg_attr(not(feature = "board-rp2040"), allow(dead_code))]
    Microseconds,
}

impl Unit {
    /// The unit's name for logs (interned: the words stay out of flash).
    pub fn name(self) -> defmt::Str {
        match self {
            Unit::Instructions => defmt::intern!("instructions"),
            Unit::Cycles => defmt::intern!("cycles"),
            Unit::Microseconds => defmt::intern!("microseconds"),
        }
    }

    /// How the count was obtained, for logs.
    pub fn method(self) -> defmt::Str {
        match self {
            #[cfg(feature = "semihosting")]
            Unit::Instructions => crate::board::meter_method(),
            #[cfg(not(feature = "semihosting"))]
            Unit::Instructions => defmt::intern!("instruction count"),
            Unit::Cycles => defmt::intern!("DWT CYCCNT"),
            Unit::Microseconds => defmt::intern!("1 MHz timer"),
        }
    }
}

/// The cost of a measured region.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    /// How many units the region took.
    pub count: u64,
    /// What `count` counts.
    pub unit: Unit,
}

/// A running counter: the board's clock source turned into `unit`s.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    pub(crate) read: fn() -> u64,
    /// Counters narrower than 64 bits wrap; differences are taken modulo `mask + 1`.
    pub(crate) mask: u64,
    pub(crate) unit: Unit,
}

impl Meter {
    /// The current count; only differences between two readings mean anything.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        (self.read)()
    }

    /// What this meter counts.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The cost since `start`, a value returned by [`Meter::now`].
    #[inline(always)]
    pub fn since(&self, start: u64) -> Cost {
        Cost {
            count: self.now().wrapping_sub(start) & self.mask,
            unit: self.unit,
        }
    }
}
