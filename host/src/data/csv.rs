//! Numeric CSV: one sample per line, feature columns and one label column (numbers or names),
//! read with the `csv` crate (quoted fields, quoted delimiters, CRLF).

use super::dataset::numbered_classes;
use super::Dataset;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// Which column holds the label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LabelColumn {
    /// The first column.
    First,
    /// The last column (the default).
    #[default]
    Last,
    /// The column with this 0-based index.
    Index(usize),
    /// The column with this header name (the file must have a header).
    Name(String),
}

impl LabelColumn {
    /// `first`, `last`, a 0-based index, or a header name.
    pub fn parse(text: &str) -> Self {
        match text {
            "first" => Self::First,
            "last" => Self::Last,
            _ => match text.parse() {
                Ok(i) => Self::Index(i),
                Err(_) => Self::Name(text.to_string()),
            },
        }
    }
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
    /// The label column; every other column not ignored is a feature, in file order.
    pub label_column: LabelColumn,
    /// Columns that are neither features nor the label (a timestamp, a subject id), by
    /// 0-based index or header name.
    pub ignore_columns: Vec<LabelColumn>,
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
            ignore_columns: Vec::new(),
            header: Header::Auto,
            delimiter: ',',
            feature_shape: None,
            class_names: None,
        }
    }
}

/// Reads a CSV file (gzip-compressed if its name ends in `.gz`): one sample per line, numeric
/// features and a label (an integer, or a class name), blank lines skipped, fields trimmed,
/// quoted fields as RFC 4180 has them.
///
/// Errors name the file and the line (1-based, counting every line of the file): an empty
/// file, no data rows, a row whose field count differs from the first row's (both counts and
/// both line numbers), a feature that is not a finite number, a label that is not a whole
/// number or is out of range, a named column the header lacks, a feature shape that does not
/// fit the columns.
pub fn read_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = super::read_file(path)?;
    parse_csv(&bytes, &path.display().to_string(), options)
}

/// One CSV record: its 1-based line and its trimmed fields.
type Row = (usize, Vec<String>);

/// Every non-blank record of `bytes`.
fn records(bytes: &[u8], source: &str, delimiter: char) -> Result<Vec<Row>> {
    let delimiter = u8::try_from(delimiter)
        .ok()
        .filter(u8::is_ascii)
        .with_context(|| format!("the CSV delimiter `{delimiter}` is not an ASCII character"))?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => anyhow::anyhow!("{source} near line {}: {e}", p.line()),
            None => anyhow::anyhow!("{source}: {e}"),
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        // The csv crate's position is where it started reading, before the empty lines it
        // skips; the record's line is that of its first byte.
        let mut byte = record.position().map_or(0, |p| p.byte() as usize);
        while matches!(bytes.get(byte), Some(b'\n' | b'\r')) {
            byte += 1;
        }
        let line = 1 + bytes[..byte.min(bytes.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(rows)
}

/// The index of `column` among `columns` fields of the first row (`header`, if any).
fn column_index(
    column: &LabelColumn,
    columns: usize,
    header: Option<&[String]>,
    source: &str,
) -> Result<usize> {
    let index = match column {
        LabelColumn::First => 0,
        LabelColumn::Last => columns - 1,
        LabelColumn::Index(i) => *i,
        LabelColumn::Name(name) => {
            let header = header.with_context(|| {
                format!("{source}: column `{name}` is named, but the file has no header")
            })?;
            header.iter().position(|h| h == name).with_context(|| {
                format!("{source}: no column named `{name}`; the header has {header:?}")
            })?
        }
    };
    ensure!(
        index < columns,
        "{source}: column {index} (0-based) is beyond the {columns} columns of the first row"
    );
    Ok(index)
}

/// Parses CSV text as [`read_csv`] does; `source` names it in errors.
pub fn parse_csv(bytes: &[u8], source: &str, options: &CsvOptions) -> Result<Dataset> {
    std::str::from_utf8(bytes).with_context(|| format!("{source}: not UTF-8 text"))?;
    let rows = records(bytes, source, options.delimiter)?;
    let Some((first_line, first_fields)) = rows.first() else {
        bail!("{source}: empty file (no rows)");
    };
    let (first_line, columns) = (*first_line, first_fields.len());
    ensure!(
        columns >= 2,
        "{source} line {first_line}: {columns} field(s); a row needs at least one feature and a label"
    );
    let number = |f: &String| f.parse::<f64>().is_ok();
    // Only a possible header can name columns; `Auto` decides below whether it is one.
    let maybe_header = (options.header != Header::Absent).then_some(first_fields.as_slice());
    let label_col = column_index(&options.label_column, columns, maybe_header, source)?;
    let ignored = options
        .ignore_columns
        .iter()
        .map(|c| column_index(c, columns, maybe_header, source))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        !ignored.contains(&label_col),
        "{source}: the label column is also an ignored column"
    );
    let is_feature = |c: usize| c != label_col && !ignored.contains(&c);
    let has_header = match options.header {
        Header::Present => true,
        Header::Absent => false,
        // A feature that is not a number; or a label that is not one above a row whose label is
        // (labels may be names: `walk`, `run`); or a column named by the options.
        Header::Auto => {
            let next_label = rows.get(1).and_then(|(_, f)| f.get(label_col));
            let named = std::iter::once(&options.label_column)
                .chain(&options.ignore_columns)
                .any(|c| matches!(c, LabelColumn::Name(_)));
            named
                || (0..columns)
                    .filter(|&c| is_feature(c))
                    .any(|c| !number(&first_fields[c]))
                || (!number(&first_fields[label_col]) && next_label.is_some_and(number))
        }
    };
    let feature_count = (0..columns).filter(|&c| is_feature(c)).count();
    ensure!(
        feature_count >= 1,
        "{source}: no feature columns are left beside the label and the ignored columns"
    );

    let mut features = Vec::new();
    // Each row's label field, where it stands: numbers, or names (`walk`, `run`).
    let mut label_fields: Vec<(String, usize)> = Vec::new();
    for (line_no, fields) in rows.iter().skip(usize::from(has_header)) {
        ensure!(
            fields.len() == columns,
            "{source} line {line_no}: {} fields, but line {first_line} has {columns}",
            fields.len()
        );
        label_fields.push((fields[label_col].clone(), *line_no));
        for (col, field) in fields.iter().enumerate().filter(|(c, _)| is_feature(*c)) {
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
        (None, None) => numbered_classes(&labels).with_context(|| source.to_string())?,
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
