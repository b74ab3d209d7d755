//! The arena memory map: operator steps across, arena offsets up, one rectangle per planned
//! buffer over its lifetime and its bytes.

use super::frame::{fmt_bytes, fmt_tick, nice_ticks, text_width, Scale, Svg};
use crate::inspect::{ArenaBlock, ArenaMap, BlockKind};

const LEFT: f64 = 84.0;
const TOP: f64 = 48.0;
const PLOT_H: f64 = 380.0;
const LEGEND_W: f64 = 190.0;
/// Above this many steps the x axis shows round indices instead of every operator's name.
const NAMED_STEPS: usize = 48;

/// Fill and outline of a block kind, and its legend text.
fn style(kind: BlockKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        BlockKind::Activation => ("#9ecae1", "#3182bd", "activation"),
        BlockKind::Io => ("#bcbddc", "#756bb1", "model input / output"),
        BlockKind::State => ("#a1d99b", "#31a354", "state (variable)"),
        BlockKind::Scratch => ("#fdae6b", "#e6550d", "kernel scratch"),
        BlockKind::Alias => ("none", "#3182bd", "RESHAPE (shares input)"),
    }
}

/// The memory map of `map`: x is the operator step (a last column for what outlives the
/// operators: outputs and state), y the arena offset from 0 at the bottom; each buffer is a
/// rectangle over its live steps and its bytes, labelled when big enough, coloured by kind;
/// the arena's size is a dashed line.
pub fn memory_map(title: &str, map: &ArenaMap) -> String {
    let steps = map.ops.len() + 1;
    let col = (640.0 / steps as f64).clamp(6.0, 100.0);
    let plot_w = col * steps as f64;
    let names = steps <= NAMED_STEPS;
    let label_h = match names {
        true => step_labels(map)
            .iter()
            .map(|s| text_width(s, 10.0))
            .fold(0.0, f64::max),
        false => 14.0,
    };
    let title = format!(
        "{title}: arena {}, {} buffers over {} operators",
        fmt_bytes(map.arena_size),
        map.blocks.len(),
        map.ops.len()
    );
    let w = (LEFT + plot_w + LEGEND_W).max(text_width(&title, 14.0) + 24.0);
    let h = TOP + PLOT_H + label_h + 44.0;
    let mut svg = Svg::new(w, h);
    svg.text(w / 2.0, 24.0, "middle", r#"font-size="14""#, &title);
    let top_byte = map
        .blocks
        .iter()
        .map(|b| b.offset + b.size)
        .chain([map.arena_size])
        .max()
        .unwrap_or(0);
    let y = draw_y_axis(&mut svg, top_byte, plot_w);
    draw_x_axis(&mut svg, map, col, names, label_h);
    for b in &map.blocks {
        draw_block(&mut svg, b, col, &y);
    }
    let ay = y.at(map.arena_size as f64);
    svg.line(
        (LEFT, ay),
        (LEFT + plot_w, ay),
        r##"class="arena" stroke="#c00" stroke-width="1.5" stroke-dasharray="6 4""##,
    );
    let label = format!("arena {}", fmt_bytes(map.arena_size));
    svg.text(
        LEFT + plot_w + 6.0,
        ay + 4.0,
        "start",
        r##"fill="#c00""##,
        &label,
    );
    svg.rect(LEFT, TOP, plot_w, PLOT_H, r##"fill="none" stroke="#888""##);
    draw_legend(&mut svg, map, LEFT + plot_w + 12.0);
    svg.finish()
}

/// `3 CONV_2D` per operator, and `end` for the column past the last one.
fn step_labels(map: &ArenaMap) -> Vec<String> {
    let mut labels: Vec<String> = map
        .ops
        .iter()
        .enumerate()
        .map(|(i, op)| format!("{i} {op}"))
        .collect();
    labels.push("end".into());
    labels
}

/// Byte ticks (in KiB once the arena passes 2 KiB, so ticks land on round KiB) and the scale.
fn draw_y_axis(svg: &mut Svg, top_byte: usize, plot_w: f64) -> Scale {
    let (unit, suffix) = match top_byte >= 2048 {
        true => (1024.0, " KiB"),
        false => (1.0, " B"),
    };
    let (ticks, step) = nice_ticks(0.0, (top_byte.max(1) as f64) / unit, 5);
    let y = Scale {
        lo: 0.0,
        hi: ticks.last().copied().unwrap_or(1.0) * unit,
        px0: TOP + PLOT_H,
        px1: TOP,
        log: false,
    };
    for t in &ticks {
        let py = y.at(t * unit);
        svg.line((LEFT, py), (LEFT + plot_w, py), r##"stroke="#eee""##);
        let label = format!("{}{suffix}", fmt_tick(*t, step.max(1.0)));
        svg.text(LEFT - 6.0, py + 4.0, "end", "", &label);
    }
    svg.rotated_text(16.0, TOP + PLOT_H / 2.0, -90.0, "middle", "arena offset");
    y
}

/// Operator names (or round step indices when there are many) under the columns.
fn draw_x_axis(svg: &mut Svg, map: &ArenaMap, col: f64, names: bool, label_h: f64) {
    let base = TOP + PLOT_H;
    let labels = step_labels(map);
    let every = match names {
        true => 1,
        false => (nice_ticks(0.0, labels.len() as f64, 10).1.round() as usize).max(1),
    };
    for (i, label) in labels.iter().enumerate().step_by(every) {
        let cx = LEFT + col * (i as f64 + 0.5);
        svg.line((cx, base), (cx, base + 4.0), r##"stroke="#888""##);
        match names {
            true => {
                // Vertical, so no name runs past the chart's left edge or into a neighbour.
                let (x, y) = (cx + 3.5, base + 8.0);
                let t = format!(r#"font-size="10" transform="rotate(-90 {x:.1} {y:.1})""#);
                svg.text(x, y, "end", &t, label);
            }
            false => svg.text(cx, base + 16.0, "middle", "", &i.to_string()),
        }
    }
    let x_label = "operator (execution order, left to right)";
    let mid = LEFT + col * labels.len() as f64 / 2.0;
    svg.text(mid, base + label_h + 28.0, "middle", "", x_label);
}

/// One buffer's rectangle, with its label inside when it fits.
fn draw_block(svg: &mut Svg, b: &ArenaBlock, col: f64, y: &Scale) {
    let (fill, stroke, _) = style(b.kind);
    let x0 = LEFT + col * b.first as f64;
    let x1 = LEFT + col * (b.last + 1) as f64;
    let (top, bottom) = (y.at((b.offset + b.size) as f64), y.at(b.offset as f64));
    let dash = match b.kind {
        BlockKind::Alias => r#" stroke-dasharray="3 2""#,
        _ => "",
    };
    svg.raw(&format!(
        r#"<rect class="block" data-kind="{:?}" data-label="{}" data-first="{}" data-last="{}" data-offset="{}" data-size="{}" x="{x0:.2}" y="{top:.2}" width="{:.2}" height="{:.2}" fill="{fill}" stroke="{stroke}" stroke-width="0.8"{dash}><title>{} ({}, steps {}..={}, offset {})</title></rect>"#,
        b.kind,
        super::escape(&b.label),
        b.first,
        b.last,
        b.offset,
        b.size,
        x1 - x0,
        bottom - top,
        super::escape(&b.label),
        fmt_bytes(b.size),
        b.first,
        b.last,
        b.offset
    ));
    let full = format!("{} {}", b.label, fmt_bytes(b.size));
    let fits = |s: &str| text_width(s, 10.0) + 4.0 <= x1 - x0 && bottom - top >= 13.0;
    let text = [full.as_str(), b.label.as_str()]
        .into_iter()
        .find(|s| fits(s));
    if let (Some(text), false) = (text, b.kind == BlockKind::Alias) {
        let cy = (top + bottom) / 2.0 + 3.5;
        svg.text((x0 + x1) / 2.0, cy, "middle", r#"font-size="10""#, text);
    }
}

/// A swatch per kind present, at the bottom of the right margin.
fn draw_legend(svg: &mut Svg, map: &ArenaMap, x: f64) {
    let kinds = [
        BlockKind::Activation,
        BlockKind::Io,
        BlockKind::State,
        BlockKind::Scratch,
        BlockKind::Alias,
    ];
    let present: Vec<BlockKind> = kinds
        .into_iter()
        .filter(|k| map.blocks.iter().any(|b| b.kind == *k))
        .collect();
    let mut ly = TOP + PLOT_H - 18.0 * present.len() as f64 + 10.0;
    for kind in present {
        let (fill, stroke, label) = style(kind);
        let attrs = format!(r#"fill="{fill}" stroke="{stroke}""#);
        svg.rect(x, ly - 9.0, 14.0, 11.0, &attrs);
        svg.text(x + 20.0, ly, "start", "", label);
        ly += 18.0;
    }
}
