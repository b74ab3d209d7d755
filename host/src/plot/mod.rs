//! Charts as standalone SVG files: plain text written by hand, no fonts or system libraries
//! needed, viewable in any browser. One file per chart; `frame` holds what they share.

mod confusion;
mod frame;
mod layers;
mod memory;
mod training;

pub use confusion::confusion_matrix;
pub use layers::{layer_chart, layer_rows, LayerCosts};
pub use memory::memory_map;
pub use training::training_chart;

/// `s` safe inside SVG text and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
