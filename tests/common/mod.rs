//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// The shared data folder: `FLOWGEN_SHARED`, else `../shared` next to the
/// repository, else `/work/shared`.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOWGEN_SHARED") {
        return PathBuf::from(dir);
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if beside.is_dir() {
        return beside;
    }
    PathBuf::from("/work/shared")
}

/// The 6,144-flow CIDDS-001 sample.
pub fn cidds_sample() -> PathBuf {
    shared_dir().join("data/cidds-001/cidds-001-week3-sample.csv")
}
