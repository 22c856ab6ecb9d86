//! CSV in and out of a [`Frame`].

use crate::error::{Error, Result};
use crate::frame::{parse_bool, Column, ColumnBuilder, Frame, ValueRef};
use crate::schema::{DType, Field, Schema};
use std::io::{Read, Write};
use std::path::Path;

fn truncate(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// How CSV text is read: whether it has a header row, and which fields mean "missing".
///
/// The default reads a header row and takes only an empty field (and, for float columns, the
/// text `NaN`) as missing: any other text that does not parse as the column's type is an error
/// naming its row and column, never a silent missing value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// The file has no header row: columns are the schema's fields in order, and every record
    /// must have exactly that many fields. Needs a schema.
    pub no_header: bool,
    /// Fields (compared after trimming spaces) that are missing values, e.g. `n/a`, `NULL`, `-`.
    pub na_values: Vec<String>,
}

impl CsvOptions {
    /// Adds field texts that mean "missing".
    pub fn with_na_values<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.na_values.extend(values.into_iter().map(Into::into));
        self
    }

    /// Reads files without a header row (columns by position).
    pub fn without_header(mut self) -> Self {
        self.no_header = true;
        self
    }

    fn is_na(&self, field: &str) -> bool {
        !self.na_values.is_empty() && self.na_values.iter().any(|na| na == field.trim())
    }
}

impl Frame {
    /// Reads a CSV file with a header row. With a schema, every schema field must be a header
    /// column (matched by name; other columns are ignored) and fields parse as their type; without
    /// one, types are inferred (see [`Frame::from_csv_reader`]).
    pub fn from_csv_path(path: impl AsRef<Path>, schema: Option<&Schema>) -> Result<Frame> {
        let file = std::fs::File::open(path)?;
        Frame::from_csv_reader(std::io::BufReader::new(file), schema)
    }

    /// Reads CSV with a header row from any reader.
    ///
    /// An empty field is missing. Inference picks, per column, the first type that parses every
    /// non-empty field: `i64`, `f64`, `bool` (`true`/`false`), else `string`; a column with no
    /// value at all is `f64`. Inferred fields are nullable when a field is empty.
    pub fn from_csv_reader<R: Read>(reader: R, schema: Option<&Schema>) -> Result<Frame> {
        Frame::from_csv_reader_with(reader, schema, &CsvOptions::default())
    }

    /// Reads a CSV file as [`CsvOptions`] say (header or not, extra missing-value texts).
    pub fn from_csv_path_with(
        path: impl AsRef<Path>,
        schema: Option<&Schema>,
        options: &CsvOptions,
    ) -> Result<Frame> {
        let file = std::fs::File::open(path)?;
        Frame::from_csv_reader_with(std::io::BufReader::new(file), schema, options)
    }

    /// Reads CSV from any reader as [`CsvOptions`] say. A file without a header needs a schema
    /// ([`Error::Shape`] otherwise), and each of its records must have one field per schema field.
    pub fn from_csv_reader_with<R: Read>(
        reader: R,
        schema: Option<&Schema>,
        options: &CsvOptions,
    ) -> Result<Frame> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(!options.no_header)
            .from_reader(reader);
        let headers: Vec<String> = match (schema, options.no_header) {
            (Some(schema), true) => schema.names().map(str::to_string).collect(),
            (None, true) => {
                return Err(Error::Shape(
                    "a CSV file without a header row needs a schema to name its columns".into(),
                ))
            }
            (_, false) => rdr.headers()?.iter().map(str::to_string).collect(),
        };
        match schema {
            Some(schema) => read_with_schema(&mut rdr, &headers, schema, options),
            None => read_inferred(&mut rdr, &headers, options),
        }
    }

    /// Writes the frame as CSV with a header. Missing values are empty fields; floats use the
    /// shortest text that reads back to the same value. An empty string is written as an empty
    /// field and so reads back as missing.
    pub fn to_csv_writer<W: Write>(&self, writer: W) -> Result<()> {
        let mut w = csv::Writer::from_writer(writer);
        w.write_record(self.schema().names())?;
        let mut record: Vec<String> = Vec::with_capacity(self.ncols());
        for r in 0..self.nrows() {
            record.clear();
            for c in self.columns() {
                record.push(match c.get(r) {
                    ValueRef::Null => String::new(),
                    ValueRef::F32(x) => x.to_string(),
                    ValueRef::F64(x) => x.to_string(),
                    ValueRef::I64(x) => x.to_string(),
                    ValueRef::Bool(b) => b.to_string(),
                    ValueRef::Category(_, s) | ValueRef::Str(s) => s.to_string(),
                });
            }
            w.write_record(&record)?;
        }
        w.flush()?;
        Ok(())
    }

    /// Writes the frame as CSV to a file.
    pub fn to_csv_path(&self, path: impl AsRef<Path>) -> Result<()> {
        let file = std::fs::File::create(path)?;
        self.to_csv_writer(std::io::BufWriter::new(file))
    }
}

