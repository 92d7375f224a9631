//! The CIDDS-001 CSV layout: recognising its header and parsing its rows.
//!
//! Columns are found by name, so the optional `Tos` and label columns may be
//! present or not; a row must have as many fields as the header.

use csv::ByteRecord;

use super::fields::{self, IcmpSpelling};
use super::row::{address, text, RowError};
use crate::flow::{Flow, Label};

/// The eleven columns every CIDDS-001 file has, in their published order.
pub const CORE_COLUMNS: [&str; 11] = [
    "Date first seen",
    "Duration",
    "Proto",
    "Src IP Addr",
    "Src Pt",
    "Dst IP Addr",
    "Dst Pt",
    "Packets",
    "Bytes",
    "Flows",
    "Flags",
];

/// The five columns the labelled files add after the core ones.
pub const LABEL_COLUMNS: [&str; 5] = [
    "Tos",
    "class",
    "attackType",
    "attackID",
    "attackDescription",
];

/// Where each column sits in one file's header.
#[derive(Debug)]
pub(crate) struct CiddsLayout {
    width: usize,
    core: [usize; 11],
    tos: Option<usize>,
    class: Option<usize>,
    attack_type: Option<usize>,
    attack_id: Option<usize>,
    attack_description: Option<usize>,
}

impl CiddsLayout {
    /// Recognises a CIDDS-001 header (names compared trimmed and case-insensitively).
    pub(crate) fn from_header(names: &[String]) -> Option<CiddsLayout> {
        let find = |wanted: &str| {
            names
                .iter()
                .position(|n| n.trim().eq_ignore_ascii_case(wanted))
        };
        let mut core = [0usize; 11];
        for (slot, name) in core.iter_mut().zip(CORE_COLUMNS) {
            *slot = find(name)?;
        }
        Some(CiddsLayout {
            width: names.len(),
            core,
            tos: find(LABEL_COLUMNS[0]),
            class: find(LABEL_COLUMNS[1]),
            attack_type: find(LABEL_COLUMNS[2]),
            attack_id: find(LABEL_COLUMNS[3]),
            attack_description: find(LABEL_COLUMNS[4]),
        })
    }

    /// Parses one data row.
    pub(crate) fn parse(&self, record: &ByteRecord) -> Result<Flow, RowError> {
        if record.len() != self.width {
            return Err(RowError::Width {
                found: record.len(),
            });
        }
        let [date, duration, proto, src, src_port, dst, dst_port, packets, bytes, flows, flags] =
            self.core;
        let field = |column: usize| text(record, column);
        let check = |column: usize, reason| RowError::Field { column, reason };

        let protocol = crate::flow::Protocol::parse(field(proto)?)
            .ok_or(check(proto, "not a protocol name or number"))?;
        // ICMP flows carry type and code in the destination port; the source
        // port must still be a number, but the record keeps 0 there.
        let src_port_value = fields::port(field(src_port)?).map_err(|r| check(src_port, r))?;
        let (src_port_value, dst_port_value) = if protocol.is_icmp() {
            let type_code = fields::icmp_type_code(field(dst_port)?, IcmpSpelling::TypeDotCode)
                .map_err(|r| check(dst_port, r))?;
            (0, type_code)
        } else {
            let dst_port_value = fields::port(field(dst_port)?).map_err(|r| check(dst_port, r))?;
            (src_port_value, dst_port_value)
        };
        fields::count(field(flows)?).map_err(|r| check(flows, r))?;

        Ok(Flow {
            start_ms: fields::timestamp_ms(field(date)?).map_err(|r| check(date, r))?,
            duration_ms: fields::seconds_as_ms(field(duration)?).map_err(|r| check(duration, r))?,
            protocol,
            src: address(record, src)?,
            dst: address(record, dst)?,
            src_port: src_port_value,
            dst_port: dst_port_value,
            packets: fields::count(field(packets)?).map_err(|r| check(packets, r))?,
            bytes: fields::count(field(bytes)?).map_err(|r| check(bytes, r))?,
            tcp_flags: fields::tcp_flags(field(flags)?).map_err(|r| check(flags, r))?,
            tos: match self.tos {
                Some(column) => fields::tos(field(column)?).map_err(|r| check(column, r))?,
                None => 0,
            },
            label: self.label(record)?,
        })
    }

    /// The label, when the file has a `class` column and the row fills it.
    fn label(&self, record: &ByteRecord) -> Result<Option<Label>, RowError> {
        let Some(class_column) = self.class else {
            return Ok(None);
        };
        let class = text(record, class_column)?.trim();
        if class.is_empty() {
            return Ok(None);
        }
        let optional = |column: Option<usize>| -> Result<String, RowError> {
            match column {
                Some(column) => Ok(text(record, column)?.trim().to_owned()),
                None => Ok("---".to_owned()),
            }
        };
        Ok(Some(Label {
            class: class.to_owned(),
            attack_type: optional(self.attack_type)?,
            attack_id: optional(self.attack_id)?,
            attack_description: optional(self.attack_description)?,
        }))
    }
}
