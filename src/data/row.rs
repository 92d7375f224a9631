//! What the format layouts share: field access on a raw CSV record and the
//! row-level error they return before the reader adds file and line.

use csv::ByteRecord;

use crate::flow::Address;

/// Why one row could not be parsed; the reader turns it into a [`super::ReadError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RowError {
    /// A field (0-based column) did not parse.
    Field {
        /// 0-based column index.
        column: usize,
        /// Short lowercase reason.
        reason: &'static str,
    },
    /// The row has a different number of fields than the header.
    Width {
        /// Fields in the row.
        found: usize,
    },
}

/// The UTF-8 text of field `column`.
pub(crate) fn text(record: &ByteRecord, column: usize) -> Result<&str, RowError> {
    let bytes = record.get(column).ok_or(RowError::Width {
        found: record.len(),
    })?;
    std::str::from_utf8(bytes).map_err(|_| RowError::Field {
        column,
        reason: "not valid utf-8",
    })
}

/// An IP address or anonymised token from field `column`.
pub(crate) fn address(record: &ByteRecord, column: usize) -> Result<Address, RowError> {
    Address::parse(text(record, column)?).ok_or(RowError::Field {
        column,
        reason: "not an ip address or anonymised token",
    })
}
