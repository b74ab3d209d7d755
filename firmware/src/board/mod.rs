//! The board the firmware runs on, chosen by cargo feature.

#[cfg(feature = "board-nrf52840")]
mod nrf52840;
#[cfg(feature = "board-qemu")]
mod qemu;

#[cfg(feature = "board-nrf52840")]
pub use nrf52840::{exit, init, reboot, weight_flash, NAME};
#[cfg(feature = "board-qemu")]
pub use qemu::{exit, init, reboot, weight_flash, NAME};
