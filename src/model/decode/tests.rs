//! Decoding whole flows with codebooks fitted to constructed flows.

use super::*;
use crate::model::codebook::{CodebookParams, FlowEncoder, Support};
use crate::model::fixtures::office_flows;
use crate::model::vocab::{port_class, Word};
use crate::model::wgan::Progress;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn encoded_training_flows_decode_to_the_same_words() {
    let flows = office_flows(1500, 5);
    let codebook = Codebook::fit(&flows, &CodebookParams::default(), 3, Progress::Hidden).unwrap();
    let encoder = FlowEncoder::new(codebook.clone());
    let width = codebook.layout.width();
    let mut rows = vec![0.0; flows.len() * width];
    for (flow, row) in flows.iter().zip(rows.chunks_exact_mut(width)) {
        assert!(encoder.encode(flow, row));
    }

    let mut decoder = FlowDecoder::new(&codebook).unwrap();
    let mut decoded = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    decoder
        .decode(&rows, flows.len(), &mut rng, &mut decoded)
        .unwrap();
    assert_eq!(decoded.len(), flows.len());

    let classes = &codebook.address_classes;
    for (real, back) in flows.iter().zip(&decoded) {
        assert_eq!(back.protocol, real.protocol);
        assert_eq!(back.tcp_flags, real.tcp_flags);
        assert!(
            (back.start_ms - real.start_ms).abs() < 10,
            "{} vs {}",
            back.start_ms,
            real.start_ms
        );
        // Same word: the value itself, or a value of the same rare class.
        let address_word = |a: &Address| codebook.addresses.encode(a, |a| classes.class_of(a));
        assert_eq!(address_word(&back.src), address_word(&real.src));
        assert_eq!(address_word(&back.dst), address_word(&real.dst));
        for (b, r) in [
            (back.src_port, real.src_port),
            (back.dst_port, real.dst_port),
        ] {
            let word = codebook.ports.encode(&r, port_class);
            assert_eq!(codebook.ports.encode(&b, port_class), word);
            if matches!(codebook.ports.words()[word as usize], Word::Value { .. }) {
                assert_eq!(b, r);
            }
        }
        assert_eq!(
            codebook
                .volumes
                .bins_of(&crate::model::codebook::volume_of(back)),
            codebook
                .volumes
                .bins_of(&crate::model::codebook::volume_of(real))
        );
        assert!(42 * back.packets <= back.bytes && back.bytes <= 65_535 * back.packets);
    }
}

#[test]
fn arbitrary_outputs_decode_to_consistent_flows() {
    let flows = office_flows(1000, 6);
    let codebook = Codebook::fit(&flows, &CodebookParams::default(), 3, Progress::Hidden).unwrap();
    let width = codebook.layout.width();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let rows = 500;
    let outputs: Vec<f32> = (0..rows * width)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut decoder = FlowDecoder::new(&codebook).unwrap();
    let mut decoded = Vec::new();
    decoder
        .decode(&outputs, rows, &mut rng, &mut decoded)
        .unwrap();
    for flow in &decoded {
        assert!(42 * flow.packets <= flow.bytes && flow.bytes <= 65_535 * flow.packets);
        if flow.protocol != Protocol::TCP {
            assert_eq!(flow.tcp_flags, TcpFlags(0));
        }
        let day = super::super::features::epoch_day(flow.start_ms);
        assert!((codebook.first_day..codebook.first_day + 7).contains(&day));
    }
    let err = decoder
        .decode(&outputs[..width * 2 - 1], 2, &mut rng, &mut decoded)
        .unwrap_err();
    assert!(matches!(err, DecodeError::ShortBatch { .. }));
}

