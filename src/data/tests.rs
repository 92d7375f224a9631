//! Reader and writer tests on literal file contents.

use std::io::Cursor;
use std::net::Ipv4Addr;
use std::path::Path;

use super::*;
use crate::flow::{Address, Label, Protocol, TcpFlags};

const CIDDS_HEADER: &str =
    "Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags";
const CIDDS_LABELLED_HEADER: &str = "Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags,Tos,class,attackType,attackID,attackDescription";

fn reader(text: &str, options: ReadOptions) -> Result<FlowReader, ReadError> {
    FlowReader::from_reader(
        Path::new("test.csv"),
        Box::new(Cursor::new(text.as_bytes().to_vec())),
        options,
    )
}

fn read(text: &str) -> Result<Vec<Flow>, ReadError> {
    reader(text, ReadOptions::default())?.collect()
}

fn token(text: &str) -> Address {
    Address::parse(text).unwrap()
}

#[test]
fn reads_the_published_cidds_spellings() {
    let text = format!(
        "{CIDDS_LABELLED_HEADER}\n\
         2017-03-15 00:01:16.632,0.000,TCP  ,192.168.100.5,445.0,192.168.220.16,58844.0,1,108,1,.AP...,0,normal,---,---,---\n\
         2017-03-15 00:02:00.000,1.5,UDP  ,DNS,53,EXT_SERVER,40000,1.2 M,2.5 G,1,......,16,normal,---,---,---\n\
         2017-03-15 00:03:00.001,0.0,ICMP ,11529_47,0.0,ATTACKER1,3.3,3,596,1,0x1b,0,attacker,portScan,1,nmap sweep\n"
    );
    let flows = read(&text).unwrap();
    assert_eq!(flows.len(), 3);

    let tcp = &flows[0];
    assert_eq!(tcp.start_ms, 1_489_536_076_632);
    assert_eq!(tcp.protocol, Protocol::TCP);
    assert_eq!(tcp.src, Address::V4(Ipv4Addr::new(192, 168, 100, 5)));
    assert_eq!((tcp.src_port, tcp.dst_port), (445, 58844));
    assert_eq!(tcp.tcp_flags, TcpFlags(TcpFlags::ACK | TcpFlags::PSH));
    assert!(tcp.label.as_ref().unwrap().is_normal());

    let udp = &flows[1];
    assert_eq!(udp.duration_ms, 1500);
    assert_eq!(
        (udp.src.clone(), udp.dst.clone()),
        (token("DNS"), token("EXT_SERVER"))
    );
    assert_eq!((udp.packets, udp.bytes), (1_200_000, 2_500_000_000));
    assert_eq!(udp.tos, 16);

    let icmp = &flows[2];
    assert_eq!(icmp.protocol, Protocol::ICMP);
    assert_eq!((icmp.src_port, icmp.dst_port), (0, 3 * 256 + 3));
    assert_eq!(icmp.icmp_type_code(), Some((3, 3)));
    assert_eq!(icmp.tcp_flags, TcpFlags(0x1b));
    assert_eq!(icmp.src, token("11529_47"));
    assert_eq!(
        icmp.label,
        Some(Label {
            class: "attacker".into(),
            attack_type: "portScan".into(),
            attack_id: "1".into(),
            attack_description: "nmap sweep".into(),
        })
    );
}

#[test]
fn core_columns_alone_give_unlabelled_flows() {
    let text = format!(
        "{CIDDS_HEADER}\n2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP...\n"
    );
    let flows = read(&text).unwrap();
    assert_eq!(flows[0].label, None);
    assert_eq!(flows[0].tos, 0);
    assert_eq!(flows[0].duration_ms, 639);
}

