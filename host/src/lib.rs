//! mote-host: the host side of mote, as a library and as the `mote` CLI.
#![deny(missing_docs)]

pub mod firmware;
pub mod qemu;
