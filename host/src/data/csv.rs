//! Numeric CSV: one sample per line, feature columns and one integer label column.

use super::dataset::numbered_classes;
use super::Dataset;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// Which column holds the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelColumn {
    /// The first column.
    First,
    /// The last column (the default).
    #[default]
    Last,
    /// The column with this 0-based index.
    Index(usize),
}

/// Whether the first non-blank line is a header of column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// A header if any of its fields is not a number (the default). A first line that is all
    /// numbers is data; a corrupt first data line with a non-number in it would be taken as a
    /// header, so use [`Header::Absent`] when the file is known to have none.
    #[default]
    Auto,
    /// The first line is a header.
    Present,
    /// There is no header: the first line is data.
    Absent,
}

/// How [`read_csv`] and [`parse_csv`] read a file.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// The label column; every other column is a feature, in file order.
    pub label_column: LabelColumn,
    /// Header detection.
    pub header: Header,
    /// The field separator (`,` by default).
    pub delimiter: char,
    /// The shape of one sample; its product must be the number of feature columns. `None`
    /// gives `[number of feature columns]`.
    pub feature_shape: Option<Vec<usize>>,
    /// The classes' names, indexed by label; labels must be below their count. `None` gives
    /// `"0"`, `"1"`, ... up to the largest label.
    pub class_names: Option<Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            label_column: LabelColumn::Last,
            header: Header::Auto,
            delimiter: ',',
            feature_shape: None,
            class_names: None,
        }
    }
}

/// Reads a CSV file (gzip-compressed if its name ends in `.gz`): one sample per line, numeric
/// features and an integer label, blank lines skipped, fields trimmed of spaces and of one pair
/// of surrounding double quotes (quoted delimiters are not supported).
///
/// Errors name the file and the line (1-based, counting every line of the file): an empty
/// file, no data rows, a row whose field count differs from the first row's (both counts and
/// both line numbers), a feature that is not a finite number, a label that is not a whole
/// number or is out of range, a feature shape that does not fit the columns.
pub fn read_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = super::read_file(path)?;
    parse_csv(&bytes, &path.display().to_string(), options)
}

/// Parses CSV text as [`read_csv`] does; `source` names it in errors.
pub fn parse_csv(bytes: &[u8], source: &str, options: &CsvOptions) -> Result<Dataset> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{source}: not UTF-8 text"))?;
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.trim().is_empty())
        .peekable();
    let split = |line: &str| -> Vec<String> {
        line.split(options.delimiter)
            .map(|f| {
                let f = f.trim();
                let f = f
                    .strip_prefix('"')
                    .and_then(|g| g.strip_suffix('"'))
                    .unwrap_or(f);
                f.trim().to_string()
            })
            .collect()
    };

    let Some((first_line, first)) = lines.next() else {
        bail!("{source}: empty file (no rows)");
    };
    let first_fields = split(first);
    let columns = first_fields.len();
    ensure!(
        columns >= 2,
        "{source} line {first_line}: {columns} field(s); a row needs at least one feature and a label"
    );
    let label_col = match options.label_column {
        LabelColumn::First => 0,
        LabelColumn::Last => columns - 1,
        LabelColumn::Index(i) => {
            ensure!(
                i < columns,
                "{source}: label column {i} (0-based) is beyond the {columns} columns of line {first_line}"
            );
            i
        }
    };
    let number = |f: &String| f.parse::<f64>().is_ok();
    let has_header = match options.header {
        Header::Present => true,
        Header::Absent => false,
        // A feature that is not a number; or a label that is not one above a row whose label is
        // (labels may be names: `walk`, `run`).
        Header::Auto => {
            let features = first_fields
                .iter()
                .enumerate()
                .filter(|(c, _)| *c != label_col);
            let next_label = lines
                .peek()
                .and_then(|(_, l)| split(l).get(label_col).cloned());
            features.map(|(_, f)| f).any(|f| !number(f))
                || (!first_fields.get(label_col).is_some_and(number)
                    && next_label.is_some_and(|l| number(&l)))
        }
    };
    let feature_count = columns - 1;

    let mut features = Vec::new();
    // Each row's label field, where it stands: numbers, or names (`walk`, `run`).
    let mut label_fields: Vec<(String, usize)> = Vec::new();
    let rows = std::iter::once((first_line, first))
        .filter(|_| !has_header)
        .chain(lines);
    for (line_no, line) in rows {
        let fields = if line_no == first_line {
            first_fields.clone()
        } else {
            split(line)
        };
        ensure!(
            fields.len() == columns,
            "{source} line {line_no}: {} fields, but line {first_line} has {columns}",
            fields.len()
        );
        for (col, field) in fields.iter().enumerate() {
            if col == label_col {
                label_fields.push((field.clone(), line_no));
            } else {
                let value: f32 = field.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{source} line {line_no}, column {}: `{field}` is not a number",
                        col + 1
                    )
                })?;
                ensure!(
                    value.is_finite(),
                    "{source} line {line_no}, column {}: `{field}` is not a finite number",
                    col + 1
                );
                features.push(value);
            }
        }
    }
    ensure!(
        !label_fields.is_empty(),
        "{source}: no data rows (line {first_line} is a header and nothing follows)"
    );
    let column = label_col + 1;
    let (labels, named) = labels(
        &label_fields,
        options.class_names.as_deref(),
        source,
        column,
    )?;

    let feature_shape = match &options.feature_shape {
        Some(shape) => {
            ensure!(
                shape.iter().product::<usize>() == feature_count,
                "{source}: feature shape {shape:?} holds {} values, but rows have {feature_count} feature columns",
                shape.iter().product::<usize>()
            );
            shape.clone()
        }
        None => vec![feature_count],
    };
    let class_names = match (&options.class_names, named) {
        (Some(names), _) => names.clone(),
        (None, Some(names)) => names,
        (None, None) => numbered_classes(&labels),
    };
    Dataset::new(features, feature_shape, labels, class_names)
        .with_context(|| format!("{source}: inconsistent dataset"))
}

