//! Generator threads: run the model (blocking work, so plain threads), apply the
//! address plan, and hand full batches to the exporter through a bounded queue.
//!
//! When the queue is full the threads block: backpressure instead of an
//! unbounded backlog. A consumer that hands emptied `Vec`s back through the
//! optional return channel saves their allocation; batches are allocated anew
//! otherwise.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::flow::Flow;
use crate::model::bundle::BundleError;
use crate::model::FlowGenerator;

use super::metrics::Metrics;
use crate::address_plan::AddressPlan;

/// A batch of generated flows, in the order they are to be sent.
pub type Batch = Vec<Flow>;

/// A generator thread that stopped because the model failed.
#[derive(Debug, thiserror::Error)]
#[error("generator thread {thread}: {error}")]
pub struct GeneratorFailed {
    /// Index of the thread in its pool.
    pub thread: usize,
    /// What the model reported (boxed: runtime errors are large).
    pub error: Box<BundleError>,
}

/// What every thread of a pool shares.
#[derive(Clone)]
pub struct PoolSettings {
    /// Flows per `generate` call.
    pub batch: usize,
    /// The address plan applied to every flow before export.
    pub addresses: Arc<AddressPlan>,
    /// Where generated counts go.
    pub metrics: Arc<Metrics>,
    /// Where a failing thread reports before it stops.
    pub failures: tokio::sync::mpsc::Sender<GeneratorFailed>,
}

/// Running generator threads; dropped or [`GeneratorPool::stop`]ped, they end.
pub struct GeneratorPool {
    stop_tx: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl GeneratorPool {
    /// Starts one thread per generator, sending batches to `output` and taking
    /// emptied ones from `recycled` when there are any.
    pub fn start(
        generators: Vec<Box<dyn FlowGenerator>>,
        settings: PoolSettings,
        output: Sender<Batch>,
        recycled: Option<Receiver<Batch>>,
    ) -> std::io::Result<GeneratorPool> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let mut pool = GeneratorPool {
            stop_tx: Some(stop_tx),
            threads: Vec::with_capacity(generators.len()),
        };
        for (index, generator) in generators.into_iter().enumerate() {
            let worker = Worker {
                index,
                generator,
                settings: settings.clone(),
                full_tx: output.clone(),
                empty_rx: recycled.clone(),
                stop_rx: stop_rx.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("flowgen-gen-{index}"))
                .spawn(move || worker.run())?;
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Tells every thread to stop and waits for them (at most one `generate`
    /// call each); the pool is empty afterwards.
    pub fn stop(&mut self) {
        // Dropping the only sender wakes every `select!` waiting on `stop_rx`.
        self.stop_tx.take();
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!("a generator thread panicked");
            }
        }
    }
}

impl Drop for GeneratorPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One generator thread's state.
struct Worker {
    index: usize,
    generator: Box<dyn FlowGenerator>,
    settings: PoolSettings,
    full_tx: Sender<Batch>,
    empty_rx: Option<Receiver<Batch>>,
    stop_rx: Receiver<()>,
}

impl Worker {
    fn run(mut self) {
        while !self.stopped() {
            let mut batch = self
                .empty_rx
                .as_ref()
                .and_then(|rx| rx.try_recv().ok())
                .unwrap_or_else(|| Vec::with_capacity(self.settings.batch));
            batch.clear();
            if let Err(error) = self.generator.generate(self.settings.batch, &mut batch) {
                self.fail(error);
                return;
            }
            for flow in &mut batch {
                self.settings.addresses.apply(flow);
            }
            self.settings
                .metrics
                .flows_generated
                .inc_by(batch.len() as u64);

            crossbeam_channel::select! {
                send(self.full_tx, batch) -> sent => if sent.is_err() { return },
                recv(self.stop_rx) -> _ => return,
            }
        }
    }

