//! Writing flows as CIDDS-001 CSV, the format `flowgen generate` produces.
//!
//! Numbers are written plainly (`1200000`, not `1.2 M`), protocols unpadded,
//! ICMP ports as `type.code`, flags as the `UAPRSF` mask (hexadecimal when
//! ECE or CWR is set, which the mask cannot show), so every written file
//! reads back into the same flows.

use std::fmt::Write as _;
use std::io::Write;

use chrono::DateTime;

use super::cidds::{CORE_COLUMNS, LABEL_COLUMNS};
use crate::flow::{Flow, TcpFlags};

/// Earliest start time the four-digit year of the `Date first seen` column can show.
const MIN_START_MS: i64 = -62_167_219_200_000;
/// Latest start time the four-digit year of the `Date first seen` column can show.
const MAX_START_MS: i64 = 253_402_300_799_999;

/// What went wrong writing CIDDS-001 CSV.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output could not be written.
    #[error("writing csv: {0}")]
    Io(#[from] std::io::Error),
    /// A flow's start time lies outside years 0000 to 9999.
    #[error("flow start {start_ms} ms since the epoch is outside years 0000 to 9999")]
    StartOutOfRange {
        /// The flow's start time.
        start_ms: i64,
    },
}

/// Writes flows as CIDDS-001 CSV to any [`Write`]; the header goes out on creation.
pub struct CiddsWriter<W: Write> {
    csv: csv::Writer<W>,
    labelled: bool,
    fields: Vec<String>,
}

impl<W: Write> CiddsWriter<W> {
    /// A writer of the eleven core columns (no ToS, no label).
    pub fn new(out: W) -> Result<CiddsWriter<W>, WriteError> {
        CiddsWriter::create(out, false)
    }

    /// A writer of all sixteen columns: the core ones, then `Tos` and the label
    /// (empty for unlabelled flows).
    pub fn with_labels(out: W) -> Result<CiddsWriter<W>, WriteError> {
        CiddsWriter::create(out, true)
    }

    fn create(out: W, labelled: bool) -> Result<CiddsWriter<W>, WriteError> {
        let mut csv = csv::WriterBuilder::new()
            .buffer_capacity(64 * 1024)
            .from_writer(out);
        let width = if labelled { 16 } else { 11 };
        let header = CORE_COLUMNS.iter().chain(LABEL_COLUMNS.iter()).take(width);
        csv.write_record(header).map_err(into_io)?;
        Ok(CiddsWriter {
            csv,
            labelled,
            fields: vec![String::new(); width],
        })
    }

    /// Writes one flow as one row.
    pub fn write(&mut self, flow: &Flow) -> Result<(), WriteError> {
        if !(MIN_START_MS..=MAX_START_MS).contains(&flow.start_ms) {
            return Err(WriteError::StartOutOfRange {
                start_ms: flow.start_ms,
            });
        }
        self.fields.iter_mut().for_each(String::clear);
        // Writing into a String cannot fail; the results are ignored for that reason.
        let f = &mut self.fields;
        if let Some(start) = DateTime::from_timestamp_millis(flow.start_ms) {
            let _ = write!(f[0], "{}", start.format("%Y-%m-%d %H:%M:%S%.3f"));
        }
        let _ = write!(
            f[1],
            "{}.{:03}",
            flow.duration_ms / 1000,
            flow.duration_ms % 1000
        );
        let _ = write!(f[2], "{}", flow.protocol);
        let _ = write!(f[3], "{}", flow.src);
        let _ = write!(f[5], "{}", flow.dst);
        let _ = write!(f[4], "{}", flow.src_port);
        match flow.icmp_type_code() {
            Some((icmp_type, code)) => {
                let _ = write!(f[6], "{icmp_type}.{code}");
            }
            None => {
                let _ = write!(f[6], "{}", flow.dst_port);
            }
        }
        let _ = write!(f[7], "{}", flow.packets);
        let _ = write!(f[8], "{}", flow.bytes);
        f[9].push('1');
        f[10].push_str(&flags_text(flow.tcp_flags));
        if self.labelled {
            let _ = write!(f[11], "{}", flow.tos);
            if let Some(label) = &flow.label {
                f[12].push_str(&label.class);
                f[13].push_str(&label.attack_type);
                f[14].push_str(&label.attack_id);
                f[15].push_str(&label.attack_description);
            }
        }
        self.csv.write_record(&self.fields).map_err(into_io)
    }

    /// Flushes buffered rows to the output.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.csv.flush().map_err(WriteError::Io)
    }

    /// Flushes and returns the output.
    pub fn into_inner(self) -> Result<W, WriteError> {
        self.csv.into_inner().map_err(|e| {
            WriteError::Io(std::io::Error::new(e.error().kind(), e.error().to_string()))
        })
    }
}

/// The `UAPRSF` mask, or hexadecimal when a bit outside the mask is set.
fn flags_text(flags: TcpFlags) -> String {
    if flags.0 & (TcpFlags::ECE | TcpFlags::CWR) != 0 {
        format!("0x{:02x}", flags.0)
    } else {
        flags.to_uaprsf()
    }
}

/// The csv crate's errors while writing are I/O errors: it never has to
/// reject a record, since it quotes whatever needs quoting.
fn into_io(error: csv::Error) -> WriteError {
    match error.into_kind() {
        csv::ErrorKind::Io(e) => WriteError::Io(e),
        other => WriteError::Io(std::io::Error::other(format!("{other:?}"))),
    }
}
