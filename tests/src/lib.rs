//! Shared helpers for mote's cross-crate integration tests in `tests/`.

pub mod lowering;
pub mod synth;

pub mod digits_demo;
pub mod example_models;
pub mod golden;

/// The record slot a field of an operator's parameters is written to: `base` encoded, and
/// again after `change` (which must change one field's slot).
pub fn param_slot<P: mote_core::ops::record::RecordParams + Copy>(
    base: P,
    change: impl FnOnce(&mut P),
) -> usize {
    let mut changed = base;
    change(&mut changed);
    let (a, b) = (base.encode().unwrap(), changed.encode().unwrap());
    (0..a.len())
        .find(|&i| a[i] != b[i])
        .expect("the change moves a slot")
}