#[test]
fn detects_the_format_from_the_header() {
    let cidds = reader(&format!("\u{feff}{CIDDS_HEADER}\n"), ReadOptions::default()).unwrap();
    assert_eq!(cidds.format(), Format::Cidds001);
    let nfdump = reader(
        "ts,te,td,sa,da,sp,dp,pr,flg,ipkt,ibyt\n",
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(nfdump.format(), Format::NfdumpCsv);

    let err = reader("a,b,c\n1,2,3\n", ReadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, ReadError::UnknownFormat { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("test.csv:1: unrecognised header \"a,b,c\""),
        "{err}"
    );
    let err = reader("", ReadOptions::default()).err().unwrap();
    assert!(matches!(err, ReadError::Empty { .. }), "{err}");
}

#[test]
fn a_bad_field_names_file_line_column_and_text() {
    let text = format!(
        "{CIDDS_HEADER}\n\
         2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP...\n\
         2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,port9,4,6664,1,.AP...\n"
    );
    let mut rows = reader(&text, ReadOptions::default()).unwrap();
    assert!(rows.next().unwrap().is_ok());
    let err = rows.next().unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.csv:3: column 7 (Dst Pt): not a port number (0 to 65535): \"port9\""
    );
    assert!(rows.next().is_none(), "the read stops at the first bad row");
}

#[test]
fn a_short_row_names_its_line() {
    let text = format!("{CIDDS_HEADER}\n2017-04-11 15:31:29.795,0.639,TCP\n");
    let err = read(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.csv:2: expected 11 fields as in the header, found 3"
    );
}

#[test]
fn every_column_rejects_garbage() {
    let good = [
        "2017-04-11 15:31:29.795",
        "0.639",
        "TCP",
        "11529_47",
        "80",
        "192.168.220.14",
        "41413",
        "4",
        "6664",
        "1",
        ".AP...",
    ];
    for column in 0..good.len() {
        let mut row = good;
        row[column] = "x y";
        let text = format!("{CIDDS_HEADER}\n{}\n", row.join(","));
        match read(&text) {
            Err(ReadError::BadField {
                line,
                column: c,
                column_name,
                ..
            }) => {
                assert_eq!((line, c), (2, column + 1));
                assert_eq!(column_name, CIDDS_CORE_COLUMNS[column]);
            }
            other => panic!("column {column}: {other:?}"),
        }
    }
}

#[test]
fn skipping_counts_bad_rows_and_keeps_the_good_ones() {
    let text = format!(
        "{CIDDS_HEADER}\n\
         garbage\n\
         2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP...\n\
         2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,QQQQQQ\n\
         2017-04-11 15:31:30.000,0.0,UDP,DNS,53,192.168.220.14,41413,1,80,1,......\n"
    );
    let mut rows = reader(
        &text,
        ReadOptions {
            skip_bad_rows: true,
        },
    )
    .unwrap();
    let flows: Vec<Flow> = rows.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(flows.len(), 2);
    assert_eq!(rows.skipped_rows(), 2);
}

#[test]
fn reads_nfdump_csv_and_stops_at_its_summary() {
    let text = include_str!("testdata/nfdump-1.7.1.csv");
    let flows = read(text).unwrap();
    assert_eq!(flows.len(), 4);

    let tcp = &flows[0];
    assert_eq!(tcp.protocol, Protocol::TCP);
    assert_eq!(tcp.src, Address::V4(Ipv4Addr::new(192, 168, 1, 5)));
    assert_eq!((tcp.src_port, tcp.dst_port), (40000, 80));
    assert_eq!(tcp.duration_ms, 5000);
    assert_eq!((tcp.packets, tcp.bytes), (10, 1500));
    assert_eq!(tcp.tcp_flags, TcpFlags(0x1b));

    assert_eq!(flows[1].tos, 16);
    assert_eq!(flows[2].icmp_type_code(), Some((3, 3)));
    assert_eq!(flows[2].src_port, 0);
    assert_eq!(flows[3].tcp_flags, TcpFlags(0xd2));
    assert_eq!(
        (flows[3].packets, flows[3].bytes),
        (123_456_789, 4_000_000_000)
    );
    assert_eq!(flows[3].duration_ms, 6999);
}

#[test]
fn nfdump_bad_rows_name_the_nfdump_column() {
    let text = "ts,te,td,sa,da,sp,dp,pr,flg,ipkt,ibyt\n\
                2026-12-03 13:10:47,2026-12-03 13:10:52,5.000,192.168.1.5,10.0.0.1,40000,80,TCP,...AP.SF,ten,1500\n";
    let err = read(text).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("test.csv:2: column 10 (ipkt): "),
        "{err}"
    );
}

#[test]
fn written_flows_read_back_unchanged() {
    let text = format!(
        "{CIDDS_LABELLED_HEADER}\n\
         2017-03-15 00:01:16.632,0.000,TCP  ,192.168.100.5,445.0,192.168.220.16,58844.0,1,108,1,.AP...,0,normal,---,---,---\n\
         2017-03-15 00:02:00.000,1.5,UDP  ,DNS,53,EXT_SERVER,40000,1.2 M,2.5 G,1,......,16,normal,---,---,---\n\
         2017-03-15 00:03:00.001,0.0,ICMP ,11529_47,0.0,ATTACKER1,3.3,3,596,1,0xdb,0,attacker,portScan,1,\"sweep, with comma\"\n"
    );
    let flows = read(&text).unwrap();

    let mut out = CiddsWriter::with_labels(Vec::new()).unwrap();
    for flow in &flows {
        out.write(flow).unwrap();
    }
    let written = String::from_utf8(out.into_inner().unwrap()).unwrap();
    assert_eq!(written.lines().next(), Some(CIDDS_LABELLED_HEADER));
    assert!(
        written.contains(",ICMP,11529_47,0,ATTACKER1,3.3,3,596,1,0xdb,"),
        "{written}"
    );
    assert!(
        written.contains(",1200000,2500000000,1,......,16,"),
        "{written}"
    );
    assert_eq!(read(&written).unwrap(), flows);

    let mut plain = CiddsWriter::new(Vec::new()).unwrap();
    plain.write(&flows[0]).unwrap();
    let plain = String::from_utf8(plain.into_inner().unwrap()).unwrap();
    assert_eq!(
        plain,
        format!("{CIDDS_HEADER}\n2017-03-15 00:01:16.632,0.000,TCP,192.168.100.5,445,192.168.220.16,58844,1,108,1,.AP...\n")
    );
}

#[test]
fn the_writer_refuses_years_it_cannot_spell() {
    let text = format!("{CIDDS_HEADER}\n2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP...\n");
    let mut flow = read(&text).unwrap().remove(0);
    flow.start_ms = i64::MAX;
    let mut out = CiddsWriter::new(Vec::new()).unwrap();
    assert!(matches!(
        out.write(&flow),
        Err(WriteError::StartOutOfRange { .. })
    ));
}

#[test]
fn an_endless_line_fails_instead_of_filling_memory() {
    let text = format!("{CIDDS_HEADER}\n{}", "x".repeat(3 * 1024 * 1024));
    let mut rows = reader(
        &text,
        ReadOptions {
            skip_bad_rows: true,
        },
    )
    .unwrap();
    let err = rows.next().unwrap().unwrap_err();
    assert!(matches!(err, ReadError::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("test.csv: line 2 is longer than"),
        "{err}"
    );
    assert!(rows.next().is_none());
}
