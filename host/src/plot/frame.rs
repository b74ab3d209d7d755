//! What every chart shares: an SVG writer, value-to-pixel scales, tick choice and number
//! formatting.

use super::escape;
use std::fmt::Write;

/// Approximate width of one character of sans-serif text at `size` px: the files carry no
/// fonts, so layout reserves room by this estimate.
pub(crate) fn text_width(s: &str, size: f64) -> f64 {
    0.6 * size * s.chars().count() as f64
}

/// An SVG document being written.
pub(crate) struct Svg {
    out: String,
}

impl Svg {
    /// A `w` x `h` document on a white background.
    pub(crate) fn new(w: f64, h: f64) -> Self {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        Self { out }
    }

    /// Text at (x, y); `anchor` is `start`, `middle` or `end`; `attrs` is extra attributes.
    pub(crate) fn text(&mut self, x: f64, y: f64, anchor: &str, attrs: &str, text: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}"{}>{}</text>"#,
            pad(attrs),
            escape(text)
        );
    }

    /// Text rotated by `degrees` about its anchor point.
    pub(crate) fn rotated_text(&mut self, x: f64, y: f64, degrees: f64, anchor: &str, text: &str) {
        let attrs = format!(r#"transform="rotate({degrees} {x:.1} {y:.1})""#);
        self.text(x, y, anchor, &attrs, text);
    }

    /// A line segment.
    pub(crate) fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"{}/>"#,
            pad(attrs)
        );
    }

    /// A rectangle.
    pub(crate) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"{}/>"#,
            w.max(0.0),
            h.max(0.0),
            pad(attrs)
        );
    }

    /// Anything else, verbatim.
    pub(crate) fn raw(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// A legend entry: a colour swatch (a line, or a box when `boxed`) and its label.
    pub(crate) fn legend(&mut self, x: f64, y: f64, color: &str, boxed: bool, label: &str) {
        if boxed {
            self.rect(x, y - 8.0, 14.0, 10.0, &format!(r#"fill="{color}""#));
        } else {
            self.line(
                (x, y - 4.0),
                (x + 14.0, y - 4.0),
                &format!(r#"stroke="{color}" stroke-width="2""#),
            );
        }
        self.text(x + 18.0, y, "start", "", label);
    }

    /// The finished document.
    pub(crate) fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

fn pad(attrs: &str) -> String {
    match attrs {
        "" => String::new(),
        a => format!(" {a}"),
    }
}

/// Maps values in `lo..=hi` to pixels `px0..=px1`, linearly or on a log scale.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) px0: f64,
    pub(crate) px1: f64,
    pub(crate) log: bool,
}

impl Scale {
    /// The pixel of `v` (clamped to the range).
    pub(crate) fn at(&self, v: f64) -> f64 {
        let (lo, hi, v) = match self.log {
            true => (self.lo.log10(), self.hi.log10(), v.max(self.lo).log10()),
            false => (self.lo, self.hi, v),
        };
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        self.px0 + (self.px1 - self.px0) * t.clamp(0.0, 1.0)
    }
}

/// About `target` round ticks (steps of 1, 2 or 5 times a power of ten) covering `lo..=hi`,
/// and the step; the first and last tick enclose the range.
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = match (lo.is_finite() && hi.is_finite(), hi > lo) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo, hi),
        (true, false) if lo == 0.0 => (0.0, 1.0),
        (true, false) => (lo - lo.abs() * 0.1, hi + hi.abs() * 0.1),
    };
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, step)
}

/// `v` with as many decimals as `step` needs.
pub(crate) fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    // `-0.0` reads as a bug.
    match s
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        true => s.trim_start_matches('-').to_string(),
        false => s,
    }
}

/// Ticks of a log axis over `lo..=hi` (both positive): the powers of ten, with 2x and 5x
/// between them when the range spans few decades.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let multiples: &[f64] = if b - a <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    (a..=b)
        .flat_map(|e| multiples.iter().map(move |m| m * 10f64.powi(e)))
        .filter(|v| *v >= lo * 0.999 && *v <= hi * 1.001)
        .collect()
}

/// A log-axis tick: `1e-3`, `5e-4`.
pub(crate) fn fmt_sci(v: f64) -> String {
    let e = v.log10().floor() as i32;
    let m = (v / 10f64.powi(e)).round();
    format!("{m}e{e}")
}

/// A count in a few characters: `950`, `12.3k`, `4.56M`, `1.20G`.
pub(crate) fn fmt_count(v: u64) -> String {
    let f = v as f64;
    match v {
        0..=9_999 => v.to_string(),
        10_000..=999_999 => format!("{:.1}k", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}M", f / 1e6),
        _ => format!("{:.2}G", f / 1e9),
    }
}

/// Bytes in a few characters: `512 B`, `12.0 KiB`, `1.50 MiB`.
pub(crate) fn fmt_bytes(v: usize) -> String {
    let f = v as f64;
    match v {
        0..=1023 => format!("{v} B"),
        1024..=1_048_575 => format!("{:.1} KiB", f / 1024.0),
        _ => format!("{:.2} MiB", f / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_enclose_the_range() {
        let (ticks, step) = nice_ticks(0.0, 2.31, 5);
        assert_eq!(step, 0.5);
        assert_eq!(ticks.first(), Some(&0.0));
        assert_eq!(ticks.last(), Some(&2.5));
        assert_eq!(fmt_tick(1.5, step), "1.5");
        assert_eq!(fmt_tick(-0.0001, 0.1), "0.0");
        let (ticks, _) = nice_ticks(3.0, 3.0, 5);
        assert!(ticks.len() >= 2, "a flat series still gets an axis");
        let decades = log_ticks(1e-5, 5e-3);
        assert_eq!(decades.len(), 3);
        assert!((decades[2] / 1e-3 - 1.0).abs() < 1e-9);
        assert_eq!(
            log_ticks(1e-3, 5e-3).len(),
            3,
            "1, 2 and 5 x 1e-3 on a short range"
        );
        assert_eq!(fmt_sci(5e-4), "5e-4");
        assert_eq!(fmt_count(1_234_567), "1.23M");
        assert_eq!(fmt_bytes(2048), "2.0 KiB");
    }

    #[test]
    fn scales_clamp_and_handle_empty_ranges() {
        let s = Scale {
            lo: 0.0,
            hi: 10.0,
            px0: 100.0,
            px1: 0.0,
            log: false,
        };
        assert_eq!(s.at(5.0), 50.0);
        assert_eq!(s.at(20.0), 0.0);
        let flat = Scale { hi: 0.0, ..s };
        assert_eq!(flat.at(0.0), 50.0);
        let log = Scale {
            lo: 1e-4,
            hi: 1e-2,
            log: true,
            ..s
        };
        assert!((log.at(1e-3) - 50.0).abs() < 1e-9);
    }
}
