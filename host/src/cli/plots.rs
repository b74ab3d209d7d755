//! The charts `mote bench --plot DIR` and `mote inspect MODEL --plot DIR` write.

use super::train::write_plot;
use anyhow::{Context, Result};
use mote_core::Model;
use mote_host::bench::BenchResult;
use mote_host::inspect;
use mote_host::plot::{layer_chart, layer_rows, memory_map};
use std::path::Path;

/// `DIR/<name>-layers.svg`: measured cost and MACs per operator of a benched model.
pub fn bench(dir: &Path, model: &Model<'_>, result: &BenchResult) -> Result<()> {
    create(dir)?;
    let stats = inspect::layers(model).map_err(anyhow::Error::msg)?;
    let report = &result.report;
    let rows = layer_rows(&stats, Some(&report.layers), false);
    let title = format!(
        "{}: {} per operator (one profiled invoke) and MACs",
        result.name, report.unit
    );
    let svg = layer_chart(&title, &report.unit, &rows);
    write_plot(&dir.join(format!("{}-layers.svg", result.name)), &svg)
}

/// `DIR/<stem>-layers.svg` (MACs and weight bytes per operator) and `DIR/<stem>-memory.svg`
/// (the arena plan over time).
pub fn inspect(dir: &Path, stem: &str, model: &Model<'_>) -> Result<()> {
    create(dir)?;
    let stats = inspect::layers(model).map_err(anyhow::Error::msg)?;
    let rows = layer_rows(&stats, None, true);
    let title = format!("{stem}: MACs and weight bytes per operator");
    let svg = layer_chart(&title, "instructions", &rows);
    write_plot(&dir.join(format!("{stem}-layers.svg")), &svg)?;
    let map = inspect::arena_map(model).map_err(anyhow::Error::msg)?;
    let svg = memory_map(&format!("{stem} memory"), &map);
    write_plot(&dir.join(format!("{stem}-memory.svg")), &svg)
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
