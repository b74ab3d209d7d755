//! Shared helpers for mote's cross-crate integration tests in `tests/`.

pub mod lowering;
pub mod synth;

pub mod digits_demo;
pub mod golden;
