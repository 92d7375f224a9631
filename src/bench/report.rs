//! The benchmark's results and their table.

use std::fmt;

use serde::Serialize;

use super::end_to_end::EndToEndResult;
use super::memory::{RssSample, RssSummary};
use super::stages::StageResult;

/// The machine the numbers come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Machine {
    /// Cores the process may use.
    pub cores: usize,
    /// CPU model, where `/proc/cpuinfo` names it.
    pub cpu: Option<String>,
    /// One-minute load average when the run started (other work on the machine).
    pub load_average: Option<f64>,
}

/// Resident memory over the whole benchmark.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryReport {
    /// Peak resident set at the end (`VmHWM`), KiB.
    pub peak_resident_kib: Option<u64>,
    /// How the resident set moved across the samples.
    pub rss: Option<RssSummary>,
    /// Every sample, for plotting.
    pub samples: Vec<RssSample>,
}

/// Everything one `flowgen bench` run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// The machine.
    pub machine: Machine,
    /// What was measured (bundle or stand-ins).
    pub model: String,
    /// Where inference ran (`cpu` or `cuda`), when the inference stage ran.
    pub device: Option<String>,
    /// What was left out or replaced, and why.
    pub notes: Vec<String>,
    /// Per-stage results.
    pub stages: Vec<StageResult>,
    /// End-to-end results.
    pub end_to_end: Vec<EndToEndResult>,
    /// Memory.
    pub memory: MemoryReport,
}

/// Flows per second with a unit prefix: `1.23 M`, `456 k`.
pub fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.0} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let machine = &self.machine;
        write!(f, "machine: {} cores", machine.cores)?;
        if let Some(cpu) = &machine.cpu {
            write!(f, ", {cpu}")?;
        }
        if let Some(load) = machine.load_average {
            write!(f, ", load average {load:.2} at start")?;
        }
        writeln!(f)?;
        writeln!(f, "model: {}", self.model)?;
        if let Some(device) = &self.device {
            writeln!(f, "inference device: {device}")?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        if !self.stages.is_empty() {
            writeln!(f)?;
            self.stage_table(f)?;
        }
        if !self.end_to_end.is_empty() {
            writeln!(f)?;
            self.end_to_end_table(f)?;
        }
        writeln!(f)?;
        self.memory_lines(f)
    }
}

impl BenchReport {
    fn stage_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18} {:>7} {:>7} {:>12} {:>14}",
            "stage", "batch", "threads", "flows/s", "flows/cpu-s"
        )?;
        for r in &self.stages {
            writeln!(
                f,
                "{:<18} {:>7} {:>7} {:>12} {:>14}",
                r.stage.name(),
                r.batch,
                r.threads,
                rate(r.flows_per_s),
                rate(r.flows_per_cpu_s)
            )?;
        }
        Ok(())
    }

    fn end_to_end_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18} {:>7} {:>7} {:>12} {:>12} {:>6} {:>9} {:>8} {:>8} {:>17}",
            "end to end",
            "batch",
            "threads",
            "received/s",
            "generated/s",
            "cores",
            "malformed",
            "seq-lost",
            "dropped",
            "rss start->end"
        )?;
        for r in &self.end_to_end {
            let protocol = match r.case.protocol {
                crate::export::ExportProtocol::Ipfix => "ipfix -> sink",
                crate::export::ExportProtocol::Netflow9 => "netflow9 -> sink",
            };
            writeln!(
                f,
                "{:<18} {:>7} {:>7} {:>12} {:>12} {:>6.2} {:>9} {:>8} {:>8} {:>17}",
                protocol,
                r.case.batch,
                r.case.threads,
                rate(r.received_per_s),
                rate(r.generated_per_s),
                r.cpu_cores_used,
                r.sink.malformed + r.sink.truncated,
                r.sink.sequence_gap,
                r.sender.records_dropped,
                format!(
                    "{:.0}->{:.0} MiB",
                    r.resident_kib.0 as f64 / 1024.0,
                    r.resident_kib.1 as f64 / 1024.0
                )
            )?;
        }
        Ok(())
    }

    fn memory_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let memory = &self.memory;
        match memory.peak_resident_kib {
            Some(peak) => writeln!(f, "peak resident memory (VmHWM): {}", mib(peak))?,
            None => writeln!(
                f,
                "peak resident memory: not available (no /proc/self/status)"
            )?,
        }
        if let Some(rss) = &memory.rss {
            writeln!(
                f,
                "resident memory over the run ({} samples): min {}, max {}; \
                 largest in the first quarter {}, in the last quarter {}",
                rss.samples,
                mib(rss.min_kib),
                mib(rss.max_kib),
                mib(rss.first_quarter_max_kib),
                mib(rss.last_quarter_max_kib)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_a_prefix() {
        assert_eq!(rate(1_234_567.0), "1.23 M");
        assert_eq!(rate(456_400.0), "456 k");
        assert_eq!(rate(12.0), "12");
    }
}
