//! How commands print data: `--format table` (aligned columns with a header, for people),
//! `json` (one document on one line, for scripts) or `csv` (a header, then one line per record).
//! Field names are the same in all three and documented in `docs/cli.md`.

use anyhow::Result;
use serde_json::Value as Json;

/// The `--format` of commands that print data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with a header.
    #[default]
    Table,
    /// JSON on one line.
    Json,
    /// Comma-separated values with a header.
    Csv,
}

/// Records to print: named columns, one string per cell, and the JSON form (an array of
/// objects with the same field names, unless a command documents a richer document).
pub struct Records {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub json: Json,
}

impl Records {
    /// Records whose JSON form is an array of `{column: cell}` objects.
    pub fn new(columns: &[&str], rows: Vec<Vec<String>>) -> Records {
        let json = Json::Array(
            rows.iter()
                .map(|r| {
                    Json::Object(
                        columns
                            .iter()
                            .zip(r)
                            .map(|(c, v)| (c.to_string(), Json::String(v.clone())))
                            .collect(),
                    )
                })
                .collect(),
        );
        Records {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            json,
        }
    }

    /// The same records with another JSON document (typed numbers, nested fields).
    pub fn with_json(mut self, json: Json) -> Records {
        self.json = json;
        self
    }

    /// Prints in `format` on stdout.
    pub fn print(&self, format: OutputFormat) -> Result<()> {
        match format {
            OutputFormat::Json => println!("{}", self.json),
            OutputFormat::Csv => {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                w.write_record(&self.columns)?;
                for r in &self.rows {
                    w.write_record(r)?;
                }
                w.flush()?;
            }
            OutputFormat::Table => {
                let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
                for r in &self.rows {
                    for (w, cell) in widths.iter_mut().zip(r) {
                        *w = (*w).max(cell.chars().count());
                    }
                }
                let line = |cells: &[String]| {
                    let n = cells.len();
                    let mut s = String::new();
                    for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                        s.push_str(c);
                        if i + 1 < n {
                            for _ in c.chars().count()..*w + 2 {
                                s.push(' ');
                            }
                        }
                    }
                    s
                };
                let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
                println!("{}", line(&header));
                for r in &self.rows {
                    println!("{}", line(r));
                }
            }
        }
        Ok(())
    }
}
