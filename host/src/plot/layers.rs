//! The per-layer cost chart: one row per operator, horizontal bars in side-by-side panels
//! (measured cost, MACs, weight bytes), instructions per MAC at the right.

use super::frame::{fmt_bytes, fmt_count, text_width, Svg};

/// One operator's figures for [`layer_chart`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCosts {
    /// Row label, e.g. `3 CONV_2D`.
    pub label: String,
    /// Measured cost in the chart's unit (a `mote bench` run), if any.
    pub cost: Option<u64>,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Bytes of weights, if this chart shows them.
    pub weight_bytes: Option<usize>,
}

const ROW: f64 = 18.0;
const BAR: f64 = 12.0;
const PANEL: f64 = 250.0;
/// Room after the longest bar for its value.
const VALUE_ROOM: f64 = 64.0;
const GAP: f64 = 24.0;
const TOP: f64 = 58.0;

/// A panel: a header and one value per row.
struct Column {
    metric: &'static str,
    header: String,
    values: Vec<u64>,
    color: &'static str,
    fmt: fn(u64) -> String,
}

/// The per-layer chart of `rows`: a panel of measured cost (in `unit`, e.g. `instructions`)
/// when any row has one, a MACs panel, a weight-bytes panel when any row has them; each bar's
/// length is proportional to its panel's largest value. Where a row has both a cost and MACs,
/// the cost per MAC is written at the right.
pub fn layer_chart(title: &str, unit: &str, rows: &[LayerCosts]) -> String {
    let columns = columns(unit, rows);
    let label_w = rows
        .iter()
        .map(|r| text_width(&r.label, 11.0))
        .fold(60.0, f64::max);
    let left = 12.0 + label_w + 10.0;
    let per_mac = rows.iter().any(|r| r.cost.is_some() && r.macs > 0);
    let per_mac_header = format!("{unit} / MAC");
    // Bold text runs wider than the estimate.
    let per_mac_w = match per_mac {
        true => 1.15 * text_width(&per_mac_header, 11.0) + 16.0,
        false => 0.0,
    };
    let w = (left + columns.len() as f64 * (PANEL + GAP) + per_mac_w)
        .max(text_width(title, 15.0) + 24.0);
    let h = TOP + ROW * rows.len().max(1) as f64 + 20.0;
    let mut svg = Svg::new(w, h);
    svg.text(w / 2.0, 24.0, "middle", r#"font-size="15""#, title);
    if rows.is_empty() {
        svg.text(left, TOP + 12.0, "start", "", "no operators");
        return svg.finish();
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        if i % 2 == 0 {
            // Bands carry the eye from a row's label across every panel.
            svg.rect(0.0, y, w, ROW, r##"fill="#f3f3f3""##);
        }
        svg.text(left - 8.0, y + ROW / 2.0 + 4.0, "end", "", &row.label);
    }
    for (k, col) in columns.iter().enumerate() {
        draw_column(&mut svg, col, left + k as f64 * (PANEL + GAP));
    }
    if per_mac {
        let x = left + columns.len() as f64 * (PANEL + GAP);
        svg.text(
            x,
            TOP - 8.0,
            "start",
            r#"font-weight="bold""#,
            &format!("{unit} / MAC"),
        );
        for (i, row) in rows.iter().enumerate() {
            let y = TOP + ROW * i as f64 + ROW / 2.0 + 4.0;
            let text = match (row.cost, row.macs) {
                (Some(c), m) if m > 0 => format!("{:.2}", c as f64 / m as f64),
                _ => "-".to_string(),
            };
            svg.text(x, y, "start", r#"class="per-mac""#, &text);
        }
    }
    svg.finish()
}

/// The panels `rows` has data for.
fn columns(unit: &str, rows: &[LayerCosts]) -> Vec<Column> {
    let mut columns = Vec::new();
    let total = |v: &[u64]| v.iter().sum::<u64>();
    if rows.iter().any(|r| r.cost.is_some()) {
        let values: Vec<u64> = rows.iter().map(|r| r.cost.unwrap_or(0)).collect();
        columns.push(Column {
            metric: "cost",
            header: format!("{unit} (total {})", fmt_count(total(&values))),
            values,
            color: "#d62728",
            fmt: fmt_count,
        });
    }
    let macs: Vec<u64> = rows.iter().map(|r| r.macs).collect();
    columns.push(Column {
        metric: "macs",
        header: format!("MACs (total {})", fmt_count(total(&macs))),
        values: macs,
        color: "#1f77b4",
        fmt: fmt_count,
    });
    if rows.iter().any(|r| r.weight_bytes.is_some()) {
        let values: Vec<u64> = rows
            .iter()
            .map(|r| r.weight_bytes.unwrap_or(0) as u64)
            .collect();
        columns.push(Column {
            metric: "weights",
            header: format!(
                "weight bytes (total {})",
                fmt_bytes(total(&values) as usize)
            ),
            values,
            color: "#2ca02c",
            fmt: |v| fmt_bytes(v as usize),
        });
    }
    columns
}

/// One panel at `x`: header, a baseline, and a bar with its value per row.
fn draw_column(svg: &mut Svg, col: &Column, x: f64) {
    svg.text(x, TOP - 8.0, "start", r#"font-weight="bold""#, &col.header);
    let max = col.values.iter().copied().max().unwrap_or(0).max(1);
    let span = PANEL - VALUE_ROOM;
    for (i, &v) in col.values.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let len = span * v as f64 / max as f64;
        let attrs = format!(
            r#"class="bar" data-metric="{}" data-value="{v}" fill="{}""#,
            col.metric, col.color
        );
        svg.rect(x, y + (ROW - BAR) / 2.0, len, BAR, &attrs);
        svg.text(
            x + len + 4.0,
            y + ROW / 2.0 + 4.0,
            "start",
            "",
            &(col.fmt)(v),
        );
    }
    let bottom = TOP + ROW * col.values.len() as f64;
    svg.line((x, TOP), (x, bottom), r##"stroke="#555""##);
}

/// Rows for [`layer_chart`] from a model's per-layer figures and, for a `mote bench` run, the
/// firmware's per-operator costs (matched by position; none where the run reported fewer);
/// `with_weights` adds the weight bytes.
pub fn layer_rows(
    stats: &[crate::inspect::LayerStats],
    costs: Option<&[crate::report::LayerCost]>,
    with_weights: bool,
) -> Vec<LayerCosts> {
    stats
        .iter()
        .enumerate()
        .map(|(i, l)| LayerCosts {
            label: format!("{i} {}", l.op),
            cost: costs.and_then(|c| c.get(i)).map(|c| c.cost),
            macs: l.macs,
            weight_bytes: with_weights.then_some(l.weight_bytes),
        })
        .collect()
}
