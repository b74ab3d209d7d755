//! The board the firmware runs on, chosen by cargo feature.

#[cfg(feature = "board-nrf52840")]
mod nrf52840;
#[cfg(feature = "board-qemu")]
mod qemu;

#[cfg(feature = "board-nrf52840")]
pub use nrf52840::{exit, init, name, reboot, weight_flash};
#[cfg(feature = "board-qemu")]
pub use qemu::{exit, init, name, reboot, weight_flash};
