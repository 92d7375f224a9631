//! `flowgen bench`: throughput of each pipeline stage and of the whole path into
//! a counting IPFIX sink on 127.0.0.1, with the process's memory over the run.

pub mod wire;
