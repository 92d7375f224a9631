//! Reading real flow files (CIDDS-001 CSV, nfdump CSV) and writing CIDDS-001 CSV.
//!
//! Readers stream: memory does not grow with the file's length.

use std::path::{Path, PathBuf};

use crate::flow::Flow;

/// What went wrong reading a flow file; always names the file, and the line
/// and column where one is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The reader is not written yet.
    #[error("{path}: reading flow files is not implemented yet")]
    Unimplemented {
        /// The file.
        path: PathBuf,
    },
}

/// How a reader treats rows it cannot parse.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Skip bad rows (and count them) instead of stopping at the first.
    pub skip_bad_rows: bool,
}

/// A streaming reader over one flow file, format detected from its header.
pub struct FlowReader {
    _private: (),
}

impl FlowReader {
    /// Opens `path` (CIDDS-001 or nfdump CSV, detected from the header).
    pub fn open(path: &Path, _options: ReadOptions) -> Result<FlowReader, ReadError> {
        Err(ReadError::Unimplemented {
            path: path.to_path_buf(),
        })
    }

    /// Rows skipped so far because they could not be parsed.
    pub fn skipped_rows(&self) -> u64 {
        0
    }
}

impl Iterator for FlowReader {
    type Item = Result<Flow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        None
    }
}
