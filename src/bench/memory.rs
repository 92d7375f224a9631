//! The process's resident memory, read from `/proc/self/status` (Linux): the peak
//! (`VmHWM`) and the current size (`VmRSS`), and a thread that samples the
//! current size over a run so that growth shows.
//!
//! Elsewhere than Linux there is no `/proc`: every reading is `None` and the
//! report says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

const STATUS_FILE: &str = "/proc/self/status";

/// One reading of the process's resident memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStatus {
    /// Peak resident set since the process started (`VmHWM`), KiB.
    pub peak_resident_kib: u64,
    /// Resident set now (`VmRSS`), KiB.
    pub resident_kib: u64,
}

/// Reads `/proc/self/status`; `None` where it does not exist or lacks the fields.
pub fn read_status() -> Option<MemoryStatus> {
    let text = std::fs::read_to_string(STATUS_FILE).ok()?;
    parse_status(&text)
}

/// The `VmHWM` and `VmRSS` lines of a `/proc/PID/status` text.
pub fn parse_status(text: &str) -> Option<MemoryStatus> {
    let kib = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|number| number.trim().parse::<u64>().ok())
    };
    Some(MemoryStatus {
        peak_resident_kib: kib("VmHWM:")?,
        resident_kib: kib("VmRSS:")?,
    })
}

/// One sample: seconds since sampling began, and the resident set then.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RssSample {
    /// Seconds since the sampler started.
    pub elapsed_s: f64,
    /// Resident set, KiB.
    pub resident_kib: u64,
}

/// Samples the resident set on its own thread until stopped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<RssSample>>>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling every `interval`; `None` when the thread cannot start.
    pub fn start(interval: Duration) -> Option<RssSampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (thread_stop, thread_samples) = (Arc::clone(&stop), Arc::clone(&samples));
        let thread = std::thread::Builder::new()
            .name("flowgen-bench-rss".into())
            .spawn(move || sample_until(&thread_stop, &thread_samples, interval))
            .ok()?;
        Some(RssSampler {
            stop,
            samples,
            thread: Some(thread),
        })
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<RssSample> {
        lock(&self.samples).clone()
    }

    /// Stops the thread (after one last sample) and returns every sample.
    pub fn finish(mut self) -> Vec<RssSample> {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.samples()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn lock(samples: &Mutex<Vec<RssSample>>) -> std::sync::MutexGuard<'_, Vec<RssSample>> {
    samples
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sample_until(stop: &AtomicBool, samples: &Mutex<Vec<RssSample>>, interval: Duration) {
    let started = Instant::now();
    let tick = interval.min(Duration::from_millis(50));
    let mut next = started;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if stopping || Instant::now() >= next {
            if let Some(status) = read_status() {
                lock(samples).push(RssSample {
                    elapsed_s: started.elapsed().as_secs_f64(),
                    resident_kib: status.resident_kib,
                });
            }
            next += interval;
        }
        if stopping {
            return;
        }
        std::thread::sleep(tick);
    }
}

/// How the resident set moved over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RssSummary {
    /// Samples taken.
    pub samples: usize,
    /// Smallest resident set, KiB.
    pub min_kib: u64,
    /// Largest resident set, KiB.
    pub max_kib: u64,
    /// Largest resident set in the first quarter of the run, KiB; close to
    /// [`RssSummary::last_quarter_max_kib`] when memory stays flat.
    pub first_quarter_max_kib: u64,
    /// Largest resident set in the last quarter of the run, KiB.
    pub last_quarter_max_kib: u64,
}

impl RssSummary {
    /// Summarises samples in time order; `None` without samples.
    pub fn of(samples: &[RssSample]) -> Option<RssSummary> {
        let quarter = (samples.len() / 4).max(1);
        let max = |s: &[RssSample]| s.iter().map(|s| s.resident_kib).max().unwrap_or(0);
        Some(RssSummary {
            samples: samples.len(),
            min_kib: samples.iter().map(|s| s.resident_kib).min()?,
            max_kib: max(samples),
            first_quarter_max_kib: max(&samples[..quarter]),
            last_quarter_max_kib: max(&samples[samples.len() - quarter..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed() {
        let text = "Name:\tflowgen\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(text),
            Some(MemoryStatus {
                peak_resident_kib: 20_480,
                resident_kib: 10_240
            })
        );
        assert_eq!(parse_status("VmRSS:\t 12 kB\n"), None);
        assert_eq!(parse_status("VmHWM: lots\nVmRSS: 1 kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set_and_the_sampler_records_it() {
        let status = read_status().expect("/proc/self/status");
        assert!(status.resident_kib > 0);
        assert!(status.peak_resident_kib >= status.resident_kib);

        let sampler = RssSampler::start(Duration::from_millis(10)).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let samples = sampler.finish();
        assert!(samples.len() >= 2, "{samples:?}");
        assert!(samples.windows(2).all(|w| w[0].elapsed_s <= w[1].elapsed_s));
        let summary = RssSummary::of(&samples).unwrap();
        assert!(summary.min_kib > 0 && summary.min_kib <= summary.max_kib);
    }

    #[test]
    fn summaries_split_the_run_into_quarters() {
        let samples: Vec<RssSample> = [10, 12, 11, 13, 20, 21, 19, 22]
            .iter()
            .enumerate()
            .map(|(i, &kib)| RssSample {
                elapsed_s: i as f64,
                resident_kib: kib,
            })
            .collect();
        let summary = RssSummary::of(&samples).unwrap();
        assert_eq!((summary.min_kib, summary.max_kib), (10, 22), "{summary:?}");
        assert_eq!(summary.first_quarter_max_kib, 12);
        assert_eq!(summary.last_quarter_max_kib, 22);
        assert!(RssSummary::of(&[]).is_none());
    }
}
