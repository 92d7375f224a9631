//! Writing a generator's flows as CIDDS-001 CSV, the work of `flowgen generate`.

use std::io::Write;

use super::bundle::BundleError;
use super::FlowGenerator;
use crate::data::{CiddsWriter, WriteError};

/// Flows asked of the generator at a time.
const BATCH_FLOWS: usize = 4096;

/// What went wrong generating flows into a file.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The model failed to produce flows.
    #[error(transparent)]
    Model(#[from] BundleError),
    /// The output could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl GenerateError {
    /// Whether the output's reader went away (`flowgen generate | head`).
    pub fn is_broken_pipe(&self) -> bool {
        let broken = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
        matches!(self, GenerateError::Write(WriteError::Io(e)) if broken(e))
    }
}

/// Writes `count` generated flows as CIDDS-001 CSV (header included) to
/// `out`, calling `progress` with the number of flows after each batch.
pub fn write_csv<W: Write>(
    generator: &mut dyn FlowGenerator,
    count: u64,
    out: W,
    mut progress: impl FnMut(u64),
) -> Result<W, GenerateError> {
    let mut writer = CiddsWriter::new(out)?;
    let mut batch = Vec::with_capacity(BATCH_FLOWS);
    let mut left = count;
    while left > 0 {
        let size = usize::try_from(left).map_or(BATCH_FLOWS, |n| n.min(BATCH_FLOWS));
        batch.clear();
        generator.generate(size, &mut batch)?;
        for flow in &batch {
            writer.write(flow)?;
        }
        left -= size as u64;
        progress(size as u64);
    }
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Address, Flow, Protocol, TcpFlags};

    /// Yields flows whose source port counts up, so order and count are visible.
    struct Counting(u16);

    impl FlowGenerator for Counting {
        fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), BundleError> {
            for _ in 0..count {
                self.0 = self.0.wrapping_add(1);
                out.push(Flow {
                    start_ms: 0,
                    duration_ms: 0,
                    protocol: Protocol::UDP,
                    src: Address::parse("10.0.0.1").unwrap(),
                    dst: Address::parse("DNS").unwrap(),
                    src_port: self.0,
                    dst_port: 53,
                    packets: 1,
                    bytes: 60,
                    tcp_flags: TcpFlags(0),
                    tos: 0,
                    label: None,
                });
            }
            Ok(())
        }
    }

    #[test]
    fn writes_exactly_count_rows_across_batches() {
        let mut reported = 0;
        let out = write_csv(&mut Counting(0), 5000, Vec::new(), |n| reported += n).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 5001);
        assert_eq!(reported, 5000);
        assert!(text
            .lines()
            .last()
            .unwrap()
            .contains(",10.0.0.1,5000,DNS,53,"));
    }

    #[test]
    fn zero_flows_is_just_the_header() {
        let out = write_csv(&mut Counting(0), 0, Vec::new(), |_| {}).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }
}