    fn stopped(&self) -> bool {
        matches!(
            self.stop_rx.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    fn fail(&self, error: BundleError) {
        self.settings.metrics.generator_errors.inc();
        tracing::error!(
            thread = self.index,
            "generator failed, no more flows from this thread: {error}"
        );
        let failure = GeneratorFailed {
            thread: self.index,
            error: Box::new(error),
        };
        // A full channel means a failure is already being handled.
        let _ = self.settings.failures.try_send(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Address, Protocol, TcpFlags};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// Counts its calls; fails on call `fail_at` when set.
    struct Counting {
        calls: usize,
        fail_at: Option<usize>,
    }

    fn flow(n: u64) -> Flow {
        Flow {
            start_ms: 0,
            duration_ms: n,
            protocol: Protocol::UDP,
            src: Address::V4(Ipv4Addr::new(192, 168, 0, 1)),
            dst: Address::V4(Ipv4Addr::new(192, 168, 0, 2)),
            src_port: 1,
            dst_port: 53,
            packets: 1,
            bytes: 60,
            tcp_flags: TcpFlags(0),
            tos: 0,
            label: None,
        }
    }

    impl FlowGenerator for Counting {
        fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), BundleError> {
            self.calls += 1;
            if self.fail_at == Some(self.calls) {
                return Err(BundleError::Io {
                    path: "model.onnx".into(),
                    source: std::io::Error::other("inference failed"),
                });
            }
            out.extend((0..count as u64).map(flow));
            Ok(())
        }
    }

    fn settings(
        metrics: Arc<Metrics>,
    ) -> (PoolSettings, tokio::sync::mpsc::Receiver<GeneratorFailed>) {
        let (failures, failed_rx) = tokio::sync::mpsc::channel(4);
        let settings = PoolSettings {
            batch: 16,
            addresses: Arc::new(AddressPlan::new(&Default::default()).unwrap()),
            metrics,
            failures,
        };
        (settings, failed_rx)
    }

    #[test]
    fn threads_fill_the_bounded_queue_and_then_wait() {
        let metrics = Arc::new(Metrics::new());
        let (settings, _failed) = settings(metrics.clone());
        let (full_tx, full_rx) = crossbeam_channel::bounded(3);
        let generators: Vec<Box<dyn FlowGenerator>> = vec![
            Box::new(Counting {
                calls: 0,
                fail_at: None,
            }),
            Box::new(Counting {
                calls: 0,
                fail_at: None,
            }),
        ];
        let mut pool = GeneratorPool::start(generators, settings, full_tx, None).unwrap();
        std::thread::sleep(Duration::from_millis(200));

        // Three queued, and each thread holds one it cannot hand over.
        assert_eq!(full_rx.len(), 3);
        assert_eq!(metrics.flows_generated.get(), 5 * 16);
        let batch = full_rx.recv().unwrap();
        assert_eq!(batch.len(), 16);
        pool.stop();
    }

    #[test]
    fn stop_returns_while_threads_are_blocked_on_a_full_queue() {
        let metrics = Arc::new(Metrics::new());
        let (settings, _failed) = settings(metrics);
        let (full_tx, _full_rx) = crossbeam_channel::bounded(1);
        let generators: Vec<Box<dyn FlowGenerator>> = vec![Box::new(Counting {
            calls: 0,
            fail_at: None,
        })];
        let mut pool = GeneratorPool::start(generators, settings, full_tx, None).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let started = std::time::Instant::now();
        pool.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn returned_batches_are_reused() {
        let metrics = Arc::new(Metrics::new());
        let (settings, _failed) = settings(metrics);
        let (full_tx, full_rx) = crossbeam_channel::bounded(1);
        let (empty_tx, empty_rx) = crossbeam_channel::bounded(4);
        let generators: Vec<Box<dyn FlowGenerator>> = vec![Box::new(Counting {
            calls: 0,
            fail_at: None,
        })];
        let mut pool = GeneratorPool::start(generators, settings, full_tx, Some(empty_rx)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut batch = full_rx.recv().unwrap();
            seen.insert(batch.as_ptr() as usize);
            batch.clear();
            empty_tx.send(batch).unwrap();
        }
        pool.stop();
        // Queue slot, the thread's batch in hand and the one being returned.
        assert!(seen.len() <= 4, "{} distinct buffers", seen.len());
    }

    #[test]
    fn a_failing_model_is_reported_and_counted() {
        let metrics = Arc::new(Metrics::new());
        let (settings, mut failed) = settings(metrics.clone());
        let (full_tx, full_rx) = crossbeam_channel::bounded(8);
        let generators: Vec<Box<dyn FlowGenerator>> = vec![Box::new(Counting {
            calls: 0,
            fail_at: Some(3),
        })];
        let mut pool = GeneratorPool::start(generators, settings, full_tx, None).unwrap();
        let failure = failed.blocking_recv().expect("a failure report");
        assert_eq!(failure.thread, 0);
        assert!(
            failure.to_string().contains("inference failed"),
            "{failure}"
        );
        assert_eq!(metrics.generator_errors.get(), 1);
        assert_eq!(full_rx.len(), 2);
        pool.stop();
    }
}
