//! Any text: `ModelSpec::parse` returns a spec or an error, and a spec that parses gives a
//! `Network` or an error. Sizes are capped here (a legitimately huge model would only show
//! that the fuzzer's process has less memory than `mote train` allows), so the memory estimate
//! `Network::new` checks still sees every shape and the allocations stay small.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_host::train::{LayerSpec, ModelSpec, Network};

/// The largest size field (filters, units, kernel side, multiplier) the target builds.
const MAX_FIELD: usize = 256;
/// The most values any layer's output (or the input) may hold.
const MAX_VOLUME: usize = 1 << 16;

fn small(layers: &[LayerSpec]) -> bool {
    let pair = |p: mote_host::train::Pair| p.h <= 16 && p.w <= 16;
    layers.iter().all(|layer| match layer {
        LayerSpec::Conv2d(s) => s.filters <= MAX_FIELD && pair(s.kernel),
        LayerSpec::DepthwiseConv2d(s) => s.depth_multiplier <= MAX_FIELD && pair(s.kernel),
        LayerSpec::SeparableConv2d(s) => {
            s.filters <= MAX_FIELD && s.depth_multiplier <= MAX_FIELD && pair(s.kernel)
        }
        LayerSpec::Dense(s) => s.units <= MAX_FIELD,
        LayerSpec::Lstm(s) => s.units <= MAX_FIELD,
        LayerSpec::Residual(r) => r.layers.len() <= 16 && small(&r.layers),
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = ModelSpec::parse(text) else {
        return;
    };
    let volume = |s: &[usize]| s.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if spec.layers.len() > 32
        || spec.classes > MAX_FIELD
        || !volume(&spec.input).is_some_and(|v| v <= MAX_VOLUME)
        || !small(&spec.layers)
    {
        return;
    }
    if let Ok(shapes) = spec.shapes() {
        if shapes
            .iter()
            .any(|s| !volume(s).is_some_and(|v| v <= MAX_VOLUME))
        {
            return;
        }
    }
    let _ = Network::new(&spec);
});
