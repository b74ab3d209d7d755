//! The embedded model, its test vectors and its fine-tuning set, chosen at build time (see
//! build.rs: `MOTE_MODEL_DIR`).
#![allow(dead_code)] // which sets exist depends on the model directory

/// Forces 4-byte alignment so weights and biases are read in place from flash.
#[repr(C, align(4))]
pub struct Aligned<T>(pub T);

include!(concat!(env!("OUT_DIR"), "/model.rs"));