/// The rows' labels: integers when any field is a number (a field that is not an integer is
/// then an error; bounded by `class_names` if given); otherwise names, each the index of its
/// class: in `class_names` if given, else in the sorted set of names found (returned as the
/// class names).
fn labels(
    fields: &[(String, usize)],
    class_names: Option<&[String]>,
    source: &str,
    column: usize,
) -> Result<(Vec<u32>, Option<Vec<String>>)> {
    let numeric = fields.iter().any(|(f, _)| f.parse::<f64>().is_ok());
    if numeric {
        let count = class_names.map(<[String]>::len);
        let labels = fields
            .iter()
            .map(|(f, line)| parse_label(f, source, *line, column, count))
            .collect::<Result<_>>()?;
        return Ok((labels, None));
    }
    let names: Vec<String> = match class_names {
        Some(names) => names.to_vec(),
        None => {
            let mut found: Vec<String> = fields.iter().map(|(f, _)| f.clone()).collect();
            found.sort();
            found.dedup();
            found
        }
    };
    let labels = fields
        .iter()
        .map(|(f, line)| match names.iter().position(|n| n == f) {
            Some(i) => Ok(i as u32),
            None => bail!(
                "{source} line {line}, column {column}: label `{f}` is not one of the classes {names:?}"
            ),
        })
        .collect::<Result<_>>()?;
    Ok((labels, class_names.is_none().then_some(names)))
}

fn parse_label(
    field: &str,
    source: &str,
    line: usize,
    column: usize,
    class_count: Option<usize>,
) -> Result<u32> {
    let value: i128 = match field.parse::<i128>() {
        Ok(v) => v,
        Err(_) => match field.parse::<f64>() {
            Ok(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e30 => x as i128,
            _ => bail!("{source} line {line}, column {column}: label `{field}` is not an integer"),
        },
    };
    if value < 0 {
        bail!("{source} line {line}, column {column}: label {value} is out of range (labels are 0 or more)");
    }
    if let Some(count) = class_count {
        ensure!(
            value < count as i128,
            "{source} line {line}, column {column}: label {value} is out of range for {count} classes (0..={})",
            count as i128 - 1
        );
    }
    u32::try_from(value).map_err(|_| {
        anyhow::anyhow!(
            "{source} line {line}, column {column}: label {value} is out of range (above {})",
            u32::MAX
        )
    })
}
