//! The readers and the writer on real files: the shared CIDDS-001 sample,
//! files on disk with bad rows, and arbitrary bytes.

mod common;

use std::io::{Cursor, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use flowgen::data::{read_all, CiddsWriter, FlowReader, Format, ReadError, ReadOptions};
use flowgen::flow::{Address, Flow, Label, Protocol, TcpFlags};
use proptest::prelude::*;

const CIDDS_HEADER: &str =
    "Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags";
const VALID_ROW: &str =
    "2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP...";
const NFDUMP_HEADER: &str = "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt";

#[test]
fn reads_the_whole_shared_sample() {
    let path = common::cidds_sample();
    let mut reader = FlowReader::open(&path, ReadOptions::default()).unwrap();
    assert_eq!(reader.format(), Format::Cidds001);
    let flows: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(flows.len(), 6144);
    assert_eq!(reader.skipped_rows(), 0);

    // Counted independently with awk over the Proto column.
    let count = |p| flows.iter().filter(|f| f.protocol == p).count();
    assert_eq!(
        (
            count(Protocol::TCP),
            count(Protocol::UDP),
            count(Protocol::ICMP)
        ),
        (5208, 935, 1)
    );
    assert!(flows.iter().all(|f| f.label.is_none()));
}

#[test]
fn the_shared_sample_survives_a_write_read_round_trip() {
    let flows = read_all([common::cidds_sample()], ReadOptions::default()).unwrap();
    let mut writer = CiddsWriter::new(Vec::new()).unwrap();
    for flow in &flows {
        writer.write(flow).unwrap();
    }
    let bytes = writer.into_inner().unwrap();
    let again: Vec<_> = FlowReader::from_reader(
        Path::new("written.csv"),
        Box::new(Cursor::new(bytes)),
        ReadOptions::default(),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(again, flows);
}

#[test]
fn errors_name_the_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{CIDDS_HEADER}").unwrap();
    writeln!(
        file,
        "2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP..."
    )
    .unwrap();
    writeln!(
        file,
        "2017-04-11 15:31:29.795,-2,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP..."
    )
    .unwrap();
    drop(file);

    let err = read_all([&path], ReadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: column 2 (Duration): not a non-negative number of seconds: \"-2\"",
            path.display()
        )
    );
    let missing = dir.path().join("missing.csv");
    let err = read_all([&missing], ReadOptions::default()).unwrap_err();
    assert!(matches!(err, ReadError::Io { .. }));
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );
}

/// Reads everything a reader yields; the property is only that nothing panics.
fn drain(bytes: Vec<u8>, skip_bad_rows: bool) {
    let options = ReadOptions { skip_bad_rows };
    if let Ok(reader) =
        FlowReader::from_reader(Path::new("fuzz.csv"), Box::new(Cursor::new(bytes)), options)
    {
        for row in reader {
            let _ = row;
        }
    }
}

fn with_header(header: &str, lines: &[String]) -> Vec<u8> {
    let mut text = format!("{header}\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.into_bytes()
}

/// Lines built from pieces that real rows contain, so the parsers get past their first checks.
fn plausible_line() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("2017-04-11 15:31:29.795".to_string()),
        Just("TCP  ".to_string()),
        Just("ICMP".to_string()),
        Just("3.3".to_string()),
        Just("1.2 M".to_string()),
        Just("0x1b".to_string()),
        Just(".AP.SF".to_string()),
        Just("CE.A..S.".to_string()),
        Just("58844.0".to_string()),
        Just("11529_47".to_string()),
        Just("Summary".to_string()),
        Just("\"".to_string()),
        "[0-9.eE+-]{0,12}",
        ".{0,8}",
    ];
    prop::collection::vec(piece, 0..18).prop_map(|pieces| pieces.join(","))
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    // 256 cases by default keeps the test command quick; PROPTEST_CASES runs more.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), skip in any::<bool>()) {
        drain(bytes, skip);
    }

    #[test]
    fn arbitrary_cidds_rows_never_panic(lines in prop::collection::vec(plausible_line(), 0..16), skip in any::<bool>()) {
        drain(with_header(CIDDS_HEADER, &lines), skip);
        drain(with_header(&format!("{CIDDS_HEADER},Tos,class,attackType,attackID,attackDescription"), &lines), skip);
    }

    #[test]
    fn a_valid_row_with_one_field_replaced_fails_on_its_own_line(
        column in 0usize..11,
        replacement in prop_oneof![".{0,10}", "[0-9. KMG]{0,8}"],
    ) {
        let mut fields: Vec<String> = VALID_ROW.split(',').map(str::to_owned).collect();
        fields[column] = replacement.replace(['\n', '\r', ',', '"'], "");
        let bytes = with_header(CIDDS_HEADER, &[VALID_ROW.to_owned(), fields.join(",")]);
        let rows: Vec<_> = FlowReader::from_reader(Path::new("f.csv"), Box::new(Cursor::new(bytes)), ReadOptions::default())
            .unwrap()
            .collect();
        prop_assert!(rows[0].is_ok());
        if let Some(Err(err)) = rows.get(1) {
            let is_line_3 = matches!(err, ReadError::BadField { line: 3, column: c, .. } if *c == column + 1);
            prop_assert!(is_line_3, "{}", err);
        }
    }

    #[test]
    fn arbitrary_nfdump_rows_never_panic(lines in prop::collection::vec(plausible_line(), 0..16), skip in any::<bool>()) {
        drain(with_header(NFDUMP_HEADER, &lines), skip);
    }
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Address::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| Address::V6(Ipv6Addr::from(o))),
        "[A-Za-z0-9_]{1,12}".prop_map(|t| Address::parse(&t).unwrap()),
    ]
}

fn label() -> impl Strategy<Value = Option<Label>> {
    let word = "[A-Za-z0-9-]{1,10}";
    let text = "[a-z]([a-z ,\"]{0,10}[a-z])?";
    prop::option::of((word, word, word, text).prop_map(
        |(class, attack_type, attack_id, attack_description)| Label {
            class,
            attack_type,
            attack_id,
            attack_description,
        },
    ))
}

prop_compose! {
    fn flow()(
        start_ms in -62_167_219_200_000i64..=253_402_300_799_999,
        duration_ms in any::<u64>(),
        protocol in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
        src in address(),
        dst in address(),
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
        packets in any::<u64>(),
        bytes in any::<u64>(),
        flags in any::<u8>(),
        tos in any::<u8>(),
        label in label(),
    ) -> Flow {
        let protocol = Protocol(protocol);
        Flow {
            start_ms, duration_ms, protocol, src, dst,
            src_port: if protocol.is_icmp() { 0 } else { src_port },
            dst_port, packets, bytes, tcp_flags: TcpFlags(flags), tos, label,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_flow_reads_back_as_written(flows in prop::collection::vec(flow(), 1..20)) {
        let mut writer = CiddsWriter::with_labels(Vec::new()).unwrap();
        for flow in &flows {
            writer.write(flow).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        let again: Vec<Flow> = FlowReader::from_reader(Path::new("w.csv"), Box::new(Cursor::new(bytes)), ReadOptions::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(again, flows);
    }
}
