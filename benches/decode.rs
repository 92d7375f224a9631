//! Decoding speed on the shared CIDDS-001 sample: nearest-neighbour queries per
//! second for each embedded field, and flows per second for whole decoded
//! batches. Prints numbers; never fails on speed.
//!
//! `cargo bench --bench decode` (single thread).

use std::hint::black_box;
use std::path::PathBuf;

use flowgen::data::{read_all, ReadOptions};
use flowgen::model::codebook::{Codebook, CodebookParams, FlowEncoder};
use flowgen::model::decode::{FlowDecoder, Method, NearestIndex};
use flowgen::model::features::{EmbeddedField, WordKind};
use flowgen::model::ip2vec::Ip2VecParams;
use flowgen::model::wgan::Progress;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// CPU time of this thread, seconds: steadier than wall time on a shared machine.
fn cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Calls `work` (which handles `per_call` items) for about `seconds` of CPU
/// time and returns items per CPU second.
fn rate(seconds: f64, per_call: usize, mut work: impl FnMut()) -> f64 {
    let started = cpu_s();
    let mut done = 0;
    while cpu_s() - started < seconds {
        work();
        done += per_call;
    }
    done as f64 / (cpu_s() - started)
}

fn sample() -> PathBuf {
    let shared = std::env::var_os("FLOWGEN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
            if beside.is_dir() {
                beside
            } else {
                PathBuf::from("/work/shared")
            }
        });
    shared.join("data/cidds-001/cidds-001-week3-sample.csv")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dims: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dims = if dims.is_empty() { vec![8, 16] } else { dims };
    let flows = read_all(&[sample()], ReadOptions::default())?;
    println!(
        "decode benchmark: {} flows from the CIDDS-001 sample, one thread",
        flows.len()
    );
    for dim in dims {
        let params = CodebookParams {
            ip2vec: Ip2VecParams {
                dim,
                ..Ip2VecParams::default()
            },
            ..CodebookParams::default()
        };
        let codebook = Codebook::fit(&flows, &params, 1, Progress::Hidden)?;
        bench_dim(&flows, codebook)?;
    }
    Ok(())
}

fn bench_dim(
    flows: &[flowgen::flow::Flow],
    codebook: Codebook,
) -> Result<(), Box<dyn std::error::Error>> {
    let layout = codebook.layout;
    let width = layout.width();
    let encoder = FlowEncoder::new(codebook.clone());
    let rows = 65_536;
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    // Generator-like output: encoded training rows plus noise.
    let mut near = vec![0.0f32; rows * width];
    for row in near.chunks_exact_mut(width) {
        let flow = &flows[rng.random_range(0..flows.len())];
        encoder.encode(flow, row);
        for v in row.iter_mut() {
            *v += rng.random_range(-0.05..0.05);
        }
    }
    println!(
        "\nembedding dim {}, row width {width}",
        layout.embedding_dim
    );
    for kind in WordKind::EMBEDDED {
        let table = codebook.normalised_table(kind);
        let words: Vec<u32> = (0..codebook.word_count(kind) as u32).collect();
        let index = NearestIndex::new(&table, layout.embedding_dim, words).ok_or("empty table")?;
        let field = EmbeddedField::ALL
            .into_iter()
            .find(|f| f.kind() == kind)
            .ok_or("no field")?;
        let offset = layout.field(field).start;
        let mut out = vec![0u32; near.len() / width];
        let mut scratch = Vec::new();
        let mut per_method = Vec::new();
        for method in [Method::Product, Method::Fused] {
            per_method.push(rate(0.5, out.len(), || {
                index
                    .nearest_with(method, &near, width, offset, &mut out, &mut scratch)
                    .expect("queries fit the batch");
                black_box(&out);
            }));
        }
        println!(
            "  {:<9} {:>5} words  product {:>10.0} queries/s  fused {:>10.0} queries/s",
            kind.name(),
            index.len(),
            per_method[0],
            per_method[1]
        );
    }

    let mut decoder = FlowDecoder::new(&codebook)?;
    for batch in [1024, 4096, 16_384] {
        let mut out = Vec::with_capacity(batch);
        let blocks: Vec<&[f32]> = near.chunks_exact(batch * width).collect();
        let mut next = 0;
        let flows_per_s = rate(1.0, batch, || {
            out.clear();
            decoder
                .decode(blocks[next % blocks.len()], batch, &mut rng, &mut out)
                .expect("the batch fits the layout");
            black_box(&out);
            next += 1;
        });
        println!("  whole flows, batch {batch:>6}: {flows_per_s:>10.0} flows/s");
    }
    Ok(())
}
