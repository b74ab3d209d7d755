//! `training.svg`: loss, accuracy and learning rate per epoch in stacked panels that share
//! the epoch axis, with the best epoch marked in each.

use super::frame::{fmt_sci, fmt_tick, log_ticks, nice_ticks, Scale, Svg};
use crate::workflow::EpochRecord;

const W: f64 = 700.0;
const LEFT: f64 = 72.0;
const PLOT_W: f64 = 470.0;
const TOP: f64 = 54.0;
const PANEL_H: f64 = 150.0;
const GAP: f64 = 30.0;
/// Space between the plot frame and the first and last epoch, so end points stay visible.
const INSET: f64 = 10.0;
const TRAIN: &str = "#1f77b4";
const VAL: &str = "#ff7f0e";
const LR: &str = "#2ca02c";

/// How a panel's y axis is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
enum YAxis {
    /// From 0 (or the lowest value) to a round number above the highest.
    FromZero,
    /// Fixed 0..1.
    Unit,
    /// Log scale if the values span more than 10x, else linear from 0.
    MaybeLog,
}

/// One stacked panel: its curves against the epoch.
struct Panel {
    name: &'static str,
    y_label: &'static str,
    axis: YAxis,
    series: Vec<(&'static str, Vec<f64>, &'static str)>,
}

