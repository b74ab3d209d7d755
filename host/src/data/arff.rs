//! ARFF with a relational attribute: the multivariate time-series layout of the UEA archive
//! (BasicMotions and its kin).
//!
//! The header declares one `relational` attribute whose nested numeric attributes are the time
//! steps (`@attribute relationalAtt relational`, `@attribute att0 numeric`, ...,
//! `@end relationalAtt`), then a nominal class attribute (`@attribute activity {A,B,C}`).
//! After `@data`, each line is one recording: a quoted string holding one row per channel
//! (values separated by commas, rows by the two characters `\n`), a comma, the class.

use super::Dataset;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// Reads a relational ARFF file into samples of shape `[1, time, channels]` (NHWC with height
/// 1: value `(t, c)` at `t * channels + c`); the classes are the class attribute's values in
/// declaration order.
///
/// Errors name the file and the line (1-based), and for data the record (1-based): a header
/// that is not one relational attribute of numeric time steps then one nominal class, a
/// recording whose channel has the wrong number of values or whose channel count differs from
/// the first recording's, a value that is not a number (missing values `?` included), an
/// undeclared class, an unterminated quote.
pub fn read_arff(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = super::read_file(path)?;
    parse_arff(&bytes, &path.display().to_string())
}

/// Parses relational ARFF text as [`read_arff`] does; `source` names it in errors.
pub fn parse_arff(bytes: &[u8], source: &str) -> Result<Dataset> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{source}: not UTF-8 text"))?;
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('%'));

    // The header, up to @data.
    let mut relational: Option<String> = None;
    let mut inside = false;
    let mut steps = 0usize;
    let mut class_names: Option<Vec<String>> = None;
    let mut saw_data = false;
    for (n, line) in lines.by_ref() {
        let (keyword, rest) = split_word(line);
        match keyword.to_ascii_lowercase().as_str() {
            "@relation" => {}
            "@data" => {
                saw_data = true;
                break;
            }
            "@end" => {
                let name = unquote(rest.trim());
                ensure!(
                    inside && relational.as_deref() == Some(name),
                    "{source} line {n}: `@end {name}` closes no open relational attribute"
                );
                inside = false;
            }
            "@attribute" => {
                let (name, kind) = split_name(rest);
                let lower = kind.to_ascii_lowercase();
                if inside {
                    ensure!(
                        matches!(lower.as_str(), "numeric" | "real" | "integer"),
                        "{source} line {n}: time step `{name}` of the relational attribute has type `{kind}`, expected numeric (is `@end {}` missing?)",
                        relational.as_deref().unwrap_or_default()
                    );
                    steps += 1;
                } else if lower == "relational" {
                    ensure!(
                        relational.is_none(),
                        "{source} line {n}: a second relational attribute `{name}` (only one is supported)"
                    );
                    relational = Some(name.to_string());
                    inside = true;
                } else if kind.starts_with('{') {
                    ensure!(
                        relational.is_some() && class_names.is_none(),
                        "{source} line {n}: nominal attribute `{name}` must be the one class attribute, after the relational one"
                    );
                    let list = kind
                        .strip_prefix('{')
                        .and_then(|k| k.strip_suffix('}'))
                        .with_context(|| {
                            format!("{source} line {n}: unterminated `{{` in `{kind}`")
                        })?;
                    let names: Vec<String> = list
                        .split(',')
                        .map(|v| unquote(v.trim()).to_string())
                        .collect();
                    ensure!(
                        names.iter().all(|v| !v.is_empty()),
                        "{source} line {n}: an empty class name in `{kind}`"
                    );
                    class_names = Some(names);
                } else {
                    bail!(
                        "{source} line {n}: attribute `{name}` of type `{kind}`: expected one relational attribute then one nominal class"
                    );
                }
            }
            _ => bail!("{source} line {n}: unexpected `{line}` in the header"),
        }
    }
    ensure!(saw_data, "{source}: no `@data` section");
    ensure!(
        relational.is_some() && !inside && steps > 0,
        "{source}: the header declares no complete relational attribute with numeric time steps"
    );
    let class_names = class_names
        .with_context(|| format!("{source}: the header declares no nominal class attribute"))?;

    // The records.
    let mut channels = 0usize;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for (record, (n, line)) in lines.enumerate() {
        let record = record + 1;
        let at = format!("{source} line {n} (record {record})");
        let quote = line
            .chars()
            .next()
            .filter(|&c| c == '\'' || c == '"')
            .with_context(|| {
                format!("{at}: expected a quoted recording, found `{}`", clip(line))
            })?;
        let end = line[1..]
            .find(quote)
            .with_context(|| format!("{at}: unterminated quote"))?
            + 1;
        let (body, after) = (&line[1..end], line[end + 1..].trim_start());
        let class = after
            .strip_prefix(',')
            .map(|c| unquote(c.trim()))
            .with_context(|| format!("{at}: no `,` and class after the recording"))?;
        let label = class_names
            .iter()
            .position(|c| c == class)
            .with_context(|| {
                format!(
                    "{at}: class `{class}` is not declared (declared: {})",
                    class_names.join(", ")
                )
            })?;

        rows.clear();
        for (c, row) in body.split("\\n").enumerate() {
            let values = row
                .split(',')
                .enumerate()
                .map(|(t, v)| {
                    let v = v.trim();
                    match v.parse::<f32>() {
                        Ok(x) if x.is_finite() => Ok(x),
                        _ => Err(anyhow::anyhow!(
                            "{at}: channel {c}, time step {t}: `{v}` is not a number{}",
                            if v == "?" {
                                " (missing values are not supported)"
                            } else {
                                ""
                            }
                        )),
                    }
                })
                .collect::<Result<Vec<f32>>>()?;
            ensure!(
                values.len() == steps,
                "{at}: channel {c} has {} values, expected {steps} (one per time step)",
                values.len()
            );
            rows.push(values);
        }
        if record == 1 {
            channels = rows.len();
        }
        ensure!(
            rows.len() == channels,
            "{at}: {} channels, but record 1 has {channels}",
            rows.len()
        );
        for t in 0..steps {
            features.extend(rows.iter().map(|row| row[t]));
        }
        labels.push(label as u32);
    }
    ensure!(!labels.is_empty(), "{source}: no records after `@data`");
    Dataset::new(features, vec![1, steps, channels], labels, class_names)
        .with_context(|| format!("{source}: inconsistent dataset"))
}

