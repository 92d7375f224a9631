//! IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) encoding: templates, sets and
//! messages. No sockets and no clock: every call is handed a buffer and `now`.
//!
//! One [`ExportStream`] per collector stream holds what RFC 7011 and RFC 3954 tie
//! to a stream: the template schedule and the sequence counter. Each call to
//! [`ExportStream::encode`] writes one complete message into a reused buffer.
//!
//! What a message looks like:
//! - The header, then the template set with both templates (IPv4 and IPv6) when
//!   they are due: in the first message, after [`ExportStream::resend_templates`],
//!   when `template_refresh_s` has passed since they last went out, and in every
//!   `template_refresh_messages`-th message (RFC 7011 section 8 and 8.4 for
//!   UDP, RFC 3954 section 5.2). Over TCP set both triggers to 0 and call
//!   `resend_templates` after each reconnect: a reliable transport session needs
//!   the templates once.
//! - Then data sets. Consecutive flows of one address family share a data set;
//!   a change of family opens another set in the same message, so a mixed slice
//!   costs four octets per change and no extra message.
//! - No message is longer than `max_message_bytes`. Every layout's record length
//!   is a multiple of four (checked at compile time), so no set needs padding.
//!
//! Times: the headers carry whole seconds, so the encoder takes the start of the
//! current second (`now_ms` rounded down) as the export time and keeps
//! flowStart <= flowEnd <= export time in milliseconds. A flow that ends later
//! is moved back whole, keeping its duration (counted in
//! [`StreamStats::shifted_flows`]).
//!
//! Flows whose addresses are anonymised tokens ([`crate::flow::Address::Token`])
//! cannot be encoded; the caller maps them to addresses first. The encoder skips
//! any it is handed, consumes them (so the caller still advances) and counts them
//! in [`StreamStats::skipped_token_flows`].

#[cfg(test)]
mod fixtures;
mod ipfix;
mod netflow9;
mod record;
mod template;

pub use template::{AddressFamily, FieldSpec, TemplateLayout};

use crate::flow::Flow;
use record::{Addresses, FlowTimes, MAX_RECORD_LEN};

/// The export protocol of one collector stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportProtocol {
    /// IPFIX, RFC 7011.
    Ipfix,
    /// NetFlow version 9, RFC 3954.
    Netflow9,
}

impl ExportProtocol {
    /// The template this protocol's data records of one address family go out under.
    pub fn template(self, family: AddressFamily) -> &'static TemplateLayout {
        template::layout(self, family)
    }

    /// The length of this protocol's message header, octets.
    pub fn header_len(self) -> usize {
        match self {
            ExportProtocol::Ipfix => ipfix::HEADER_LEN,
            ExportProtocol::Netflow9 => netflow9::HEADER_LEN,
        }
    }

    /// The length of the template set carrying both templates, octets.
    pub fn template_set_len(self) -> usize {
        template::template_set_len(self)
    }
}

/// Settings of one export stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// IPFIX observation domain id, or v9 source id. Default 1.
    pub observation_domain: u32,
    /// No message is longer than this, octets. Default 1472: a 1500-octet MTU
    /// less the IPv4 (20) and UDP (8) headers. Kept within
    /// [`StreamOptions::MIN_MESSAGE_BYTES`]..=[`StreamOptions::MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// Templates are resent after this many seconds; 0 turns the timer off.
    /// Default 60, so a collector that starts late decodes within a minute.
    pub template_refresh_s: u64,
    /// Templates ride in every this-many-th message; 0 turns the count off.
    /// Default 100: under 0.1 % of the octets at 1472-octet messages.
    pub template_refresh_messages: u64,
}

impl StreamOptions {
    /// The smallest usable `max_message_bytes`: a header, both templates and
    /// one IPv6 data record in its own set, for either protocol.
    pub const MIN_MESSAGE_BYTES: usize = 220;
    /// The largest `max_message_bytes`: IPFIX's 16-bit message length field.
    pub const MAX_MESSAGE_BYTES: usize = u16::MAX as usize;

