//! The CSV nfdump writes with `nfdump -r FILE -o csv` (checked against nfdump 1.7.1).
//!
//! The header names columns by nfdump's short tags (`ts,te,td,sa,da,sp,dp,pr,
//! flg,fwd,stos,ipkt,ibyt,...`); flags are eight characters `CEUAPRSF`, ICMP
//! type and code are the destination port `type * 256 + code`, and unless
//! `-q` is given the records are followed by a `Summary` block, which ends
//! the data.
//!
//! nfdump prints `ts` in the local time zone of the machine running it,
//! with whole seconds; this reader takes it as UTC, so captures exported on
//! a machine not set to UTC come out shifted by its offset (run nfdump with
//! `TZ=UTC`). Only the input direction (`ipkt`, `ibyt`) is read: the output
//! counters of bidirectional records are ignored.

use csv::ByteRecord;

use super::fields::{self, IcmpSpelling};
use super::row::{address, text, RowError};
use crate::flow::{Flow, Protocol};

/// The columns this reader needs, by nfdump's tag.
pub const REQUIRED_COLUMNS: [&str; 10] = [
    "ts", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt",
];

/// Where each needed column sits in one file's header.
#[derive(Debug)]
pub(crate) struct NfdumpLayout {
    width: usize,
    columns: [usize; 10],
    stos: Option<usize>,
}

/// What a data line of an nfdump CSV turned out to be.
pub(crate) enum NfdumpRow {
    /// A flow record.
    Flow(Flow),
    /// The first line of the trailing summary: no records follow.
    Summary,
}

impl NfdumpLayout {
    /// Recognises an nfdump CSV header.
    pub(crate) fn from_header(names: &[String]) -> Option<NfdumpLayout> {
        let find = |wanted: &str| names.iter().position(|n| n.trim() == wanted);
        let mut columns = [0usize; 10];
        for (slot, name) in columns.iter_mut().zip(REQUIRED_COLUMNS) {
            *slot = find(name)?;
        }
        Some(NfdumpLayout {
            width: names.len(),
            columns,
            stos: find("stos"),
        })
    }

    /// Parses one data line.
    pub(crate) fn parse(&self, record: &ByteRecord) -> Result<NfdumpRow, RowError> {
        if record.len() == 1 && record.get(0).map(<[u8]>::trim_ascii) == Some(b"Summary") {
            return Ok(NfdumpRow::Summary);
        }
        if record.len() != self.width {
            return Err(RowError::Width {
                found: record.len(),
            });
        }
        let [ts, td, sa, da, sp, dp, pr, flg, ipkt, ibyt] = self.columns;
        let field = |column: usize| text(record, column);
        let check = |column: usize, reason| RowError::Field { column, reason };

        let protocol =
            Protocol::parse(field(pr)?).ok_or(check(pr, "not a protocol name or number"))?;
        // ICMP flows carry type and code in the destination port; the source
        // port must still be a number, but the record keeps 0 there.
        let src_port = fields::port(field(sp)?).map_err(|r| check(sp, r))?;
        let (src_port, dst_port) = if protocol.is_icmp() {
            let type_code = fields::icmp_type_code(field(dp)?, IcmpSpelling::Combined)
                .map_err(|r| check(dp, r))?;
            (0, type_code)
        } else {
            (
                src_port,
                fields::port(field(dp)?).map_err(|r| check(dp, r))?,
            )
        };

        Ok(NfdumpRow::Flow(Flow {
            start_ms: fields::timestamp_ms(field(ts)?).map_err(|r| check(ts, r))?,
            duration_ms: fields::seconds_as_ms(field(td)?).map_err(|r| check(td, r))?,
            protocol,
            src: address(record, sa)?,
            dst: address(record, da)?,
            src_port,
            dst_port,
            packets: fields::count(field(ipkt)?).map_err(|r| check(ipkt, r))?,
            bytes: fields::count(field(ibyt)?).map_err(|r| check(ibyt, r))?,
            tcp_flags: fields::tcp_flags(field(flg)?).map_err(|r| check(flg, r))?,
            tos: match self.stos {
                Some(column) => fields::tos(field(column)?).map_err(|r| check(column, r))?,
                None => 0,
            },
            label: None,
        }))
    }
}
