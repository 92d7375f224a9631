//! IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) encoding: templates, sets and
//! messages. No sockets and no clock: every call is handed a buffer and `now`.

use crate::flow::Flow;

/// The export protocol of one collector stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportProtocol {
    /// IPFIX, RFC 7011.
    Ipfix,
    /// NetFlow version 9, RFC 3954.
    Netflow9,
}

/// Settings of one export stream.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// IPFIX observation domain id, or v9 source id.
    pub observation_domain: u32,
    /// No message is longer than this, octets.
    pub max_message_bytes: usize,
    /// Templates are resent after this many seconds.
    pub template_refresh_s: u64,
    /// Templates are resent after this many messages.
    pub template_refresh_messages: u64,
}

/// The encoder state of one collector stream: template timers and sequence numbers.
pub struct ExportStream {
    _private: (),
}

impl ExportStream {
    /// A new stream; `now_ms` (Unix ms) is the exporter's start, v9's sysUpTime zero.
    pub fn new(_protocol: ExportProtocol, _options: StreamOptions, _now_ms: u64) -> ExportStream {
        ExportStream { _private: () }
    }

    /// Encodes one message into `out` (cleared first) from the front of `flows`,
    /// with template sets first when they are due, and returns how many flows it took.
    pub fn encode_message(&mut self, _flows: &[Flow], _now_ms: u64, out: &mut Vec<u8>) -> usize {
        out.clear();
        0
    }

    /// Makes the next message carry the templates (after a TCP reconnect, RFC 7011 10.4).
    pub fn resend_templates(&mut self) {}
}
