//! systemd notification (`Type=notify`): readiness, reload and stop states, and
//! watchdog pings that stop when flows stop going out.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::time::Duration;

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

/// Pings the watchdog every `interval / 2` while `healthy(interval)` says flows
/// are going out; once they stop, pings stop and systemd restarts the service.
pub async fn watchdog(interval: Duration, mut healthy: impl FnMut(Duration) -> bool) {
    let mut ticker = tokio::time::interval(interval / 2);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        ticker.tick().await;
        if healthy(interval) {
            stalled = false;
            send(&[NotifyState::Watchdog]);
        } else if !stalled {
            stalled = true;
            tracing::error!(
                "no flow went out for {:.1} s; withholding the watchdog ping",
                interval.as_secs_f64()
            );
        }
    }
}
