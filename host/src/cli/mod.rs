//! The `mote` commands that drive the host workflow: train, export, eval and the demo, and
//! the charts `bench` and `inspect` write.

pub mod demo;
pub mod plots;
pub mod train;
