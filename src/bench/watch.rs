//! `flowgen bench sink`: a counting sink on its own, reporting each second what
//! arrived, so that a running `flowgen run --rate 0` can be measured from the
//! outside (optionally with that process's resident memory beside it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::memory::{parse_status, MemoryStatus};
use super::sink::{CountingSink, SinkCounts, DEFAULT_RECEIVE_BUFFER_BYTES};
use super::BenchError;

/// One second of the sink's counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SecondReport {
    /// Seconds since the sink started, at the end of this interval.
    pub elapsed_s: f64,
    /// Data records parsed per second over the interval.
    pub records_per_s: f64,
    /// What arrived in the interval.
    pub counts: SinkCounts,
    /// The watched process's memory at the end of the interval.
    pub watched: Option<MemoryStatus>,
}

/// What the sink counted over its whole run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WatchTotals {
    /// Seconds the sink listened.
    pub elapsed_s: f64,
    /// Everything it counted.
    pub counts: SinkCounts,
    /// Data records per second from the first record to the end.
    pub records_per_s: f64,
}

/// Listens on `listen` for `seconds`, calling `each_second` once a second.
///
/// `watch_pid` names a process (the daemon) whose `VmRSS` and `VmHWM` are read
/// each second. The per-second rate excludes the seconds before anything arrived.
pub fn watch(
    listen: SocketAddr,
    seconds: u64,
    watch_pid: Option<u32>,
    mut each_second: impl FnMut(&SecondReport),
) -> Result<WatchTotals, BenchError> {
    let sink = CountingSink::start(listen, DEFAULT_RECEIVE_BUFFER_BYTES)
        .map_err(|source| BenchError::Sink { source })?;
    let started = Instant::now();
    let mut previous = sink.counts();
    let mut first_record_s: Option<f64> = None;
    for second in 1..=seconds {
        let next = started + Duration::from_secs(second);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let counts = sink.counts();
        let interval = counts.since(&previous);
        let elapsed_s = started.elapsed().as_secs_f64();
        if first_record_s.is_none() && interval.data_records > 0 {
            first_record_s = Some(elapsed_s - 1.0);
        }
        each_second(&SecondReport {
            elapsed_s,
            records_per_s: interval.data_records as f64,
            counts: interval,
            watched: watch_pid.and_then(process_status),
        });
        previous = counts;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let counts = sink.stop();
    let active_s = elapsed_s - first_record_s.unwrap_or(elapsed_s);
    Ok(WatchTotals {
        elapsed_s,
        counts,
        records_per_s: if active_s > 0.0 {
            counts.data_records as f64 / active_s
        } else {
            0.0
        },
    })
}

fn process_status(pid: u32) -> Option<MemoryStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_second_is_reported_with_the_watched_process() {
        let mut reports = Vec::new();
        let totals = watch(
            ([127, 0, 0, 1], 0).into(),
            1,
            Some(std::process::id()),
            |r| reports.push(*r),
        )
        .unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].counts.data_records, 0);
        assert!(reports[0].watched.is_some_and(|m| m.resident_kib > 0));
        assert_eq!(totals.records_per_s, 0.0);
        assert!(totals.elapsed_s >= 1.0);
    }
}
