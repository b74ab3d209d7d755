//! Confusion matrices: true classes down, predicted classes across, a recall per class.

use super::frame::{text_width, Svg};

/// Column names wider than this share of a cell are rotated, so neighbours do not collide.
const FLAT_LABEL: f64 = 0.9;

/// A confusion matrix of `counts[true][predicted]`: class names on both axes, the count in
/// each cell (shaded by its share of the row, so every class reads alike however many
/// samples it has; darker is more), each class's recall at the right, and the overall accuracy in the title.
/// Rows or names missing on either side are filled in (`class 3`, zero counts).
pub fn confusion_matrix(title: &str, names: &[String], counts: &[Vec<usize>]) -> String {
    let n = counts
        .iter()
        .map(Vec::len)
        .chain([names.len(), counts.len()])
        .max()
        .unwrap_or(0);
    let name = |i: usize| names.get(i).cloned().unwrap_or(format!("class {i}"));
    let count = |r: usize, c: usize| counts.get(r).and_then(|row| row.get(c)).copied();
    let count = |r, c| count(r, c).unwrap_or(0);
    let row_sum = |r: usize| (0..n).map(|c| count(r, c)).sum::<usize>();
    let total: usize = (0..n).map(row_sum).sum();
    let hits: usize = (0..n).map(|i| count(i, i)).sum();
    let title = match total {
        0 => format!("{title}: no samples"),
        _ => format!(
            "{title}: accuracy {:.1}% ({hits}/{total})",
            100.0 * hits as f64 / total as f64
        ),
    };

    let cell = (360.0 / n.max(1) as f64).clamp(24.0, 48.0);
    let name_w = (0..n)
        .map(|i| text_width(&name(i), 11.0))
        .fold(0.0, f64::max);
    let rotate = name_w > cell * FLAT_LABEL;
    let col_h = if rotate { name_w * 0.71 + 8.0 } else { 14.0 };
    let left = 34.0 + name_w + 8.0;
    let top = 62.0 + col_h;
    let size = cell * n as f64;
    let right = if rotate { name_w * 0.71 } else { 0.0 };
    let w = (left + size + 100.0f64.max(right + 10.0)).max(text_width(&title, 14.0) + 24.0);
    let h = top + size.max(cell) + 24.0;

    let mut svg = Svg::new(w, h);
    svg.text(w / 2.0, 22.0, "middle", r#"font-size="14""#, &title);
    svg.text(left + size / 2.0, 44.0, "middle", "", "predicted class");
    svg.rotated_text(16.0, top + size / 2.0, -90.0, "middle", "true class");
    if n == 0 {
        svg.text(left, top + 16.0, "start", "", "no classes");
        return svg.finish();
    }
    for c in 0..n {
        let cx = left + cell * (c as f64 + 0.5);
        let attrs = r#"class="col-name""#;
        match rotate {
            true => {
                let y = top - 6.0;
                let t = format!(r#"{attrs} transform="rotate(-45 {cx:.1} {y:.1})""#);
                svg.text(cx, y, "start", &t, &name(c));
            }
            false => svg.text(cx, top - 6.0, "middle", attrs, &name(c)),
        }
    }
    for r in 0..n {
        let y = top + cell * r as f64;
        let cy = y + cell / 2.0 + 4.0;
        svg.text(left - 6.0, cy, "end", r#"class="row-name""#, &name(r));
        let sum = row_sum(r);
        for c in 0..n {
            let v = count(r, c);
            // Square root: a few errors in a row still show as a tint.
            let share = (v as f64 / sum.max(1) as f64).sqrt();
            draw_cell(&mut svg, (r, c), left + cell * c as f64, y, cell, v, share);
        }
        let recall = match sum {
            0 => "recall -".to_string(),
            _ => format!("recall {:.0}%", 100.0 * count(r, r) as f64 / sum as f64),
        };
        let attrs = format!(r#"class="recall" data-row="{r}""#);
        svg.text(left + size + 8.0, cy, "start", &attrs, &recall);
    }
    svg.rect(left, top, size, size, r##"fill="none" stroke="#888""##);
    svg.finish()
}

/// One cell: white to dark blue by `share` (0..1), its count in white on dark cells.
fn draw_cell(
    svg: &mut Svg,
    (r, c): (usize, usize),
    x: f64,
    y: f64,
    cell: f64,
    v: usize,
    share: f64,
) {
    let mix = |dark: f64| (255.0 + (dark - 255.0) * share).round() as u8;
    let fill = format!("rgb({},{},{})", mix(8.0), mix(48.0), mix(107.0));
    let attrs = format!(
        r#"class="cell" data-row="{r}" data-col="{c}" data-count="{v}" fill="{fill}" stroke="white""#
    );
    svg.rect(x, y, cell, cell, &attrs);
    let ink = match (share > 0.6, v) {
        (true, _) => "white",
        (false, 0) => "#bbb",
        (false, _) => "black",
    };
    let size = if cell < 30.0 { 9 } else { 11 };
    svg.text(
        x + cell / 2.0,
        y + cell / 2.0 + 4.0,
        "middle",
        &format!(r#"fill="{ink}" font-size="{size}""#),
        &v.to_string(),
    );
}
