//! Whether a collector is currently failing, so that an outage logs one warning
//! when it starts and one line when it ends instead of a line per message.

use std::time::{Duration, Instant};

use crate::net::stats::CollectorStats;

/// Errors must stop for this long before a collector counts as recovered: a
/// refusing UDP collector alternates failed and "successful" sends (the kernel
/// reports each ICMP error once), which must not read as recovery.
const QUIET_BEFORE_RECOVERY: Duration = Duration::from_secs(5);

/// The send health of one collector.
#[derive(Debug, Default)]
pub(crate) struct Health {
    last_error: Option<Instant>,
    errors_in_outage: u64,
}

impl Health {
    /// Notes a failed send or connection attempt.
    pub(crate) fn failure(&mut self, stats: &CollectorStats, error: &dyn std::fmt::Display) {
        if self.last_error.is_none() {
            tracing::warn!(
                collector = %stats.name,
                %error,
                "collector unreachable; counting send errors until it recovers"
            );
        }
        self.last_error = Some(Instant::now());
        self.errors_in_outage += 1;
    }

    /// Notes a successful send or connection.
    pub(crate) fn success(&mut self, stats: &CollectorStats) {
        let Some(last_error) = self.last_error else {
            return;
        };
        if last_error.elapsed() >= QUIET_BEFORE_RECOVERY {
            tracing::info!(
                collector = %stats.name,
                send_errors_messages = self.errors_in_outage,
                "collector reachable again"
            );
            self.last_error = None;
            self.errors_in_outage = 0;
        }
    }

    /// Notes a connection that was re-established (TCP): recovery is certain.
    pub(crate) fn reconnected(&mut self, stats: &CollectorStats) {
        if self.last_error.take().is_some() {
            tracing::info!(
                collector = %stats.name,
                send_errors_messages = self.errors_in_outage,
                "collector reconnected"
            );
        }
        self.errors_in_outage = 0;
    }
}
