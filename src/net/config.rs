//! Collector and export settings, as the `[[collector]]` and `[export]` tables
//! of a configuration file spell them.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

use crate::export::{ExportProtocol, StreamOptions};
use crate::net::NetError;

/// The transport a collector is reached over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP datagrams, one export message each (the default).
    #[default]
    Udp,
    /// A TCP connection carrying a stream of IPFIX messages (RFC 7011 section 10.4).
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// One collector: where it listens and what it is sent (a `[[collector]]` table).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// `HOST:PORT` of the collector, e.g. `127.0.0.1:4739`; a name is resolved once at start.
    pub address: String,
    /// `ipfix` (default) or `netflow9`.
    #[serde(default = "default_protocol")]
    pub protocol: ExportProtocol,
    /// `udp` (default) or `tcp`; TCP carries IPFIX only.
    #[serde(default)]
    pub transport: Transport,
    /// IPFIX observation domain id, or NetFlow v9 source id; default 1.
    #[serde(default = "default_observation_domain")]
    pub observation_domain: u32,
}

impl CollectorConfig {
    /// A UDP collector at `address` speaking `protocol`, observation domain 1.
    pub fn udp(address: impl Into<String>, protocol: ExportProtocol) -> CollectorConfig {
        CollectorConfig {
            address: address.into(),
            protocol,
            transport: Transport::Udp,
            observation_domain: default_observation_domain(),
        }
    }

    /// Checks the settings and resolves the address; `key` names the table in errors
    /// (e.g. `collector[0]`).
    pub fn resolve(&self, key: &str) -> Result<SocketAddr, NetError> {
        if self.transport == Transport::Tcp && self.protocol != ExportProtocol::Ipfix {
            return Err(NetError::Config {
                key: format!("{key}.transport"),
                message: "tcp carries ipfix only; netflow9 goes over udp".into(),
            });
        }
        let address = self
            .address
            .to_socket_addrs()
            .map_err(|source| NetError::Resolve {
                address: self.address.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| NetError::NoAddress {
                address: self.address.clone(),
            })?;
        if address.port() == 0 {
            return Err(NetError::Config {
                key: format!("{key}.address"),
                message: format!("`{}` has port 0", self.address),
            });
        }
        Ok(address)
    }
}

/// Encoding and sending settings shared by all collectors (the `[export]` table).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Templates are resent over UDP after this many seconds, so that a
    /// collector that starts late decodes within this long; default 10. Over
    /// TCP they go once per connection instead.
    pub template_refresh_s: u64,
    /// Templates are also resent over UDP after this many messages; default 100.
    pub template_refresh_messages: u64,
    /// Largest export message in octets, IP and UDP headers not counted:
    /// 220 (`StreamOptions::MIN_MESSAGE_BYTES`) to 65507 over UDP, 65535 over
    /// TCP; default 1452 (a 1500-octet MTU over IPv6 or IPv4).
    pub max_message_bytes: usize,
    /// A lost TCP connection is retried at most once per this many milliseconds; default 5000.
    pub tcp_reconnect_interval_ms: u64,
    /// Bytes a TCP collector may fall behind before further messages to it are
    /// dropped (and counted); default 4 MiB.
    pub tcp_max_pending_bytes: usize,
    /// Groups of flows (2.5 ms worth each when paced) queued per collector
    /// before a collector that cannot keep up loses flows; default 256.
    pub queue_chunks: usize,
    /// Kernel send buffer per socket in bytes (`SO_SNDBUF`); 0 keeps the
    /// system default; default 4 MiB.
    pub socket_send_buffer_bytes: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            template_refresh_s: 10,
            template_refresh_messages: 100,
            max_message_bytes: 1452,
            tcp_reconnect_interval_ms: 5000,
            tcp_max_pending_bytes: 4 << 20,
            queue_chunks: 256,
            socket_send_buffer_bytes: 4 << 20,
        }
    }
}

impl ExportConfig {
    /// Checks the values; errors name the key under `[export]`. The first
    /// problem only; [`ExportConfig::problems`] lists them all.
    pub fn validate(&self) -> Result<(), NetError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Every problem with the values, each naming its key under `[export]`.
    pub fn problems(&self) -> Vec<NetError> {
        let bad = |key: &str, message: &str| NetError::Config {
            key: format!("export.{key}"),
            message: message.into(),
        };
        let mut problems = Vec::new();
        if self.stream_options(1).validate().is_err() {
            problems.push(bad(
                "max_message_bytes",
                &format!(
                    "{} is outside {}..={}: a message must hold both templates and a record",
                    self.max_message_bytes,
                    StreamOptions::MIN_MESSAGE_BYTES,
                    StreamOptions::MAX_MESSAGE_BYTES
                ),
            ));
        }
        if self.queue_chunks == 0 {
            problems.push(bad("queue_chunks", "must be at least 1"));
        }
        if self.template_refresh_s == 0 && self.template_refresh_messages == 0 {
            problems.push(bad(
                "template_refresh_s",
                "templates must be refreshed by time or by messages",
            ));
        }
        problems
    }

    /// The encoder settings for one collector stream.
    pub fn stream_options(&self, observation_domain: u32) -> StreamOptions {
        StreamOptions {
            observation_domain,
            max_message_bytes: self.max_message_bytes,
            template_refresh_s: self.template_refresh_s,
            template_refresh_messages: self.template_refresh_messages,
        }
    }
}

fn default_protocol() -> ExportProtocol {
    ExportProtocol::Ipfix
}

fn default_observation_domain() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_needs_ipfix() {
        let mut collector = CollectorConfig::udp("127.0.0.1:9995", ExportProtocol::Netflow9);
        collector.transport = Transport::Tcp;
        let err = collector.resolve("collector[2]").unwrap_err().to_string();
        assert!(err.contains("collector[2].transport"), "{err}");
    }

    #[test]
    fn port_zero_and_bad_hosts_are_refused() {
        let zero = CollectorConfig::udp("127.0.0.1:0", ExportProtocol::Ipfix);
        assert!(zero
            .resolve("collector[0]")
            .unwrap_err()
            .to_string()
            .contains("port 0"));
        let no_port = CollectorConfig::udp("127.0.0.1", ExportProtocol::Ipfix);
        assert!(no_port
            .resolve("c")
            .unwrap_err()
            .to_string()
            .contains("127.0.0.1"));
    }

    #[test]
    fn defaults_validate_and_nonsense_does_not() {
        assert!(ExportConfig::default().validate().is_ok());
        let tiny = ExportConfig {
            max_message_bytes: 100,
            ..ExportConfig::default()
        };
        let err = tiny.validate().unwrap_err().to_string();
        assert!(err.contains("export.max_message_bytes"), "{err}");
    }
}
