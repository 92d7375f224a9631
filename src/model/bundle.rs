//! The on-disk model bundle: a folder with `manifest.json` and the files its kind needs.

use std::path::PathBuf;

/// What went wrong loading or writing a model bundle; names the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A bundle file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
}