    /// Checks the options, naming the offending setting.
    pub fn validate(&self) -> Result<(), ExportError> {
        if !(Self::MIN_MESSAGE_BYTES..=Self::MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(ExportError::MessageSizeOutOfRange {
                max_message_bytes: self.max_message_bytes,
                min: Self::MIN_MESSAGE_BYTES,
                max: Self::MAX_MESSAGE_BYTES,
            });
        }
        Ok(())
    }
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            observation_domain: 1,
            max_message_bytes: 1472,
            template_refresh_s: 60,
            template_refresh_messages: 100,
        }
    }
}

// MIN_MESSAGE_BYTES must cover both protocols' worst case.
const _: () = {
    let protocols = [ExportProtocol::Ipfix, ExportProtocol::Netflow9];
    let mut i = 0;
    while i < protocols.len() {
        let header = match protocols[i] {
            ExportProtocol::Ipfix => ipfix::HEADER_LEN,
            ExportProtocol::Netflow9 => netflow9::HEADER_LEN,
        };
        let v6 = template::layout(protocols[i], AddressFamily::V6).record_len();
        let worst = header + template::template_set_len(protocols[i]) + SET_HEADER_LEN + v6;
        assert!(worst <= StreamOptions::MIN_MESSAGE_BYTES);
        assert!(v6 <= MAX_RECORD_LEN);
        i += 1;
    }
};

/// A stream setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// `max_message_bytes` cannot hold a full message, or overflows the length field.
    #[error(
        "max_message_bytes = {max_message_bytes} is outside {min}..={max}: a message must \
         hold the header, both templates and one IPv6 record, and fit a 16-bit length"
    )]
    MessageSizeOutOfRange {
        /// The configured value.
        max_message_bytes: usize,
        /// The smallest value that works.
        min: usize,
        /// The largest value that works.
        max: usize,
    },
}

/// Running totals of one stream, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Messages encoded (v9: export packets).
    pub messages: u64,
    /// Messages that carried the template set.
    pub template_messages: u64,
    /// Data records encoded.
    pub data_records: u64,
    /// Octets of all messages encoded.
    pub octets: u64,
    /// Flows skipped because an address was an anonymised token.
    pub skipped_token_flows: u64,
    /// Flows moved back because they ended after the export time.
    pub shifted_flows: u64,
}

/// What one call to [`ExportStream::encode`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// Flows taken from the front of the slice: encoded plus skipped.
    pub flows_consumed: usize,
    /// Data records in the message.
    pub data_records: usize,
    /// Whether the message carried the template set.
    pub carried_templates: bool,
    /// Flows skipped because an address was an anonymised token.
    pub skipped_token_flows: usize,
    /// Message length, octets; 0 when there was nothing to send.
    pub octets: usize,
}

/// Set (IPFIX) or FlowSet (v9) header length: id and length, two octets each.
const SET_HEADER_LEN: usize = 4;

/// The encoder state of one collector stream: template timers and sequence numbers.
#[derive(Clone, Debug)]
pub struct ExportStream {
    protocol: ExportProtocol,
    options: StreamOptions,
    /// v9 sysUpTime zero, Unix ms, on a whole second so that a collector's
    /// `unix_secs * 1000 - sysUpTime` finds it exactly.
    boot_ms: u64,
    templates_requested: bool,
    templates_sent_ms: u64,
    messages_without_templates: u64,
    stats: StreamStats,
}

impl ExportStream {
    /// A new stream; `now_ms` (Unix ms) is the exporter's start, v9's sysUpTime zero.
    ///
    /// A `max_message_bytes` outside the range [`StreamOptions::validate`] accepts
    /// is brought to its nearest end, so encoding never fails; validate the
    /// options first to report it.
    pub fn new(protocol: ExportProtocol, mut options: StreamOptions, now_ms: u64) -> ExportStream {
        options.max_message_bytes = options.max_message_bytes.clamp(
            StreamOptions::MIN_MESSAGE_BYTES,
            StreamOptions::MAX_MESSAGE_BYTES,
        );
        ExportStream {
            protocol,
            options,
            boot_ms: whole_second(now_ms),
            templates_requested: true,
            templates_sent_ms: now_ms,
            messages_without_templates: 0,
            stats: StreamStats::default(),
        }
    }

    /// The stream's protocol.
    pub fn protocol(&self) -> ExportProtocol {
        self.protocol
    }

