//! Reading IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) messages as a collector
//! does, to count their records: headers, template sets and data sets, every
//! length checked. No I/O; the sink hands each datagram in.
//!
//! Templates are learnt from the wire, never taken from [`crate::export`], so a
//! wrong template or a wrong record length in the exporter shows up here as a
//! malformed message or as records that do not add up. Sequence numbers are
//! followed per exporter and domain, so records lost between the exporter and
//! the sink (a full socket buffer) are counted too.

use std::collections::HashMap;
use std::net::SocketAddr;

/// IPFIX message header length (RFC 7011 section 3.1).
const IPFIX_HEADER_LEN: usize = 16;
/// NetFlow v9 packet header length (RFC 3954 section 5.1).
const V9_HEADER_LEN: usize = 20;
/// Set (IPFIX) and FlowSet (v9) header length.
const SET_HEADER_LEN: usize = 4;
/// IPFIX set ids (RFC 7011 section 3.3.2).
const IPFIX_TEMPLATE_SET: u16 = 2;
const IPFIX_OPTIONS_TEMPLATE_SET: u16 = 3;
/// NetFlow v9 FlowSet ids (RFC 3954 section 5.2).
const V9_TEMPLATE_SET: u16 = 0;
const V9_OPTIONS_TEMPLATE_SET: u16 = 1;
/// Data sets use template ids from here on, in both protocols.
const FIRST_DATA_SET: u16 = 256;
/// A field length that says "variable length" (RFC 7011 section 7).
const VARIABLE_LENGTH: u16 = 65_535;

/// Why a datagram is not a well-formed export message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header.
    #[error("{len} octets is shorter than a message header")]
    Short {
        /// Octets received.
        len: usize,
    },
    /// Neither IPFIX (10) nor NetFlow v9 (9).
    #[error("version {0} is neither ipfix (10) nor netflow v9 (9)")]
    Version(u16),
    /// The IPFIX length field disagrees with the datagram.
    #[error("header says {header} octets, the datagram has {datagram}")]
    Length {
        /// The header's length field.
        header: usize,
        /// Octets received.
        datagram: usize,
    },
    /// A set runs past the message or is shorter than its header.
    #[error("set {set_id} at octet {offset} has length {len}, {left} octets are left")]
    SetLength {
        /// The set id.
        set_id: u16,
        /// Where the set starts in the message.
        offset: usize,
        /// Its length field.
        len: usize,
        /// Octets from the set's start to the message end.
        left: usize,
    },
    /// A set id the protocol reserves (IPFIX 0, 1, 4 to 255; v9 2 to 255).
    #[error("set id {0} is reserved")]
    ReservedSet(u16),
    /// A template record that does not fit its set or defines no fields.
    #[error("template record at octet {offset} is malformed")]
    Template {
        /// Where the template record starts in the message.
        offset: usize,
    },
    /// A data set whose content is not a whole number of records.
    #[error("data set {set_id} has {len} octets, not whole records of {record_len}")]
    Records {
        /// The set id (the template id).
        set_id: u16,
        /// Octets of records in the set.
        len: usize,
        /// The template's record length (fixed-length templates).
        record_len: usize,
    },
    /// NetFlow v9: the header's count disagrees with the records in the packet.
    #[error("header counts {header} records, the packet holds {found}")]
    Count {
        /// The header's count field.
        header: usize,
        /// Template and data records found.
        found: usize,
    },
}

/// What one message held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCount {
    /// Data records decoded with a known template.
    pub data_records: u64,
    /// Template and options template records.
    pub template_records: u64,
    /// Data sets for a template not (yet) seen: what a collector must drop.
    pub unknown_template_sets: u64,
    /// Data records (IPFIX) or packets (v9) the sequence numbers say went missing
    /// before this message.
    pub sequence_gap: u64,
}

/// The record layout a template defines.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    /// Every record has this many octets.
    Fixed(usize),
    /// At least one field is variable-length: the field lengths, in order.
    Variable(Vec<u16>),
}

/// What the counter remembers of one exporter's stream (source address and domain).
#[derive(Debug, Default)]
struct Stream {
    templates: HashMap<u16, Shape>,
    /// IPFIX: the sequence number the next message should carry; v9: the next packet's.
    next_sequence: Option<u32>,
}

/// Counts the records of the messages it is handed, stream by stream.
#[derive(Debug, Default)]
pub struct WireCounter {
    streams: HashMap<(SocketAddr, u32, u16), Stream>,
}

