//! Feeds arbitrary rows, after the header of `nfdump -o csv` (nfdump 1.7.1),
//! to the flow reader. The first input byte picks whether bad rows are
//! skipped; the property is that nothing panics.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use flowgen::data::{FlowReader, ReadOptions};
use libfuzzer_sys::fuzz_target;

const HEADER: &str = "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rows)) = data.split_first() else {
        return;
    };
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(rows);

    let options = ReadOptions {
        skip_bad_rows: mode & 1 == 1,
    };
    if let Ok(reader) =
        FlowReader::from_reader(Path::new("fuzz.csv"), Box::new(Cursor::new(input)), options)
    {
        reader.for_each(drop);
    }
});
