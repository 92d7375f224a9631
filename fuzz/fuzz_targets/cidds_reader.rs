//! Feeds arbitrary rows, after a CIDDS-001 header, to the flow reader.
//! The first input byte picks the 11-column or the 16-column header and
//! whether bad rows are skipped; the property is that nothing panics.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use flowgen::data::{FlowReader, ReadOptions, CIDDS_CORE_COLUMNS, CIDDS_LABEL_COLUMNS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rows)) = data.split_first() else {
        return;
    };
    let mut columns = CIDDS_CORE_COLUMNS.to_vec();
    if mode & 1 == 1 {
        columns.extend(CIDDS_LABEL_COLUMNS);
    }
    let mut input = columns.join(",").into_bytes();
    input.push(b'\n');
    input.extend_from_slice(rows);

    let options = ReadOptions {
        skip_bad_rows: mode & 2 == 2,
    };
    if let Ok(reader) =
        FlowReader::from_reader(Path::new("fuzz.csv"), Box::new(Cursor::new(input)), options)
    {
        reader.for_each(drop);
    }
});