/// Where a message's sets start, and what to check them against.
struct Framing {
    version: u16,
    domain: u32,
    sequence: u32,
    header_len: usize,
    /// NetFlow v9's record count.
    v9_count: Option<usize>,
}

impl WireCounter {
    /// A counter that has seen no template yet.
    pub fn new() -> WireCounter {
        WireCounter::default()
    }

    /// Reads one message that came from `from`; templates it carries are kept
    /// for the messages that follow.
    pub fn count(&mut self, from: SocketAddr, message: &[u8]) -> Result<MessageCount, WireError> {
        let framing = framing(message)?;
        let stream = self
            .streams
            .entry((from, framing.domain, framing.version))
            .or_default();
        let mut count = MessageCount::default();
        let mut offset = framing.header_len;
        while offset < message.len() {
            // IPFIX sets are 4-aligned by length; v9 may pad the packet's tail.
            if message.len() - offset < SET_HEADER_LEN && framing.version == 9 {
                break;
            }
            let set = set_at(message, offset)?;
            let body = &message[offset + SET_HEADER_LEN..offset + set.len];
            read_set(stream, framing.version, set.id, body, offset, &mut count)?;
            offset += set.len;
        }
        if let Some(header) = framing.v9_count {
            let found = (count.data_records + count.template_records) as usize;
            // Data sets of unknown templates cannot be counted record by record.
            if count.unknown_template_sets == 0 && found != header {
                return Err(WireError::Count { header, found });
            }
        }
        if count.unknown_template_sets > 0 {
            // Records we could not count make the next sequence number unknowable.
            stream.next_sequence = None;
        } else {
            count.sequence_gap = follow_sequence(stream, &framing, count.data_records);
        }
        Ok(count)
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn framing(message: &[u8]) -> Result<Framing, WireError> {
    if message.len() < 2 {
        return Err(WireError::Short { len: message.len() });
    }
    let version = be16(message, 0);
    let header_len = match version {
        10 => IPFIX_HEADER_LEN,
        9 => V9_HEADER_LEN,
        other => return Err(WireError::Version(other)),
    };
    if message.len() < header_len {
        return Err(WireError::Short { len: message.len() });
    }
    if version == 10 {
        let header = usize::from(be16(message, 2));
        if header != message.len() {
            return Err(WireError::Length {
                header,
                datagram: message.len(),
            });
        }
        return Ok(Framing {
            version,
            domain: be32(message, 12),
            sequence: be32(message, 8),
            header_len,
            v9_count: None,
        });
    }
    Ok(Framing {
        version,
        domain: be32(message, 16),
        sequence: be32(message, 12),
        header_len,
        v9_count: Some(usize::from(be16(message, 2))),
    })
}

struct SetHeader {
    id: u16,
    len: usize,
}

fn set_at(message: &[u8], offset: usize) -> Result<SetHeader, WireError> {
    let left = message.len() - offset;
    let id = if left >= 2 { be16(message, offset) } else { 0 };
    let len = if left >= SET_HEADER_LEN {
        usize::from(be16(message, offset + 2))
    } else {
        0
    };
    if len < SET_HEADER_LEN || len > left {
        return Err(WireError::SetLength {
            set_id: id,
            offset,
            len,
            left,
        });
    }
    Ok(SetHeader { id, len })
}

fn read_set(
    stream: &mut Stream,
    version: u16,
    set_id: u16,
    body: &[u8],
    offset: usize,
    count: &mut MessageCount,
) -> Result<(), WireError> {
    let body_offset = offset + SET_HEADER_LEN;
    match (version, set_id) {
        (10, IPFIX_TEMPLATE_SET) | (9, V9_TEMPLATE_SET) => {
            read_templates(stream, version, body, body_offset, false, count)
        }
        (10, IPFIX_OPTIONS_TEMPLATE_SET) | (9, V9_OPTIONS_TEMPLATE_SET) => {
            read_templates(stream, version, body, body_offset, true, count)
        }
        (_, id) if id >= FIRST_DATA_SET => match stream.templates.get(&id) {
            Some(shape) => {
                count.data_records += count_records(shape, id, body)?;
                Ok(())
            }
            None => {
                count.unknown_template_sets += 1;
                Ok(())
            }
        },
        (_, id) => Err(WireError::ReservedSet(id)),
    }
}

/// Template records (RFC 7011 section 3.4.1, 3.4.2; RFC 3954 section 5.2, 6.1).
fn read_templates(
    stream: &mut Stream,
    version: u16,
    body: &[u8],
    body_offset: usize,
    options: bool,
    count: &mut MessageCount,
) -> Result<(), WireError> {
    let mut at = 0;
    // What is left after the last record shorter than a record header is padding.
    while body.len() - at >= SET_HEADER_LEN {
        let malformed = WireError::Template {
            offset: body_offset + at,
        };
        let template_id = be16(body, at);
        let mut fields = usize::from(be16(body, at + 2));
        at += 4;
        if options {
            if body.len() - at < 2 {
                return Err(malformed);
            }
            // IPFIX: total field count then scope field count; v9: scope and option
            // lengths in octets, four per field.
            if version == 9 {
                let option_len = usize::from(be16(body, at));
                fields = (fields + option_len) / 4;
            }
            at += 2;
        }
        if template_id < FIRST_DATA_SET || fields == 0 {
            return Err(malformed);
        }
        let mut lengths = Vec::with_capacity(fields);
        for _ in 0..fields {
            if body.len() - at < 4 {
                return Err(malformed);
            }
            let element = be16(body, at);
            lengths.push(be16(body, at + 2));
            at += 4;
            // IPFIX enterprise-specific elements carry a 4-octet enterprise number.
            if version == 10 && element & 0x8000 != 0 {
                if body.len() - at < 4 {
                    return Err(malformed);
                }
                at += 4;
            }
        }
        let shape = if lengths.contains(&VARIABLE_LENGTH) {
            Shape::Variable(lengths)
        } else {
            Shape::Fixed(lengths.iter().map(|&l| usize::from(l)).sum())
        };
        stream.templates.insert(template_id, shape);
        count.template_records += 1;
    }
    Ok(())
}

fn count_records(shape: &Shape, set_id: u16, body: &[u8]) -> Result<u64, WireError> {
    match shape {
        Shape::Fixed(0) => Err(WireError::Records {
            set_id,
            len: body.len(),
            record_len: 0,
        }),
        Shape::Fixed(record_len) => {
            // Padding (fewer octets than a record, RFC 7011 section 3.3.1) must be zero.
            let records = body.len() / record_len;
            let padding = &body[records * record_len..];
            if padding.iter().any(|&b| b != 0) {
                return Err(WireError::Records {
                    set_id,
                    len: body.len(),
                    record_len: *record_len,
                });
            }
            Ok(records as u64)
        }
        Shape::Variable(lengths) => count_variable_records(lengths, set_id, body),
    }
}

/// Walks records with variable-length fields (RFC 7011 section 7).
fn count_variable_records(lengths: &[u16], set_id: u16, body: &[u8]) -> Result<u64, WireError> {
    let malformed = || WireError::Records {
        set_id,
        len: body.len(),
        record_len: 0,
    };
    let min_len: usize = lengths
        .iter()
        .map(|&l| {
            if l == VARIABLE_LENGTH {
                1
            } else {
                usize::from(l)
            }
        })
        .sum();
    let mut at = 0;
    let mut records = 0;
    while body.len() - at >= min_len {
        for &length in lengths {
            let field_len = if length == VARIABLE_LENGTH {
                let short = *body.get(at).ok_or_else(malformed)?;
                at += 1;
                if short == 255 {
                    let long = body.get(at..at + 2).ok_or_else(malformed)?;
                    at += 2;
                    usize::from(u16::from_be_bytes([long[0], long[1]]))
                } else {
                    usize::from(short)
                }
            } else {
                usize::from(length)
            };
            at = at
                .checked_add(field_len)
                .filter(|&a| a <= body.len())
                .ok_or_else(malformed)?;
        }
        records += 1;
    }
    Ok(records)
}

/// Checks the header's sequence number against the one expected; returns the gap.
fn follow_sequence(stream: &mut Stream, framing: &Framing, data_records: u64) -> u64 {
    // IPFIX counts data records before the message; v9 counts packets.
    let advance = if framing.version == 10 {
        data_records as u32
    } else {
        1
    };
    let gap = match stream.next_sequence {
        // A sequence number below the expected one is reordering or a restart, not loss.
        Some(expected) => match framing.sequence.wrapping_sub(expected) {
            ahead if ahead < u32::MAX / 2 => u64::from(ahead),
            _ => 0,
        },
        None => 0,
    };
    stream.next_sequence = Some(framing.sequence.wrapping_add(advance));
    gap
}

#[cfg(test)]
mod tests;