fn read_with_schema<R: Read>(
    rdr: &mut csv::Reader<R>,
    headers: &[String],
    schema: &Schema,
    options: &CsvOptions,
) -> Result<Frame> {
    let mut positions = Vec::with_capacity(schema.len());
    for f in schema.fields() {
        let pos = headers
            .iter()
            .position(|h| h == &f.name)
            .ok_or_else(|| Error::UnknownColumn(f.name.clone()))?;
        positions.push(pos);
    }
    let mut builders: Vec<ColumnBuilder> = schema
        .fields()
        .iter()
        .map(|f| ColumnBuilder::new(f.dtype))
        .collect();
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    while rdr.read_record(&mut record)? {
        if options.no_header && record.len() != schema.len() {
            return Err(Error::Shape(format!(
                "row {row} has {} fields; a file without a header must have one per column ({})",
                record.len(),
                schema.len()
            )));
        }
        for ((f, &pos), b) in schema.fields().iter().zip(&positions).zip(&mut builders) {
            let field = record.get(pos).unwrap_or("");
            let field = if options.is_na(field) { "" } else { field };
            if field.is_empty() && !f.nullable {
                return Err(Error::Validation {
                    column: f.name.clone(),
                    row,
                    reason: "missing value in a non-nullable column".into(),
                });
            }
            if !b.push_parsed(field) {
                return Err(Error::Parse {
                    column: f.name.clone(),
                    row,
                    value: truncate(field),
                    dtype: f.dtype,
                });
            }
        }
        row += 1;
    }
    let columns: Vec<Column> = builders.into_iter().map(ColumnBuilder::finish).collect();
    Frame::new(schema.fields().to_vec(), columns)
}

fn infer(values: &[String]) -> DType {
    // `values` holds fields with the missing-value texts already blanked.
    let present = || values.iter().filter(|v| !v.is_empty());
    if present().next().is_none() {
        return DType::F64;
    }
    if present().all(|v| v.trim().parse::<i64>().is_ok()) {
        DType::I64
    } else if present().all(|v| v.trim().parse::<f64>().is_ok()) {
        DType::F64
    } else if present().all(|v| {
        let t = v.trim();
        t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false")
    }) {
        DType::Bool
    } else {
        DType::String
    }
}

fn read_inferred<R: Read>(
    rdr: &mut csv::Reader<R>,
    headers: &[String],
    options: &CsvOptions,
) -> Result<Frame> {
    let mut raw: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    let mut record = csv::StringRecord::new();
    while rdr.read_record(&mut record)? {
        for (j, col) in raw.iter_mut().enumerate() {
            let field = record.get(j).unwrap_or("");
            col.push(if options.is_na(field) {
                String::new()
            } else {
                field.to_string()
            });
        }
    }
    let mut fields = Vec::with_capacity(headers.len());
    let mut columns = Vec::with_capacity(headers.len());
    for (name, values) in headers.iter().zip(raw) {
        let dtype = infer(&values);
        let mut b = ColumnBuilder::with_capacity(dtype, values.len());
        for (row, v) in values.iter().enumerate() {
            let ok = match dtype {
                DType::Bool if !v.is_empty() => parse_bool(v.trim()).is_some() && b.push_parsed(v),
                _ => b.push_parsed(v),
            };
            if !ok {
                return Err(Error::Parse {
                    column: name.clone(),
                    row,
                    value: truncate(v),
                    dtype,
                });
            }
        }
        let col = b.finish();
        let nullable = col.null_count() > 0;
        fields.push(Field {
            name: name.clone(),
            dtype,
            nullable,
        });
        columns.push(col);
    }
    Frame::new(fields, columns)
}
