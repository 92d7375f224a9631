//! Fan-out to collectors: one thread per collector, each fed shared chunks of
//! flows through its own bounded queue.
//!
//! A chunk is an `Arc<[Flow]>`, so every collector gets the same flows without
//! a copy. [`Exporter::dispatch`] either waits for room in every queue (when
//! the caller wants backpressure: unlimited rate, replay at the file's pace)
//! or drops the chunk for a collector whose queue is full (paced sending), so
//! that one collector that cannot keep up never holds back the others.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::flow::Flow;
use crate::net::sender::CollectorSender;
use crate::net::stats::CollectorStats;
use crate::net::{unix_now_ms, CollectorConfig, ExportConfig, NetError};

/// How long an idle sender sleeps between upkeep rounds (TCP flush and reconnect).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long a TCP collector may take to accept what is queued at shutdown.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A chunk of flows shared by every collector's queue.
pub type Chunk = Arc<[Flow]>;

struct Worker {
    queue: Option<Sender<Chunk>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<CollectorStats>,
    overflowing: bool,
}

/// The collectors' sender threads and their queues.
pub struct Exporter {
    workers: Vec<Worker>,
}

impl Exporter {
    /// Opens every collector (all or none) and starts one sender thread each;
    /// errors name the collector as `collector[i]`.
    pub fn start(
        collectors: &[CollectorConfig],
        export: &ExportConfig,
    ) -> Result<Exporter, NetError> {
        let now_ms = unix_now_ms();
        let senders = collectors
            .iter()
            .enumerate()
            .map(|(i, config)| {
                CollectorSender::open(config, &format!("collector[{i}]"), export, now_ms)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut exporter = Exporter {
            workers: Vec::with_capacity(senders.len()),
        };
        for (i, sender) in senders.into_iter().enumerate() {
            let stats = Arc::clone(sender.stats());
            let source = sender
                .local_addr()
                .map_or_else(|| "per connection".to_string(), |a| a.to_string());
            let (queue, input) = crossbeam_channel::bounded(export.queue_chunks);
            let span = tracing::info_span!("collector", address = %stats.name);
            let thread = std::thread::Builder::new()
                .name(format!("flowgen-send-{i}"))
                .spawn(move || span.in_scope(|| run_sender(sender, input)))
                .map_err(|source| NetError::Thread { source })?;
            tracing::info!(
                collector = %stats.name,
                protocol = ?stats.protocol,
                transport = %stats.transport,
                %source,
                "exporting"
            );
            exporter.workers.push(Worker {
                queue: Some(queue),
                thread: Some(thread),
                stats,
                overflowing: false,
            });
        }
        Ok(exporter)
    }

    /// Every collector's counters, in configuration order.
    pub fn collectors(&self) -> Vec<Arc<CollectorStats>> {
        self.workers.iter().map(|w| Arc::clone(&w.stats)).collect()
    }

    /// Hands `chunk` to every collector. With `wait`, blocks until each queue has
    /// room; without, a collector whose queue is full loses the chunk (counted
    /// as dropped records, with one warning per episode).
    pub fn dispatch(&mut self, chunk: &Chunk, wait: bool) {
        for worker in &mut self.workers {
            let Some(queue) = worker.queue.as_ref() else {
                continue;
            };
            let result = if wait {
                queue
                    .send(Arc::clone(chunk))
                    .map_err(|e| TrySendError::Disconnected(e.0))
            } else {
                queue.try_send(Arc::clone(chunk))
            };
            match result {
                Ok(()) => worker.overflowing = false,
                Err(TrySendError::Full(_)) => {
                    worker.stats.add_dropped(chunk.len() as u64);
                    if !worker.overflowing {
                        worker.overflowing = true;
                        tracing::warn!(
                            collector = %worker.stats.name,
                            "collector cannot keep up with the rate; dropping flows for it"
                        );
                    }
                }
                Err(TrySendError::Disconnected(_)) => {
                    // The sender thread has gone (it panicked): count, do not retry.
                    worker.stats.add_dropped(chunk.len() as u64);
                }
            }
        }
    }

    /// Closes the queues, lets each sender send what it holds, and waits for them.
    pub fn finish(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        for worker in &mut self.workers {
            worker.queue = None;
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                if thread.join().is_err() {
                    tracing::error!(collector = %worker.stats.name, "sender thread panicked");
                }
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The body of one collector's thread: send chunks as they come, keep TCP alive
/// while idle, drain and close when the queue closes.
fn run_sender(mut sender: CollectorSender, input: Receiver<Chunk>) {
    loop {
        match input.recv_timeout(IDLE_POLL) {
            Ok(chunk) => sender.send(&chunk, unix_now_ms()),
            Err(RecvTimeoutError::Timeout) => sender.poll(unix_now_ms()),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    sender.finish(FINISH_TIMEOUT);
}