    /// The options in force (after `max_message_bytes` was brought into range).
    pub fn options(&self) -> &StreamOptions {
        &self.options
    }

    /// Totals since the stream was created.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Whether the next message at `now_ms` will carry the templates.
    ///
    /// A sender with no flows can call [`ExportStream::encode`] with an empty
    /// slice when this is true to keep a late-starting collector informed.
    pub fn templates_due(&self, now_ms: u64) -> bool {
        let refresh_ms = self.options.template_refresh_s.saturating_mul(1000);
        let by_timer = self.options.template_refresh_s > 0
            && now_ms.saturating_sub(self.templates_sent_ms) >= refresh_ms;
        let by_count = self.options.template_refresh_messages > 0
            && self.messages_without_templates + 1 >= self.options.template_refresh_messages;
        self.templates_requested || by_timer || by_count
    }

    /// Makes the next message carry the templates (after a TCP reconnect, RFC 7011 10.4).
    pub fn resend_templates(&mut self) {
        self.templates_requested = true;
    }

    /// Encodes one message into `out` (cleared first) from the front of `flows`,
    /// with template sets first when they are due, and returns how many flows it took.
    pub fn encode_message(&mut self, flows: &[Flow], now_ms: u64, out: &mut Vec<u8>) -> usize {
        self.encode(flows, now_ms, out).flows_consumed
    }

    /// Encodes one message into `out` (cleared first) from the front of `flows`
    /// and says what went into it.
    ///
    /// `out` is left empty, and nothing counted as sent, when there are neither
    /// templates due nor encodable flows. Otherwise the caller is expected to send
    /// `out`: the message is counted in the sequence numbers, so one that is lost
    /// shows as a gap at the collector, as it should. Each call consumes at least
    /// one flow when `flows` is not empty.
    pub fn encode(&mut self, flows: &[Flow], now_ms: u64, out: &mut Vec<u8>) -> MessageSummary {
        out.clear();
        out.resize(self.protocol.header_len(), 0);
        let carried_templates = self.templates_due(now_ms);
        let mut record_count = 0u16;
        if carried_templates {
            record_count += template::write_template_set(self.protocol, out);
        }

        let export_ms = whole_second(now_ms);
        let body = self.encode_data(flows, export_ms, out);
        record_count += body.data_records as u16;
        self.stats.skipped_token_flows += body.skipped_token_flows as u64;

        if body.data_records == 0 && !carried_templates {
            out.clear();
            return MessageSummary { octets: 0, ..body };
        }
        self.finish_message(out, export_ms, record_count);

        if carried_templates {
            self.templates_requested = false;
            self.templates_sent_ms = now_ms;
            self.messages_without_templates = 0;
            self.stats.template_messages += 1;
        } else {
            self.messages_without_templates += 1;
        }
        self.stats.messages += 1;
        self.stats.data_records += body.data_records as u64;
        self.stats.octets += out.len() as u64;
        MessageSummary {
            carried_templates,
            octets: out.len(),
            ..body
        }
    }

