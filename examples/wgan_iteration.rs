//! Prints milliseconds per WGAN-GP iteration (n_critic critic steps with the gradient
//! penalty, then one generator step) for a few network widths.
//!
//! `cargo run --release --example wgan_iteration [row_width]` (default row width 80).

use std::time::Instant;

use flowgen::model::wgan::{train, Progress, WganParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dim: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 80,
    };
    let batch = 256;
    let n_critic = 5;
    // Four generator steps per epoch.
    let rows = batch * n_critic * 4;
    let data: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();

    println!("row width {dim}, batch {batch}, n_critic {n_critic}, one thread");
    for (generator, critic) in [(256, 256), (128, 128), (128, 256)] {
        let params = WganParams {
            hidden: vec![generator; 3],
            critic_hidden: vec![critic; 3],
            batch,
            n_critic,
            epochs: 5,
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
