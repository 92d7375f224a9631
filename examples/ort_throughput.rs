//! Prints generator rows per second through ONNX Runtime on the CPU for a few widths,
//! batch sizes and intra-op thread counts.
//!
//! `cargo run --release --example ort_throughput [seconds_per_case] [row_width]`
//! (defaults: 2 seconds, row width 80; noise width 32; three hidden layers).

use std::time::{Duration, Instant};

use flowgen::model::onnx;
use flowgen::model::runtime::{GeneratorSession, GeneratorShape, RuntimeOptions};
use flowgen::model::wgan::TrainedGenerator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(Ok(2.0), |a| a.parse())?;
    let out_dim: usize = args.next().map_or(Ok(80), |a| a.parse())?;
    let noise_dim = 32;
    let dir = std::env::temp_dir().join(format!("flowgen-ort-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    println!("noise {noise_dim}, output {out_dim}, three hidden layers, {seconds} s per case");
    for width in [128, 256] {
        let generator = TrainedGenerator::random(noise_dim, &[width; 3], out_dim, &[], 1)?;
        let path = dir.join(format!("generator-{width}.onnx"));
        onnx::write_onnx(&generator, &path)?;
        for batch in [1024, 4096] {
            let rate = measure_rust(&generator, batch, Duration::from_secs_f64(seconds))?;
            println!(
                "width {width:3} rust forward, one thread  batch {batch:4}: {:7.0} k rows/s",
                rate / 1e3
            );
        }
        for threads in [1, 2] {
            for spinning in [true, false] {
                let options = RuntimeOptions {
                    intra_threads: threads,
                    intra_spinning: spinning,
                    ..RuntimeOptions::default()
                };
                let shape = GeneratorShape { noise_dim, out_dim };
                let mut session = GeneratorSession::load(&path, shape, &options)?;
                for batch in [1024, 4096] {
                    let rate = measure(&mut session, batch, Duration::from_secs_f64(seconds))?;
                    println!(
                        "width {width:3} threads {threads} spinning {spinning:5} batch {batch:4}: {:7.0} k rows/s",
                        rate / 1e3
                    );
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn measure(
    session: &mut GeneratorSession,
    batch: usize,
    duration: Duration,
) -> Result<f64, Box<dyn std::error::Error>> {
    let noise: Vec<f32> = (0..batch * session.shape().noise_dim)
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    session.run(&noise, batch)?;
    let started = Instant::now();
    let mut rows = 0;
    while started.elapsed() < duration {
        session.run(&noise, batch)?;
        rows += batch;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn measure_rust(
    generator: &TrainedGenerator,
    batch: usize,
    duration: Duration,
) -> Result<f64, Box<dyn std::error::Error>> {
    let noise: Vec<f32> = (0..batch * generator.noise_dim())
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let started = Instant::now();
    let mut rows = 0;
    while started.elapsed() < duration {
        generator.forward(&noise, batch)?;
        rows += batch;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}
