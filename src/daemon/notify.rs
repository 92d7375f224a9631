//! systemd notification (`Type=notify`): readiness, reload and stop states, and
//! watchdog pings that stop when the exporter stops making progress.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Tells systemd the service is up.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("streaming flows")]);
}

/// Tells systemd a reload has started (`READY=1` ends it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tells systemd the service is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {err}");
    }
}

/// The watchdog interval systemd asked for, per `sd_watchdog_enabled(3)`:
/// `WATCHDOG_USEC` set, and `WATCHDOG_PID` unset or this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The time of the exporter's latest loop turn, for the watchdog to judge liveness.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat that beat just now.
    pub fn new() -> Heartbeat {
        Heartbeat {
            epoch: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a beat at `now`.
    pub fn beat(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Time since the latest beat.
    pub fn age(&self, now: Instant) -> Duration {
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

/// Pings the watchdog every `interval / 2` while `heartbeat` is younger than
/// `interval`; once the exporter hangs, pings stop and systemd restarts the service.
pub async fn watchdog(interval: Duration, heartbeat: Heartbeat) {
    let mut ticker = tokio::time::interval(interval / 2);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        ticker.tick().await;
        let age = heartbeat.age(Instant::now());
        if age < interval {
            stalled = false;
            send(&[NotifyState::Watchdog]);
        } else if !stalled {
            stalled = true;
            tracing::error!(
                "exporter made no progress for {:.1} s; withholding the watchdog ping",
                age.as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_age_counts_from_the_latest_beat() {
        let heartbeat = Heartbeat::new();
        let start = Instant::now();
        heartbeat.beat(start + Duration::from_secs(5));
        assert!(heartbeat.age(start + Duration::from_secs(6)) <= Duration::from_millis(1001));
        assert!(heartbeat.age(start + Duration::from_secs(6)) >= Duration::from_millis(999));
        // An older beat does not move it back.
        heartbeat.beat(start + Duration::from_secs(1));
        assert!(heartbeat.age(start + Duration::from_secs(6)) <= Duration::from_millis(1001));
    }
}
