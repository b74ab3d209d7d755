//! Confusion matrices: true classes down, predicted classes across, a recall per class.

use super::frame::{text_width, Svg};

/// Column names wider than this share of a cell are rotated, so neighbours do not collide.
const FLAT_LABEL: f64 = 0.9;

/// The matrix made square: `n` names and `n` x `n` counts.
struct Square {
    names: Vec<String>,
    counts: Vec<Vec<usize>>,
}

impl Square {
    /// Fills in what either side lacks (`class 3`, zero counts).
    fn new(names: &[String], counts: &[Vec<usize>]) -> Self {
        let n = counts
            .iter()
            .map(Vec::len)
            .chain([names.len(), counts.len()])
            .max()
            .unwrap_or(0);
        let name = |i: usize| names.get(i).cloned().unwrap_or(format!("class {i}"));
        let count = |r: usize, c: usize| counts.get(r).and_then(|row| row.get(c)).copied();
        Self {
            names: (0..n).map(name).collect(),
            counts: (0..n)
                .map(|r| (0..n).map(|c| count(r, c).unwrap_or(0)).collect())
                .collect(),
        }
    }

    fn row_sum(&self, r: usize) -> usize {
        self.counts[r].iter().sum()
    }
}

/// Where things go: cell size, the matrix's top-left corner and the document size.
struct Grid {
    cell: f64,
    left: f64,
    top: f64,
    rotate: bool,
    w: f64,
    h: f64,
}

impl Grid {
    fn new(m: &Square, title: &str) -> Self {
        let n = m.names.len();
        let cell = (360.0 / n.max(1) as f64).clamp(24.0, 48.0);
        let name_w = m
            .names
            .iter()
            .map(|s| text_width(s, 11.0))
            .fold(0.0, f64::max);
        let rotate = name_w > cell * FLAT_LABEL;
        // A name rotated by 45 degrees rises (and runs right) by 0.71 of its length.
        let rise = if rotate { name_w * 0.71 } else { 0.0 };
        let left = 42.0 + name_w;
        let top = 76.0 + rise;
        let size = cell * n as f64;
        let w = (left + size + 100.0f64.max(rise + 10.0)).max(text_width(title, 14.0) + 24.0);
        let h = top + size.max(cell) + 24.0;
        Self {
            cell,
            left,
            top,
            rotate,
            w,
            h,
        }
    }
}

/// A confusion matrix of `counts[true][predicted]`: class names on both axes, the count in
/// each cell (darker for a larger share of its row, so every class reads alike however many
/// samples it has), each class's recall at the right, and the overall accuracy in the title.
/// Rows or names missing on either side are filled in (`class 3`, zero counts).
pub fn confusion_matrix(title: &str, names: &[String], counts: &[Vec<usize>]) -> String {
    let m = Square::new(names, counts);
    let n = m.names.len();
    let total: usize = (0..n).map(|r| m.row_sum(r)).sum();
    let hits: usize = (0..n).map(|i| m.counts[i][i]).sum();
    let title = match total {
        0 => format!("{title}: no samples"),
        _ => format!(
            "{title}: accuracy {:.1}% ({hits}/{total})",
            100.0 * hits as f64 / total as f64
        ),
    };
    let g = Grid::new(&m, &title);
    let size = g.cell * n as f64;
    let mut svg = Svg::new(g.w, g.h);
    svg.text(g.w / 2.0, 22.0, "middle", r#"font-size="14""#, &title);
    svg.text(g.left + size / 2.0, 44.0, "middle", "", "predicted class");
    svg.rotated_text(16.0, g.top + size / 2.0, -90.0, "middle", "true class");
    if n == 0 {
        svg.text(g.left, g.top + 16.0, "start", "", "no classes");
        return svg.finish();
    }
    draw_column_names(&mut svg, &m, &g);
    for r in 0..n {
        draw_row(&mut svg, &m, &g, r);
    }
    svg.rect(g.left, g.top, size, size, r##"fill="none" stroke="#888""##);
    svg.finish()
}

/// The predicted classes above the columns, rotated when they would collide.
fn draw_column_names(svg: &mut Svg, m: &Square, g: &Grid) {
    let y = g.top - 6.0;
    for (c, name) in m.names.iter().enumerate() {
        let cx = g.left + g.cell * (c as f64 + 0.5);
        let attrs = r#"class="col-name""#;
        match g.rotate {
            true => {
                let t = format!(r#"{attrs} transform="rotate(-45 {cx:.1} {y:.1})""#);
                svg.text(cx, y, "start", &t, name);
            }
            false => svg.text(cx, y, "middle", attrs, name),
        }
    }
}

/// A true class: its name, its cells and its recall.
fn draw_row(svg: &mut Svg, m: &Square, g: &Grid, r: usize) {
    let y = g.top + g.cell * r as f64;
    let cy = y + g.cell / 2.0 + 4.0;
    svg.text(g.left - 6.0, cy, "end", r#"class="row-name""#, &m.names[r]);
    let sum = m.row_sum(r);
    for (c, &v) in m.counts[r].iter().enumerate() {
        // Square root: a few errors in a row still show as a tint.
        let share = (v as f64 / sum.max(1) as f64).sqrt();
        draw_cell(svg, (r, c), g.left + g.cell * c as f64, y, g.cell, v, share);
    }
    let recall = match sum {
        0 => "recall -".to_string(),
        _ => format!("recall {:.0}%", 100.0 * m.counts[r][r] as f64 / sum as f64),
    };
    let attrs = format!(r#"class="recall" data-row="{r}""#);
    let x = g.left + g.cell * m.names.len() as f64 + 8.0;
    svg.text(x, cy, "start", &attrs, &recall);
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
