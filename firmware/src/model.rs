//! The embedded model and its input vectors, chosen at build time (see build.rs).

/// Forces 4-byte alignment so weights and biases are read in place from flash.
#[repr(C, align(4))]
pub struct Aligned<T>(pub T);

include!(concat!(env!("OUT_DIR"), "/model.rs"));