/// The first whitespace-separated word and the rest.
fn split_word(line: &str) -> (&str, &str) {
    match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    }
}

/// An attribute's name (quoted or not) and its type.
fn split_name(rest: &str) -> (&str, &str) {
    let rest = rest.trim();
    if let Some(q) = rest.chars().next().filter(|&c| c == '\'' || c == '"') {
        if let Some(end) = rest[1..].find(q) {
            return (&rest[1..end + 1], rest[end + 2..].trim());
        }
    }
    let (name, kind) = split_word(rest);
    (name, kind.trim())
}

/// `s` without one pair of surrounding single or double quotes.
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// At most 40 characters of `s`, for error messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARFF: &str = "% a comment\n@relation 'tiny'\n\n@attribute rel relational\n\
        @attribute t0 numeric\n@attribute t1 numeric\n@attribute t2 numeric\n@end rel\n\
        @attribute activity {Up,'Down'}\n\n@data\n\
        '1,2,3\\n4,5,6',Down\n'-1.5,0,0.25\\n7,8,9',Up\n";

    #[test]
    fn layout_is_time_major_with_the_channel_fastest() {
        let d = parse_arff(ARFF.as_bytes(), "tiny.arff").unwrap();
        assert_eq!(d.feature_shape, [1, 3, 2]);
        assert_eq!(d.class_names, ["Up", "Down"]);
        assert_eq!(d.labels, [1, 0]);
        assert_eq!(
            d.features,
            [1., 4., 2., 5., 3., 6., -1.5, 7., 0., 8., 0.25, 9.]
        );
    }

    #[test]
    fn errors_name_the_file_line_and_record() {
        let header_only = &ARFF[..ARFF.find("@data").unwrap()];
        let cases = [
            (ARFF.replace("'-1.5,0,0.25", "'-1.5,0"), " line 13 (record 2): channel 0 has 2 values, expected 3 (one per time step)"),
            (ARFF.replace("9',Up", "9',Sideways"), " line 13 (record 2): class `Sideways` is not declared (declared: Up, Down)"),
            (ARFF.replace("\\n7,8,9", ""), " line 13 (record 2): 1 channels, but record 1 has 2"),
            (ARFF.replace("4,5,6", "4,?,6"), " line 12 (record 1): channel 1, time step 1: `?` is not a number (missing values are not supported)"),
            (ARFF.replace("4,5,6',", "4,5,6,"), " line 12 (record 1): unterminated quote"),
            (ARFF.replace("@data", ""), " line 12: unexpected `'1,2,3\\n4,5,6',Down` in the header"),
            (ARFF.replace("@end rel", ""), " line 9: time step `activity` of the relational attribute has type `{Up,'Down'}`, expected numeric (is `@end rel` missing?)"),
            (ARFF.replace("{Up,'Down'}", "numeric"), " line 9: attribute `activity` of type `numeric`: expected one relational attribute then one nominal class"),
            (header_only.to_string(), ": no `@data` section"),
            (ARFF.replace(",Down\n'-1.5,0,0.25\\n7,8,9',Up", ",Down").replace("'1,2,3\\n4,5,6',Down", ""), ": no records after `@data`"),
        ];
        for (text, expected) in cases {
            let err = parse_arff(text.as_bytes(), "tiny.arff")
                .unwrap_err()
                .to_string();
            assert_eq!(err, format!("tiny.arff{expected}"));
        }
    }
}
