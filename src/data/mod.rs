//! Reading real flow files (CIDDS-001 CSV, nfdump CSV) and writing CIDDS-001 CSV.
//!
//! [`FlowReader`] detects the format from the header and streams rows one at
//! a time through a reused buffer, so memory does not grow with the file's
//! length. A bad row stops the read with an error naming the file, line and
//! column, unless [`ReadOptions::skip_bad_rows`] asks to skip and count it.

mod cidds;
mod fields;
pub mod holdout;
mod limit;
mod nfdump;
mod row;
mod write;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use crate::flow::Flow;
use cidds::CiddsLayout;
use nfdump::{NfdumpLayout, NfdumpRow};
use row::RowError;

pub use cidds::{CORE_COLUMNS as CIDDS_CORE_COLUMNS, LABEL_COLUMNS as CIDDS_LABEL_COLUMNS};
pub use write::{CiddsWriter, WriteError};

/// Longest field text quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 80;

/// What went wrong reading a flow file; always names the file, and the line
/// and column where one is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The CSV itself is malformed.
    #[error("{path}:{line}: malformed csv: {message}", path = path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line where the record starts.
        line: u64,
        /// What the CSV parser reported.
        message: String,
    },
    /// The file is empty: there is not even a header line.
    #[error("{path}: empty file, expected a cidds-001 or nfdump csv header", path = path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The header is neither CIDDS-001's nor nfdump's.
    #[error(
        "{path}:1: unrecognised header {header:?}: expected cidds-001 columns ({cidds}) \
         or nfdump -o csv columns ({nfdump})",
        path = path.display(),
        cidds = CIDDS_CORE_COLUMNS.join(","),
        nfdump = nfdump::REQUIRED_COLUMNS.join(",")
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// The header line as read (shortened).
        header: String,
    },
    /// A field of a data row could not be parsed.
    #[error(
        "{path}:{line}: column {column} ({column_name}): {reason}: {text:?}",
        path = path.display()
    )]
    BadField {
        /// The file.
        path: PathBuf,
        /// 1-based line of the row.
        line: u64,
        /// 1-based column number.
        column: usize,
        /// The column's name in the header.
        column_name: String,
        /// The field's text (shortened, invalid UTF-8 replaced).
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A data row has a different number of fields than the header.
    #[error(
        "{path}:{line}: expected {expected} fields as in the header, found {found}",
        path = path.display()
    )]
    FieldCount {
        /// The file.
        path: PathBuf,
        /// 1-based line of the row.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
}

impl ReadError {
    /// Whether this error concerns one row, which [`ReadOptions::skip_bad_rows`] skips.
    pub fn is_bad_row(&self) -> bool {
        matches!(
            self,
            ReadError::BadField { .. } | ReadError::FieldCount { .. }
        )
    }
}

/// How a reader treats rows it cannot parse.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Skip bad rows (and count them) instead of stopping at the first.
    pub skip_bad_rows: bool,
}

/// The flow file formats a [`FlowReader`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CIDDS-001 CSV, with or without the `Tos` and label columns.
    Cidds001,
    /// The CSV of `nfdump -o csv`.
    NfdumpCsv,
}

enum Layout {
    Cidds(CiddsLayout),
    Nfdump(NfdumpLayout),
}

impl Layout {
    /// Parses a row; `Ok(None)` means the data has ended (nfdump's summary).
    fn parse(&self, record: &ByteRecord) -> Result<Option<Flow>, RowError> {
        match self {
            Layout::Cidds(layout) => layout.parse(record).map(Some),
            Layout::Nfdump(layout) => match layout.parse(record)? {
                NfdumpRow::Flow(flow) => Ok(Some(flow)),
                NfdumpRow::Summary => Ok(None),
            },
        }
    }
}

/// A streaming reader over one flow file, format detected from its header.
pub struct FlowReader {
    path: PathBuf,
    csv: csv::Reader<Box<dyn Read + Send>>,
    record: ByteRecord,
    header: Vec<String>,
    layout: Layout,
    format: Format,
    options: ReadOptions,
    skipped_rows: u64,
    finished: bool,
}