    /// Appends data sets for as many flows as fit in the message.
    fn encode_data(&mut self, flows: &[Flow], export_ms: u64, out: &mut Vec<u8>) -> MessageSummary {
        let max_len = self.options.max_message_bytes;
        let floor_ms = self.floor_ms(export_ms);
        let mut summary = MessageSummary::default();
        let mut open_set: Option<(AddressFamily, usize)> = None;
        let mut record = [0u8; MAX_RECORD_LEN];

        for flow in flows {
            let Some(addresses) = Addresses::of(flow) else {
                summary.skipped_token_flows += 1;
                summary.flows_consumed += 1;
                continue;
            };
            let family = addresses.family();
            let layout = template::layout(self.protocol, family);
            let new_set = open_set.map(|(f, _)| f) != Some(family);
            let needed = layout.record_len() + if new_set { SET_HEADER_LEN } else { 0 };
            if out.len() + needed > max_len {
                break;
            }
            if new_set {
                if let Some((_, start)) = open_set {
                    close_set(out, start);
                }
                open_set = Some((family, out.len()));
                out.extend_from_slice(&layout.template_id.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }

            let times = FlowTimes::clamp(flow, export_ms, floor_ms);
            let len = self.write_record(&addresses, flow, times, &mut record);
            out.extend_from_slice(&record[..len]);
            self.stats.shifted_flows += u64::from(times.shifted);
            summary.data_records += 1;
            summary.flows_consumed += 1;
        }
        if let Some((_, start)) = open_set {
            close_set(out, start);
        }
        summary
    }

    /// Fills `record` with one data record in template field order; returns its length.
    fn write_record(
        &self,
        addresses: &Addresses,
        flow: &Flow,
        times: FlowTimes,
        record: &mut [u8; MAX_RECORD_LEN],
    ) -> usize {
        let mut len = addresses.write(record);
        len += record::write_common(flow, addresses.family(), record, len);
        len += match self.protocol {
            ExportProtocol::Ipfix => ipfix::write_times(record, len, times),
            ExportProtocol::Netflow9 => netflow9::write_times(record, len, times, self.boot_ms),
        };
        len
    }

    /// The earliest time a record may carry: the epoch for IPFIX; for v9 sysUpTime
    /// zero, and no more than 2^32 - 1 ms before the export so the age is unambiguous.
    fn floor_ms(&self, export_ms: u64) -> u64 {
        match self.protocol {
            ExportProtocol::Ipfix => 0,
            ExportProtocol::Netflow9 => self
                .boot_ms
                .max(export_ms.saturating_sub(u64::from(u32::MAX))),
        }
    }

    /// Writes the header over the front of the finished message.
    fn finish_message(&self, out: &mut [u8], export_ms: u64, record_count: u16) {
        let export_time_s = (export_ms / 1000) as u32;
        match self.protocol {
            ExportProtocol::Ipfix => ipfix::write_header(
                out,
                &ipfix::Header {
                    export_time_s,
                    // RFC 7011 section 3.1: data records sent before this message, mod 2^32.
                    sequence: self.stats.data_records as u32,
                    observation_domain: self.options.observation_domain,
                },
            ),
            ExportProtocol::Netflow9 => netflow9::write_header(
                out,
                &netflow9::Header {
                    record_count,
                    sys_uptime_ms: netflow9::uptime_ms(self.boot_ms, export_ms),
                    unix_secs: export_time_s,
                    // RFC 3954 section 5.1: export packets sent before this one, mod 2^32.
                    sequence: self.stats.messages as u32,
                    source_id: self.options.observation_domain,
                },
            ),
        }
    }
}

/// Writes the length of the set that starts at `start` and runs to the end of `out`.
fn close_set(out: &mut [u8], start: usize) {
    // Messages stay below u16::MAX octets, so a set does too.
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// `t_ms` rounded down to a whole second.
fn whole_second(t_ms: u64) -> u64 {
    t_ms - t_ms % 1000
}

#[cfg(test)]
mod tests {
    use super::fixtures::{known_v4_flow, NOW_MS};
    use super::*;

    fn sequence(message: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([
            message[at],
            message[at + 1],
            message[at + 2],
            message[at + 3],
        ])
    }

    #[test]
    fn ipfix_sequence_wraps_modulo_two_to_the_32() {
        let mut stream = ExportStream::new(ExportProtocol::Ipfix, StreamOptions::default(), NOW_MS);
        stream.stats.data_records = u64::from(u32::MAX) - 1;
        let flows = vec![known_v4_flow(); 5];
        let mut out = Vec::new();
        stream.encode_message(&flows, NOW_MS, &mut out);
        assert_eq!(sequence(&out, 8), u32::MAX - 1);
        stream.encode_message(&flows, NOW_MS, &mut out);
        assert_eq!(sequence(&out, 8), 3);
    }

    #[test]
    fn v9_sequence_wraps_modulo_two_to_the_32() {
        let mut stream =
            ExportStream::new(ExportProtocol::Netflow9, StreamOptions::default(), NOW_MS);
        stream.stats.messages = u64::from(u32::MAX);
        let mut out = Vec::new();
        stream.encode_message(&[known_v4_flow()], NOW_MS, &mut out);
        assert_eq!(sequence(&out, 12), u32::MAX);
        stream.encode_message(&[known_v4_flow()], NOW_MS, &mut out);
        assert_eq!(sequence(&out, 12), 0);
    }
}
