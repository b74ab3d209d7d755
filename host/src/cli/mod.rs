//! The `mote` commands that drive the host workflow: train, export, eval and the demo.

pub mod demo;
pub mod train;