#[test]
fn the_generated_class_restricts_the_decoded_address() {
    let flows = office_flows(1000, 8);
    let codebook = Codebook::fit(&flows, &CodebookParams::default(), 3, Progress::Hidden).unwrap();
    let layout = codebook.layout;
    let encoder = FlowEncoder::new(codebook.clone());
    // A DNS lookup, whose destination embedding is exactly the DNS word's ...
    let dns = flows.iter().find(|f| f.dst_port == 53).unwrap();
    let mut row = vec![0.0; layout.width()];
    assert!(encoder.encode(dns, &mut row));
    // ... but whose destination class says internal broadcast.
    row[layout.dst_class()].fill(0.0);
    row[layout.dst_class().start + 1] = 1.0;

    let mut decoder = FlowDecoder::new(&codebook).unwrap();
    let mut out = Vec::new();
    decoder
        .decode(&row, 1, &mut ChaCha8Rng::seed_from_u64(1), &mut out)
        .unwrap();
    assert_eq!(out[0].dst.to_string(), "192.168.220.255");
    assert_eq!(out[0].src, dns.src);
}

/// A web flow's row with its protocol switched to UDP, and its decoding.
fn web_flow_as_udp(restrict_to_support: bool) -> (Flow, Flow) {
    let flows = office_flows(1000, 9);
    let params = CodebookParams {
        restrict_to_support,
        ..CodebookParams::default()
    };
    let codebook = Codebook::fit(&flows, &params, 3, Progress::Hidden).unwrap();
    let layout = codebook.layout;
    let web = flows.iter().find(|f| f.dst_port == 443).unwrap().clone();
    let mut row = vec![0.0; layout.width()];
    assert!(FlowEncoder::new(codebook.clone()).encode(&web, &mut row));
    row[layout.protocol()].copy_from_slice(&[0.0, 1.0, 0.0]);
    let mut out = Vec::new();
    let mut decoder = FlowDecoder::new(&codebook).unwrap();
    decoder
        .decode(&row, 1, &mut ChaCha8Rng::seed_from_u64(1), &mut out)
        .unwrap();
    (web, out.remove(0))
}

#[test]
fn ports_decode_among_those_seen_with_the_protocol_and_class() {
    // UDP to an anonymised external host only ever went to DNS port 53.
    let (web, udp) = web_flow_as_udp(true);
    assert_eq!(udp.protocol, Protocol::UDP);
    assert!(udp.dst.is_token() && web.dst.is_token());
    assert_eq!(udp.dst_port, 53);
    assert_eq!(Support::port_context(1, 6), 13);

    // Without the restriction the embedding alone decides.
    let (web, udp) = web_flow_as_udp(false);
    assert_eq!(udp.dst_port, web.dst_port);
}

#[test]
fn address_classes_decode_as_a_pair_the_training_data_has() {
    // The office flows have internal -> token and internal -> broadcast pairs only.
    let flows = office_flows(1000, 10);
    let decode = |restrict_to_support| {
        let params = CodebookParams {
            restrict_to_support,
            ..CodebookParams::default()
        };
        let codebook = Codebook::fit(&flows, &params, 3, Progress::Hidden).unwrap();
        let layout = codebook.layout;
        let dns = flows.iter().find(|f| f.dst_port == 53).unwrap();
        let mut row = vec![0.0; layout.width()];
        assert!(FlowEncoder::new(codebook.clone()).encode(dns, &mut row));
        // The source leans towards an anonymised token, a pair never seen.
        row[layout.src_class()].fill(0.0);
        row[layout.src_class().start] = 0.4;
        row[layout.src_class().start + 6] = 0.6;
        let mut out = Vec::new();
        let mut decoder = FlowDecoder::new(&codebook).unwrap();
        decoder
            .decode(&row, 1, &mut ChaCha8Rng::seed_from_u64(1), &mut out)
            .unwrap();
        out.remove(0)
    };
    assert!(
        decode(true).src.as_v4().is_some(),
        "the internal -> token pair wins"
    );
    assert!(
        decode(false).src.is_token(),
        "each side on its own takes the token"
    );
}
