//! Prints milliseconds per WGAN-GP iteration (n_critic critic steps with the gradient
//! penalty, then one generator step) for a few network widths.
//!
//! `cargo run --release --example wgan_iteration [row_width] [threads]` (defaults: row
//! width 80, one thread).

use std::time::Instant;

use flowgen::model::wgan::{train, Progress, WganParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dim: usize = args.next().map_or(Ok(80), |a| a.parse())?;
    let threads: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let batch = 256;
    let n_critic = 5;
    // Four generator steps per epoch.
    let rows = batch * n_critic * 4;
    let data: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();

    println!("row width {dim}, batch {batch}, n_critic {n_critic}, threads {threads}");
    for (generator, critic) in [(256, 256), (128, 128), (128, 256)] {
        let params = WganParams {
            hidden: vec![generator; 3],
            critic_hidden: vec![critic; 3],
            batch,
            n_critic,
            epochs: 5,
            threads,
            ..WganParams::default()
        };
        let started = Instant::now();
        let run = train(&data, dim, &params, Progress::Hidden)?;
        let ms = started.elapsed().as_secs_f64() * 1e3 / run.generator_steps as f64;
        println!(
            "generator 3x{generator}, critic 3x{critic}: {ms:.1} ms per iteration ({} iterations)",
            run.generator_steps
        );
    }
    Ok(())
}
