//! The board the firmware runs on, chosen by cargo feature.

#[cfg(feature = "board-nrf52840")]
mod nrf52840;
#[cfg(feature = "semihosting")]
mod qemu;
#[cfg(feature = "board-rp2040")]
mod rp2040;
#[cfg(feature = "board-stm32f4")]
mod stm32f4;

#[cfg(feature = "board-nrf52840")]
pub use nrf52840::{exit, init, name, reboot, weight_flash};
#[cfg(feature = "semihosting")]
pub use qemu::{exit, init, meter_method, name, reboot, weight_flash};
#[cfg(feature = "board-rp2040")]
pub use rp2040::{exit, init, name, reboot, weight_flash};
#[cfg(feature = "board-stm32f4")]
pub use stm32f4::{exit, init, name, reboot, weight_flash};
