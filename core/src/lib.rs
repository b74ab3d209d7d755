//! mote-core: the part of mote that runs on the microcontroller.
//!
//! `#![no_std]` and free of `alloc`: every buffer is owned by the caller, and every problem with
//! the input comes back as an [`Error`] rather than a panic.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

#[macro_use]
mod error;
mod cast;
pub mod crc32;
pub mod format;
pub mod geometry;
pub mod input;
mod interpreter;
pub mod model;
pub mod ops;
pub mod persist;
pub mod quant;
#[cfg(test)]
pub(crate) mod test_support;
pub mod train;

pub use cast::Element;
pub use error::{Error, Why};
pub use interpreter::{Budget, Interpreter, OpHook, Progress};
pub use model::{Model, TensorInfo};