impl FlowReader {
    /// Opens `path` (CIDDS-001 or nfdump CSV, detected from the header).
    pub fn open(path: &Path, options: ReadOptions) -> Result<FlowReader, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        FlowReader::from_reader(path, Box::new(file), options)
    }

    /// Reads flows from any byte stream; `name` stands for the file in error messages.
    pub fn from_reader(
        name: &Path,
        input: Box<dyn Read + Send>,
        options: ReadOptions,
    ) -> Result<FlowReader, ReadError> {
        let path = name.to_path_buf();
        let input: Box<dyn Read + Send> = Box::new(limit::LineLimit::new(input));
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(input);

        let mut record = ByteRecord::new();
        let has_header = csv
            .read_byte_record(&mut record)
            .map_err(|source| csv_error(&path, 1, source))?;
        if !has_header {
            return Err(ReadError::Empty { path });
        }
        let header: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = String::from_utf8_lossy(name);
                let name = if i == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    &name
                };
                name.trim().to_owned()
            })
            .collect();

        let (layout, format) = if let Some(layout) = CiddsLayout::from_header(&header) {
            (Layout::Cidds(layout), Format::Cidds001)
        } else if let Some(layout) = NfdumpLayout::from_header(&header) {
            (Layout::Nfdump(layout), Format::NfdumpCsv)
        } else {
            return Err(ReadError::UnknownFormat {
                path,
                header: shorten(&header.join(",")),
            });
        };

        Ok(FlowReader {
            path,
            csv,
            record,
            header,
            layout,
            format,
            options,
            skipped_rows: 0,
            finished: false,
        })
    }

    /// The format detected from the header.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file this reader reads, as named in its errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows skipped so far because they could not be parsed.
    pub fn skipped_rows(&self) -> u64 {
        self.skipped_rows
    }

    /// Turns a row's failure into an error naming file, line and column.
    fn row_error(&self, error: RowError, line: u64) -> ReadError {
        match error {
            RowError::Field { column, reason } => ReadError::BadField {
                path: self.path.clone(),
                line,
                column: column + 1,
                column_name: self.header.get(column).cloned().unwrap_or_default(),
                text: shorten(&String::from_utf8_lossy(
                    self.record.get(column).unwrap_or(b""),
                )),
                reason,
            },
            RowError::Width { found } => ReadError::FieldCount {
                path: self.path.clone(),
                line,
                expected: self.header.len(),
                found,
            },
        }
    }

    fn skip(&mut self, error: &ReadError) {
        self.skipped_rows += 1;
        if self.skipped_rows == 1 {
            tracing::warn!(%error, "skipping bad rows; further ones are logged at debug level");
        } else {
            tracing::debug!(%error, "skipping bad row");
        }
    }
}

impl Iterator for FlowReader {
    type Item = Result<Flow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let line = self.csv.position().line();
            match self.csv.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => self.finished = true,
                Err(source) => {
                    self.finished = true;
                    return Some(Err(csv_error(&self.path, line, source)));
                }
            }
            if self.finished {
                break;
            }
            let line = self.record.position().map_or(line, csv::Position::line);
            match self.layout.parse(&self.record) {
                Ok(Some(flow)) => return Some(Ok(flow)),
                Ok(None) => self.finished = true,
                Err(row_error) => {
                    let error = self.row_error(row_error, line);
                    if !self.options.skip_bad_rows {
                        self.finished = true;
                        return Some(Err(error));
                    }
                    self.skip(&error);
                }
            }
        }
        None
    }
}

/// Reads every flow of every file, in order, into memory.
pub fn read_all<P: AsRef<Path>>(
    paths: impl IntoIterator<Item = P>,
    options: ReadOptions,
) -> Result<Vec<Flow>, ReadError> {
    let mut flows = Vec::new();
    for path in paths {
        for flow in FlowReader::open(path.as_ref(), options)? {
            flows.push(flow?);
        }
    }
    Ok(flows)
}

fn csv_error(path: &Path, line: u64, source: csv::Error) -> ReadError {
    let path = path.to_path_buf();
    let message = source.to_string();
    match source.into_kind() {
        csv::ErrorKind::Io(source) => ReadError::Io { path, source },
        _ => ReadError::Csv {
            path,
            line,
            message,
        },
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests;
