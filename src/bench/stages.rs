//! Measuring one stage: `threads` workers, each with its own state, repeat one
//! step (a batch through the stage) for a set time; flows per second of wall
//! time across them all, and flows per second of the process's CPU time.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clock::process_cpu;
use super::BenchError;

/// The pipeline stages the benchmark times on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Drawing the generator's Gaussian noise.
    Noise,
    /// The generator network in ONNX Runtime: noise in, flow vectors out.
    Inference,
    /// The model's whole `generate` call: noise, inference and decoding.
    Generate,
    /// Nearest-neighbour decoding of flow vectors into flows.
    Decode,
    /// The address plan: anonymised tokens to addresses.
    AddressPlan,
    /// IPFIX encoding into reused message buffers.
    Encode,
    /// Encoding and sending over UDP with `sendmmsg` to a socket nobody reads.
    EncodeSend,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 7] = [
        Stage::Noise,
        Stage::Inference,
        Stage::Decode,
        Stage::Generate,
        Stage::AddressPlan,
        Stage::Encode,
        Stage::EncodeSend,
    ];

    /// The name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Noise => "noise",
            Stage::Inference => "inference",
            Stage::Decode => "decode",
            Stage::Generate => "generate",
            Stage::AddressPlan => "address-plan",
            Stage::Encode => "encode",
            Stage::EncodeSend => "encode-send",
        }
    }

    /// The stage a command-line name stands for.
    pub fn from_key(key: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Noise => "noise",
            Stage::Inference => "inference",
            Stage::Generate => "generate (model)",
            Stage::Decode => "decode",
            Stage::AddressPlan => "address plan",
            Stage::Encode => "encode (ipfix)",
            Stage::EncodeSend => "encode+send (udp)",
        }
    }
}

/// One stage's measurement at one batch size and thread count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageResult {
    /// The stage.
    pub stage: Stage,
    /// Flows per step.
    pub batch: usize,
    /// Workers running at once.
    pub threads: usize,
    /// Flows through the stage while measuring.
    pub flows: u64,
    /// Measured wall time, seconds.
    pub wall_s: f64,
    /// CPU time of the process while the workers ran, seconds.
    pub cpu_s: f64,
    /// Flows per wall-clock second, all workers together.
    pub flows_per_s: f64,
    /// Flows per CPU second of the process: the stage's cost, whatever else
    /// runs on the machine.
    pub flows_per_cpu_s: f64,
}

/// One worker's state: a step pushes one batch through the stage.
pub trait StageWorker {
    /// Runs one batch; returns the flows it handled.
    fn step(&mut self) -> Result<usize, BenchError>;
}

impl<F: FnMut() -> Result<usize, BenchError>> StageWorker for F {
    fn step(&mut self) -> Result<usize, BenchError> {
        self()
    }
}

/// What one worker thread measured.
struct WorkerTally {
    flows: u64,
    wall: Duration,
}

/// Runs `threads` workers made by `make` (called on each worker's own thread
/// with its index) for `duration` after one unmeasured warm-up step each.
///
/// CPU time is the whole process's over the measured span, so that threads a
/// stage starts itself (ONNX Runtime's intra-op pool) are counted too; nothing
/// else in the process works meanwhile.
pub fn measure<W, M>(
    stage: Stage,
    batch: usize,
    threads: usize,
    duration: Duration,
    make: M,
) -> Result<StageResult, BenchError>
where
    W: StageWorker,
    M: Fn(usize) -> Result<W, BenchError> + Sync,
{
    let threads = threads.max(1);
    // The workers and this thread: the CPU clock starts when all are ready.
    let barrier = Barrier::new(threads + 1);
    let (tallies, cpu) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let (make, barrier) = (&make, &barrier);
                scope.spawn(move || run_worker(index, duration, make, barrier))
            })
            .collect();
        barrier.wait();
        let cpu_started = process_cpu();
        let tallies = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(BenchError::WorkerPanicked)))
            .collect::<Vec<_>>();
        (tallies, process_cpu().saturating_sub(cpu_started))
    });
    let tallies = tallies.into_iter().collect::<Result<Vec<_>, _>>()?;

    let flows = tallies.iter().map(|t| t.flows).sum::<u64>();
    let wall_s = tallies
        .iter()
        .map(|t| t.wall.as_secs_f64())
        .fold(0.0, f64::max);
    let cpu_s = cpu.as_secs_f64();
    Ok(StageResult {
        stage,
        batch,
        threads,
        flows,
        wall_s,
        cpu_s,
        flows_per_s: per_second(flows, wall_s),
        flows_per_cpu_s: per_second(flows, cpu_s),
    })
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn run_worker<W, M>(
    index: usize,
    duration: Duration,
    make: &M,
    barrier: &Barrier,
) -> Result<WorkerTally, BenchError>
where
    W: StageWorker,
    M: Fn(usize) -> Result<W, BenchError>,
{
    // Every worker reaches the barrier, even one that failed, so none waits forever.
    let made = make(index).and_then(|mut worker| worker.step().map(|_| worker));
    barrier.wait();
    let mut worker = made?;
    let started = Instant::now();
    let mut flows = 0u64;
    while started.elapsed() < duration {
        flows += worker.step()? as u64;
    }
    Ok(WorkerTally {
        flows,
        wall: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_counted_and_timed() {
        let result = measure(Stage::Encode, 10, 2, Duration::from_millis(30), |_| {
            Ok(|| {
                std::hint::black_box((0..10_000u64).sum::<u64>());
                Ok(10)
            })
        })
        .unwrap();
        assert_eq!((result.batch, result.threads), (10, 2));
        assert!(result.flows > 0 && result.flows % 10 == 0, "{result:?}");
        assert!(result.wall_s >= 0.03, "{result:?}");
        assert!(result.flows_per_s > 0.0 && result.flows_per_cpu_s > 0.0);
    }

    #[test]
    fn a_failing_worker_fails_the_stage_without_hanging() {
        let err = measure(Stage::Decode, 1, 2, Duration::from_millis(10), |i| {
            Ok(move || {
                if i == 1 {
                    Err(BenchError::WorkerPanicked)
                } else {
                    Ok(1)
                }
            })
        })
        .unwrap_err();
        assert!(matches!(err, BenchError::WorkerPanicked));
    }
}
