//! The work of each stage, one worker per thread, on the model under test.
//!
//! Inputs are made once before timing (rows for the decoder, flows for the
//! encoder) so that each stage is timed on its own.

use std::net::UdpSocket;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::setup::{fill_normal, normal_noise, ModelUnderTest};
use super::stages::{measure, Stage, StageResult};
use super::BenchError;
use crate::export::{ExportProtocol, ExportStream, StreamOptions};
use crate::flow::Flow;
use crate::model::decode::FlowDecoder;
use crate::net::{unix_now_ms, CollectorConfig, CollectorSender, ExportConfig};

/// Receive buffer of the socket the send stage writes to: small, and nobody
/// reads it, so the kernel drops what does not fit after delivering it.
const DISCARD_RECEIVE_BUFFER_BYTES: usize = 64 << 10;

/// The inputs shared by every worker of one batch size.
pub struct StageInputs<'a> {
    /// The model under test.
    pub model: &'a ModelUnderTest,
    /// Flows per step.
    pub batch: usize,
    /// Generator rows (`batch` of them) for the decoder.
    pub rows: Vec<f32>,
    /// Decoded, address-mapped flows (`batch` of them) for the encoder.
    pub flows: Vec<Flow>,
    /// Decoded flows before the address plan.
    pub unmapped: Vec<Flow>,
}

impl<'a> StageInputs<'a> {
    /// Prepares the inputs for `batch`.
    pub fn new(model: &'a ModelUnderTest, batch: usize) -> Result<StageInputs<'a>, BenchError> {
        let rows = model.generator_rows(batch)?;
        let mut unmapped = Vec::with_capacity(batch);
        FlowDecoder::new(&model.codebook)?.decode(
            &rows,
            batch,
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut unmapped,
        )?;
        let mut flows = unmapped.clone();
        for flow in &mut flows {
            model.addresses.apply(flow);
        }
        Ok(StageInputs {
            model,
            batch,
            rows,
            flows,
            unmapped,
        })
    }
}

/// Drawing the noise of one batch.
pub fn noise(inputs: &StageInputs, threads: usize, d: Duration) -> Result<StageResult, BenchError> {
    let values = inputs.batch * inputs.model.shape.noise_dim;
    measure(Stage::Noise, inputs.batch, threads, d, |index| {
        let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
        let mut noise = vec![0.0f32; values];
        let batch = inputs.batch;
        Ok(move || {
            fill_normal(&mut rng, &mut noise);
            Ok(batch)
        })
    })
}

/// Running the generator network on one batch of noise in ONNX Runtime.
pub fn inference(
    inputs: &StageInputs,
    threads: usize,
    d: Duration,
) -> Result<StageResult, BenchError> {
    let model = inputs.model;
    let noise = normal_noise(
        &mut ChaCha8Rng::seed_from_u64(2),
        inputs.batch * model.shape.noise_dim,
    );
    measure(Stage::Inference, inputs.batch, threads, d, |_| {
        let mut session = model.session()?;
        let (noise, batch) = (&noise, inputs.batch);
        Ok(move || {
            let rows = session.run(noise, batch)?;
            std::hint::black_box(rows);
            Ok(batch)
        })
    })
}

/// The model's whole `generate` call (noise, inference, decoding), as a
/// daemon generator thread makes it, into a reused vector.
pub fn generate(
    inputs: &StageInputs,
    threads: usize,
    d: Duration,
) -> Result<StageResult, BenchError> {
    measure(Stage::Generate, inputs.batch, threads, d, |index| {
        let mut generator = inputs
            .model
            .flow_generator(inputs.batch, index as u64 + 1)?;
        let mut out = Vec::with_capacity(inputs.batch);
        let batch = inputs.batch;
        Ok(move || {
            out.clear();
            generator.generate(batch, &mut out)?;
            Ok(out.len())
        })
    })
}

/// Decoding one batch of rows into flows (reused output vector).
pub fn decode(
    inputs: &StageInputs,
    threads: usize,
    d: Duration,
) -> Result<StageResult, BenchError> {
    measure(Stage::Decode, inputs.batch, threads, d, |index| {
        let mut decoder = FlowDecoder::new(&inputs.model.codebook)?;
        let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
        let mut out = Vec::with_capacity(inputs.batch);
        let (rows, batch) = (&inputs.rows, inputs.batch);
        Ok(move || {
            out.clear();
            decoder.decode(rows, batch, &mut rng, &mut out)?;
            Ok(out.len())
        })
    })
}

/// Mapping the addresses of one batch (after copying it back from the decoder's output).
pub fn address_plan(
    inputs: &StageInputs,
    threads: usize,
    d: Duration,
) -> Result<StageResult, BenchError> {
    measure(Stage::AddressPlan, inputs.batch, threads, d, |_| {
        let mut work: Vec<Flow> = Vec::with_capacity(inputs.batch);
        let plan = &inputs.model.addresses;
        Ok(move || {
            work.clone_from(&inputs.unmapped);
            for flow in &mut work {
                plan.apply(flow);
            }
            Ok(work.len())
        })
    })
}

/// Encoding one batch into IPFIX messages in a reused buffer.
pub fn encode(
    inputs: &StageInputs,
    threads: usize,
    d: Duration,
) -> Result<StageResult, BenchError> {
    measure(Stage::Encode, inputs.batch, threads, d, |_| {
        let now_ms = unix_now_ms();
        let mut stream = ExportStream::new(ExportProtocol::Ipfix, StreamOptions::default(), now_ms);
        let mut out = Vec::with_capacity(StreamOptions::default().max_message_bytes);
        let flows = &inputs.flows;
        Ok(move || {
            let (mut rest, mut records) = (&flows[..], 0);
            while !rest.is_empty() {
                let summary = stream.encode(rest, now_ms, &mut out);
                std::hint::black_box(&out);
                if summary.flows_consumed == 0 {
                    break;
                }
                records += summary.data_records;
                rest = &rest[summary.flows_consumed..];
            }
            // Records, not flows taken: a flow the encoder skipped was not encoded.
            Ok(records)
        })
    })
}

/// Encoding and sending one batch with a collector sender (UDP, `sendmmsg`).
pub fn encode_send(
    inputs: &StageInputs,
    threads: usize,
    d: Duration,
) -> Result<StageResult, BenchError> {
    measure(Stage::EncodeSend, inputs.batch, threads, d, |_| {
        let discard = discard_socket()?;
        let address = discard
            .local_addr()
            .map_err(|source| BenchError::Sink { source })?;
        let config = CollectorConfig::udp(address.to_string(), ExportProtocol::Ipfix);
        let now_ms = unix_now_ms();
        let mut sender =
            CollectorSender::open(&config, "collector[0]", &ExportConfig::default(), now_ms)?;
        let flows = &inputs.flows;
        Ok(move || {
            // Kept open while the worker sends, so the kernel delivers rather than refuses.
            let _ = &discard;
            sender.send(flows, now_ms);
            Ok(flows.len())
        })
    })
}

fn discard_socket() -> Result<UdpSocket, BenchError> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|source| BenchError::Sink { source })?;
    let _ = socket.set_recv_buffer_size(DISCARD_RECEIVE_BUFFER_BYTES);
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket
        .bind(&local.into())
        .map_err(|source| BenchError::Sink { source })?;
    Ok(socket.into())
}