/// The training chart of `history`: a loss panel (train and validation), an accuracy panel
/// (0..1) and, when the record has it, a learning-rate panel; NaN or missing values are gaps.
/// The best epoch (the one early stopping kept, else the lowest validation loss, else the
/// lowest training loss) is a dashed vertical line in every panel.
pub fn training_chart(history: &[EpochRecord]) -> String {
    let panels = panels(history);
    let h = TOP + panels.len() as f64 * (PANEL_H + GAP) + 40.0;
    let mut svg = Svg::new(W, h);
    let title = match history.len() {
        0 => "training: no epochs recorded".to_string(),
        n => format!("training: {n} epochs"),
    };
    svg.text(W / 2.0, 24.0, "middle", r#"font-size="15""#, &title);
    let n = history.len().max(1);
    let x = Scale {
        lo: 1.0,
        hi: n as f64,
        px0: LEFT + INSET,
        px1: LEFT + PLOT_W - INSET,
        log: false,
    };
    let best = best_epoch(history);
    for (k, panel) in panels.iter().enumerate() {
        let top = TOP + k as f64 * (PANEL_H + GAP);
        let bottom = k + 1 == panels.len();
        draw_panel(&mut svg, panel, top, &x, n, best, bottom);
    }
    svg.finish()
}

/// The panels `history` has data for.
fn panels(history: &[EpochRecord]) -> Vec<Panel> {
    let col = |f: fn(&EpochRecord) -> Option<f32>| -> Vec<f64> {
        history
            .iter()
            .map(|h| f(h).map_or(f64::NAN, f64::from))
            .collect()
    };
    let mut panels = vec![
        Panel {
            name: "loss",
            y_label: "loss",
            axis: YAxis::FromZero,
            series: vec![
                ("train", col(|h| Some(h.loss)), TRAIN),
                ("validation", col(|h| h.val_loss), VAL),
            ],
        },
        Panel {
            name: "accuracy",
            y_label: "accuracy",
            axis: YAxis::Unit,
            series: vec![
                ("train", col(|h| Some(h.accuracy)), TRAIN),
                ("validation", col(|h| h.val_accuracy), VAL),
            ],
        },
    ];
    let lr = col(|h| h.learning_rate);
    if lr.iter().any(|v| v.is_finite()) {
        panels.push(Panel {
            name: "learning-rate",
            y_label: "learning rate",
            axis: YAxis::MaybeLog,
            series: vec![("learning rate", lr, LR)],
        });
    }
    // A series with no value at all (no validation split) gets no legend entry either.
    for p in &mut panels {
        p.series.retain(|(_, v, _)| v.iter().any(|v| v.is_finite()));
    }
    panels
}

/// The best epoch, from 1: the last one the record marks (early stopping's pick), else the
/// lowest validation loss, else the lowest training loss.
pub(crate) fn best_epoch(history: &[EpochRecord]) -> Option<usize> {
    if let Some(i) = history.iter().rposition(|h| h.best) {
        return Some(i + 1);
    }
    let lowest = |f: fn(&EpochRecord) -> Option<f32>| {
        history
            .iter()
            .enumerate()
            .filter_map(|(i, h)| f(h).filter(|v| v.is_finite()).map(|v| (i, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i + 1)
    };
    lowest(|h| h.val_loss).or_else(|| lowest(|h| Some(h.loss)))
}

/// The y scale and its labelled ticks for `values` in a panel from `top`.
fn y_axis(axis: YAxis, values: &[f64], top: f64) -> (Scale, Vec<(f64, String)>) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (px0, px1) = (top + PANEL_H, top);
    let linear = |lo: f64, hi: f64, count: usize| {
        let (ticks, step) = nice_ticks(lo, hi, count);
        let (lo, hi) = (ticks[0], ticks[ticks.len() - 1]);
        let labels = ticks.iter().map(|&t| (t, fmt_tick(t, step))).collect();
        let scale = Scale {
            lo,
            hi,
            px0,
            px1,
            log: false,
        };
        (scale, labels)
    };
    match axis {
        YAxis::Unit => linear(0.0, 1.0, 5),
        _ if finite.is_empty() => linear(0.0, 1.0, 4),
        YAxis::FromZero => linear(min.min(0.0), max, 4),
        YAxis::MaybeLog if min > 0.0 && max / min > 10.0 => {
            let lo = 10f64.powf(min.log10().floor());
            let hi = 10f64.powf(max.log10().ceil());
            let labels = log_ticks(lo, hi)
                .into_iter()
                .map(|t| (t, fmt_sci(t)))
                .collect();
            let scale = Scale {
                lo,
                hi,
                px0,
                px1,
                log: true,
            };
            (scale, labels)
        }
        YAxis::MaybeLog => linear(0.0, max, 4),
    }
}

/// The epochs labelled on the x axis: 1 and multiples of a round step.
fn x_ticks(n: usize) -> Vec<usize> {
    let (_, step) = nice_ticks(0.0, n as f64, 8);
    let step = (step.round() as usize).max(1);
    let mut ticks = vec![1];
    ticks.extend((step..=n).step_by(step).filter(|&e| e > 1));
    ticks
}

fn draw_panel(
    svg: &mut Svg,
    panel: &Panel,
    top: f64,
    x: &Scale,
    n: usize,
    best: Option<usize>,
    bottom: bool,
) {
    let values: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| !panel.axis.eq(&YAxis::MaybeLog) || *v > 0.0)
        .collect();
    let (y, yticks) = y_axis(panel.axis, &values, top);
    svg.raw(&format!(
        r#"<g class="panel" data-name="{}" data-log="{}">"#,
        panel.name, y.log
    ));
    let grid = r##"stroke="#e6e6e6""##;
    for (v, label) in &yticks {
        let py = y.at(*v);
        svg.line((LEFT, py), (LEFT + PLOT_W, py), grid);
        svg.text(LEFT - 6.0, py + 4.0, "end", "", label);
    }
    for e in x_ticks(n) {
        let px = x.at(e as f64);
        svg.line((px, top), (px, top + PANEL_H), grid);
        if bottom {
            svg.text(px, top + PANEL_H + 15.0, "middle", "", &e.to_string());
        }
    }
    svg.rect(LEFT, top, PLOT_W, PANEL_H, r##"fill="none" stroke="#888""##);
    svg.rotated_text(16.0, top + PANEL_H / 2.0, -90.0, "middle", panel.y_label);
    if bottom {
        svg.text(
            LEFT + PLOT_W / 2.0,
            top + PANEL_H + 34.0,
            "middle",
            "",
            "epoch",
        );
    }
    for (label, values, color) in &panel.series {
        draw_series(svg, values, color, label, x, &y);
    }
    if let Some(b) = best {
        draw_best(svg, x.at(b as f64), b, top);
    }
    // Legends sit right of the plot area, so they never cover a line.
    for (k, (label, _, color)) in panel.series.iter().enumerate() {
        let ly = top + 14.0 + 18.0 * k as f64;
        svg.legend(LEFT + PLOT_W + 14.0, ly, color, false, label);
    }
    svg.raw("</g>");
}

/// One curve: each run of finite values a polyline (NaN breaks it), points marked when few.
fn draw_series(svg: &mut Svg, values: &[f64], color: &str, label: &str, x: &Scale, y: &Scale) {
    let finite = |v: f64| v.is_finite() && (!y.log || v > 0.0);
    let point = |i: usize, v: f64| (x.at(i as f64 + 1.0), y.at(v));
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut runs = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if finite(v) {
            run.push(point(i, v));
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    runs.push(run);
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let points: Vec<String> = run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        svg.raw(&format!(
            r#"<polyline class="series" data-label="{}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            super::escape(label),
            points.join(" ")
        ));
    }
    if values.len() <= 30 {
        for &(px, py) in runs.iter().flatten() {
            svg.raw(&format!(
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="2.5" fill="{color}"/>"#
            ));
        }
    }
}

/// The dashed best-epoch line, and its label just above the panel where no curve runs.
fn draw_best(svg: &mut Svg, px: f64, epoch: usize, top: f64) {
    svg.line(
        (px, top),
        (px, top + PANEL_H),
        &format!(r##"class="best" data-epoch="{epoch}" stroke="#444" stroke-width="1.2" stroke-dasharray="5 4""##),
    );
    // Ending at the line when it is in the right half, so the label stays over the panel.
    let anchor = match px > LEFT + PLOT_W / 2.0 {
        true => "end",
        false => "start",
    };
    let label = format!("best epoch {epoch}");
    svg.text(px, top - 5.0, anchor, r##"fill="#333""##, &label);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(loss: f32, lr: Option<f32>, best: bool) -> EpochRecord {
        EpochRecord {
            loss,
            accuracy: 1.0 - loss / 3.0,
            val_loss: Some(loss + 0.1),
            val_accuracy: Some(0.9 - loss / 3.0),
            learning_rate: lr,
            best,
        }
    }

    #[test]
    fn best_is_the_last_marked_epoch_else_the_lowest_val_loss() {
        let mut h = vec![
            epoch(2.0, None, false),
            epoch(1.0, None, false),
            epoch(1.5, None, false),
        ];
        assert_eq!(best_epoch(&h), Some(2));
        h[0].best = true;
        h[2].best = true;
        assert_eq!(best_epoch(&h), Some(3));
        assert_eq!(best_epoch(&[]), None);
    }

    #[test]
    fn x_ticks_start_at_one_and_are_round() {
        assert_eq!(x_ticks(3), vec![1, 2, 3]);
        assert_eq!(x_ticks(40), vec![1, 5, 10, 15, 20, 25, 30, 35, 40]);
        assert_eq!(x_ticks(1), vec![1]);
    }
}
