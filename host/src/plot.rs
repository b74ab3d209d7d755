//! Training curves and confusion matrices as standalone SVG files: plain text, no fonts or
//! system libraries needed, viewable in any browser.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Values, one per epoch.
    pub values: &'a [f64],
    /// CSS color.
    pub color: &'a str,
}

const W: f64 = 480.0;
const H: f64 = 300.0;
const PAD: f64 = 48.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of `series` against the epoch, y from 0 to the largest value (or 1).
pub fn line_chart(title: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let n = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let y_max = if y_max <= 1.0 { 1.0 } else { y_max * 1.05 };
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v / y_max).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Axes and grid.
    for k in 0..=4 {
        let v = y_max * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{PAD}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text>"##,
            W - PAD,
            PAD - 4.0,
            y(v) + 4.0,
            yy = y(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{PAD}" x2="{PAD}" y1="{PAD}" y2="{}" stroke="black"/>"#,
        H - PAD
    );
    let _ = writeln!(
        s,
        r#"<line x1="{PAD}" x2="{}" y1="{}" y2="{}" stroke="black"/>"#,
        W - PAD,
        H - PAD,
        H - PAD
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">epoch</text>"#,
        W / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    for i in (0..n).step_by((n / 8).max(1)) {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(i),
            H - PAD + 14.0,
            i + 1
        );
    }
    for (k, ser) in series.iter().enumerate() {
        let points: Vec<String> = ser
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            ser.color,
            points.join(" ")
        );
        let ly = PAD + 14.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            W - PAD - 110.0,
            W - PAD - 90.0,
            ser.color,
            W - PAD - 86.0,
            ly + 4.0,
            escape(ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A confusion matrix: rows are true classes, columns predictions; darker means more.
pub fn confusion_matrix(title: &str, names: &[String], counts: &[Vec<usize>]) -> String {
    let n = names.len().max(1);
    let cell = (360.0 / n as f64).clamp(14.0, 40.0);
    let (left, top) = (90.0, 50.0);
    let size = cell * n as f64;
    let (w, h) = (left + size + 20.0, top + size + 40.0);
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="36" text-anchor="middle">predicted</text>"#,
        left + size / 2.0
    );
    for (r, row) in counts.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 4.0,
            top + cell * (r as f64 + 0.6),
            escape(&names[r.min(n - 1)])
        );
        for (c, &v) in row.iter().enumerate() {
            let shade = 255 - (v * 200 / max) as u32;
            let (x, y) = (left + cell * c as f64, top + cell * r as f64);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({shade},{shade},255)" stroke="white"/>"#
            );
            if v > 0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{v}</text>"#,
                    x + cell / 2.0,
                    y + cell * 0.6
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg_with_every_point() {
        let loss = [2.3, 1.1, 0.6, 0.4];
        let svg = line_chart(
            "training",
            "loss",
            &[Series {
                label: "train <loss>",
                values: &loss,
                color: "blue",
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 4);
        assert!(svg.contains("train &lt;loss&gt;"));

        let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let svg = confusion_matrix("cm", &names, &[vec![5, 1], vec![0, 7]]);
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains(">7</text>") && !svg.contains(">0</text>"));
    }
}
