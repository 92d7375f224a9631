//! WGAN-GP training (Gulrajani et al., 2017) of an MLP generator against an MLP critic:
//! gradient penalty on interpolates, several critic steps per generator step, and Adam
//! with separate learning rates for the two networks (TTUR, Heusel et al., 2017).
//!
//! Training is deterministic for a given seed: one ChaCha stream draws the initial
//! weights, the batches, the noise and the interpolation weights, and all arithmetic
//! runs on one thread.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::adam::{Adam, AdamConfig};
use super::mlp::{Dense, Mlp, Tape};
use super::output::{self, ActivationSpecError, ColumnActivation};

/// Hyper-parameters of a WGAN-GP run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WganParams {
    /// Width of the generator's Gaussian noise input.
    pub noise_dim: usize,
    /// Widths of the generator's hidden layers.
    pub hidden: Vec<usize>,
    /// Widths of the critic's hidden layers.
    pub critic_hidden: Vec<usize>,
    /// Rows per batch, for the critic and the generator alike.
    pub batch: usize,
    /// Critic steps per generator step.
    pub n_critic: usize,
    /// Weight of the gradient penalty.
    pub lambda_gp: f32,
    /// Adam learning rate of the critic.
    pub lr_critic: f32,
    /// Adam learning rate of the generator.
    pub lr_generator: f32,
    /// Adam's moment decays `(beta1, beta2)`, shared by both networks.
    pub betas: (f32, f32),
    /// Passes over the training data; one epoch is `ceil(rows / batch)` critic steps,
    /// rounded up to whole generator steps.
    pub epochs: usize,
    /// Seed of the random stream; the same seed and data give the same generator.
    pub seed: u64,
    /// Slope of LeakyReLU for negative inputs, in both networks.
    pub leaky_slope: f32,
    /// Activations on ranges of generator output columns; columns not listed are linear.
    pub output_activations: Vec<ColumnActivation>,
    /// Threads for the large matrix products; the result is the same for any count. On a
    /// busy two-core machine more than one thread was slower, because each product waits
    /// for its slowest thread.
    pub threads: usize,
}

impl Default for WganParams {
    fn default() -> Self {
        Self {
            noise_dim: 32,
            hidden: vec![128, 128, 128],
            critic_hidden: vec![256, 256, 256],
            batch: 256,
            n_critic: 5,
            lambda_gp: 10.0,
            lr_critic: 3e-4,
            lr_generator: 1e-4,
            betas: (0.5, 0.9),
            epochs: 100,
            seed: 0,
            leaky_slope: 0.2,
            output_activations: Vec::new(),
            threads: 1,
        }
    }
}

/// Why training could not start or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum WganError {
    /// The training matrix has no rows or no columns.
    #[error("training data is empty ({values} values of row width {dim})")]
    Empty {
        /// Number of values given.
        values: usize,
        /// Row width.
        dim: usize,
    },
    /// The training matrix is not a whole number of rows.
    #[error("training data has {values} values, not a multiple of the row width {dim}")]
    Ragged {
        /// Number of values given.
        values: usize,
        /// Row width.
        dim: usize,
    },
    /// A training value is NaN or infinite.
    #[error("training data row {row} column {column} is not finite ({value})")]
    NonFinite {
        /// Row index.
        row: usize,
        /// Column index.
        column: usize,
        /// The value.
        value: f32,
    },
    /// A hyper-parameter is out of range.
    #[error("wgan parameter {name}: {reason}")]
    Param {
        /// The parameter's field name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The output activation ranges do not fit the data width.
    #[error("wgan parameter output_activations: {0}")]
    Activations(#[from] ActivationSpecError),
    /// A loss became NaN or infinite.
    #[error("training diverged at generator step {step}: critic loss {critic_loss}, generator loss {generator_loss}")]
    Diverged {
        /// Generator step (from 1) at which it happened.
        step: usize,
        /// The critic loss then.
        critic_loss: f32,
        /// The generator loss then.
        generator_loss: f32,
    },
    /// A noise matrix of the wrong size was given to the generator.
    #[error("generator noise has {values} values, expected batch {batch} x noise_dim {noise_dim}")]
    NoiseShape {
        /// Number of values given.
        values: usize,
        /// Rows requested.
        batch: usize,
        /// The generator's noise width.
        noise_dim: usize,
    },
}

/// Whether training draws a progress bar on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A bar per epoch with the latest losses.
    Bar,
    /// Nothing but `tracing` logs.
    Hidden,
}

/// Mean losses over one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLosses {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Critic loss `E[f(fake)] - E[f(real)] + penalty`.
    pub critic_loss: f32,
    /// Generator loss `-E[f(fake)]`.
    pub generator_loss: f32,
    /// The critic's Wasserstein estimate `E[f(real)] - E[f(fake)]`.
    pub wasserstein: f32,
    /// The gradient penalty term.
    pub gradient_penalty: f32,
}

/// The result of a run: the generator and how the losses went.
#[derive(Clone, Debug)]
pub struct Training {
    /// The trained generator.
    pub generator: TrainedGenerator,
    /// Mean losses per epoch.
    pub history: Vec<EpochLosses>,
    /// Generator steps taken.
    pub generator_steps: usize,
    /// Wall-clock training time.
    pub elapsed: Duration,
}

/// A trained generator: noise in, flow vectors out.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainedGenerator {
    network: Mlp,
    segments: Vec<ColumnActivation>,
}

impl TrainedGenerator {
    /// Wraps a network and its output activations (columns not listed are linear).
    pub fn new(network: Mlp, activations: &[ColumnActivation]) -> Result<Self, WganError> {
        if network.layers.is_empty() {
            return Err(param("hidden", "the generator has no layers"));
        }
        let segments = output::output_segments(network.out_dim(), activations)?;
        Ok(Self { network, segments })
    }

    /// A generator with random weights and biases, for tests and benchmarks.
    pub fn random(
        noise_dim: usize,
        hidden: &[usize],
        out_dim: usize,
        activations: &[ColumnActivation],
        seed: u64,
    ) -> Result<Self, WganError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let widths = layer_widths(noise_dim, hidden, out_dim);
        let mut network = Mlp::new(&widths, 0.2, &mut rng);
        for layer in &mut network.layers {
            layer
                .b
                .iter_mut()
                .for_each(|b| *b = rng.random_range(-0.1..0.1));
        }
        Self::new(network, activations)
    }

    /// The layers, noise side first; hidden layers apply LeakyReLU.
    pub fn layers(&self) -> &[Dense] {
        &self.network.layers
    }

    /// Slope of LeakyReLU for negative inputs.
    pub fn leaky_slope(&self) -> f32 {
        self.network.leaky_slope
    }

    /// Width of the noise input.
    pub fn noise_dim(&self) -> usize {
        self.network.in_dim()
    }

    /// Width of a generated row.
    pub fn out_dim(&self) -> usize {
        self.network.out_dim()
    }

    /// The output activations, covering every column in order.
    pub fn activations(&self) -> &[ColumnActivation] {
        &self.segments
    }

    /// Generates `batch` rows from `noise` (`batch x noise_dim`, row-major).
    pub fn forward(&self, noise: &[f32], batch: usize) -> Result<Vec<f32>, WganError> {
        if noise.len() != batch * self.noise_dim() {
            return Err(WganError::NoiseShape {
                values: noise.len(),
                batch,
                noise_dim: self.noise_dim(),
            });
        }
        let mut tape = Tape::default();
        let pre = self.network.forward(noise, batch, &mut tape);
        let mut out = Vec::new();
        output::apply(&self.segments, self.out_dim(), pre, &mut out);
        Ok(out)
    }
}

/// Trains a generator on `data`, `rows x dim` row-major, and returns it with its loss history.
pub fn train(
    data: &[f32],
    dim: usize,
    params: &WganParams,
    progress: Progress,
) -> Result<Training, WganError> {
    let rows = validate_data(data, dim)?;
    validate_params(params)?;
    let started = Instant::now();
    let mut trainer = Trainer::new(data, dim, rows, params)?;

    let critic_steps_per_epoch = rows.div_ceil(params.batch);
    let steps_per_epoch = critic_steps_per_epoch.div_ceil(params.n_critic);
    tracing::info!(
        rows,
        dim,
        epochs = params.epochs,
        threads = params.threads,
        generator_steps = steps_per_epoch * params.epochs,
        "training wgan-gp"
    );
    let bar = progress_bar(progress, params.epochs);
    let log_every = (params.epochs / 10).max(1);
    let mut history = Vec::with_capacity(params.epochs);

    for epoch in 1..=params.epochs {
        let mut sums = LossSums::default();
        for _ in 0..steps_per_epoch {
            sums.add(trainer.iteration());
            if !sums.last_is_finite() {
                let (critic_loss, generator_loss) = sums.last;
                return Err(WganError::Diverged {
                    step: trainer.generator_steps,
                    critic_loss,
                    generator_loss,
                });
            }
        }
        let losses = sums.mean(epoch);
        history.push(losses);
        report_epoch(&bar, &losses, params.epochs, epoch % log_every == 0);
    }
    bar.finish_and_clear();

    let elapsed = started.elapsed();
    tracing::info!(
        generator_steps = trainer.generator_steps,
        elapsed_s = elapsed.as_secs_f64(),
        "wgan-gp training done"
    );
    Ok(Training {
        generator: TrainedGenerator::new(trainer.generator, &params.output_activations)?,
        history,
        generator_steps: trainer.generator_steps,
        elapsed,
    })
}

fn layer_widths(input: usize, hidden: &[usize], output: usize) -> Vec<usize> {
    std::iter::once(input)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(output))
        .collect()
}

fn param(name: &'static str, reason: impl Into<String>) -> WganError {
    WganError::Param {
        name,
        reason: reason.into(),
    }
}

fn validate_data(data: &[f32], dim: usize) -> Result<usize, WganError> {
    if dim == 0 || data.is_empty() {
        return Err(WganError::Empty {
            values: data.len(),
            dim,
        });
    }
    if data.len() % dim != 0 {
        return Err(WganError::Ragged {
            values: data.len(),
            dim,
        });
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(WganError::NonFinite {
            row: i / dim,
            column: i % dim,
            value: data[i],
        });
    }
    Ok(data.len() / dim)
}

fn validate_params(p: &WganParams) -> Result<(), WganError> {
    let positive = |name, v: usize| {
        if v == 0 {
            Err(param(name, "must be at least 1"))
        } else {
            Ok(())
        }
    };
    positive("noise_dim", p.noise_dim)?;
    positive("batch", p.batch)?;
    positive("n_critic", p.n_critic)?;
    positive("epochs", p.epochs)?;
    positive("threads", p.threads)?;
    if p.hidden.contains(&0) {
        return Err(param("hidden", "layer widths must be at least 1"));
    }
    if p.critic_hidden.contains(&0) {
        return Err(param("critic_hidden", "layer widths must be at least 1"));
    }
    for (name, lr) in [("lr_critic", p.lr_critic), ("lr_generator", p.lr_generator)] {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(param(name, format!("must be a positive number, not {lr}")));
        }
    }
    let (b1, b2) = p.betas;
    if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
        return Err(param(
            "betas",
            format!("each must lie in [0, 1), not ({b1}, {b2})"),
        ));
    }
    if !(p.lambda_gp.is_finite() && p.lambda_gp >= 0.0) {
        return Err(param(
            "lambda_gp",
            format!("must be a non-negative number, not {}", p.lambda_gp),
        ));
    }
    if !(p.leaky_slope.is_finite() && (0.0..1.0).contains(&p.leaky_slope)) {
        return Err(param(
            "leaky_slope",
            format!("must lie in [0, 1), not {}", p.leaky_slope),
        ));
    }
    Ok(())
}

fn progress_bar(progress: Progress, epochs: usize) -> indicatif::ProgressBar {
    match progress {
        Progress::Hidden => indicatif::ProgressBar::hidden(),
        Progress::Bar => {
            let bar = indicatif::ProgressBar::new(epochs as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] epoch {pos}/{len} (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        }
    }
}

fn report_epoch(bar: &indicatif::ProgressBar, l: &EpochLosses, epochs: usize, info: bool) {
    bar.set_message(format!(
        "critic {:.4} gen {:.4} w {:.4} gp {:.4}",
        l.critic_loss, l.generator_loss, l.wasserstein, l.gradient_penalty
    ));
    bar.inc(1);
    if info || l.epoch == epochs {
        tracing::info!(
            epoch = l.epoch,
            epochs,
            critic_loss = l.critic_loss,
            generator_loss = l.generator_loss,
            wasserstein = l.wasserstein,
            gradient_penalty = l.gradient_penalty,
            "wgan-gp epoch"
        );
    } else {
        tracing::debug!(
            epoch = l.epoch,
            critic_loss = l.critic_loss,
            generator_loss = l.generator_loss,
            wasserstein = l.wasserstein,
            gradient_penalty = l.gradient_penalty,
            "wgan-gp epoch"
        );
    }
}

/// Losses of one generator step and the critic steps before it.
#[derive(Clone, Copy, Debug, Default)]
struct StepLosses {
    critic_loss: f32,
    generator_loss: f32,
    wasserstein: f32,
    gradient_penalty: f32,
}

#[derive(Default)]
struct LossSums {
    sum: [f64; 4],
    count: usize,
    last: (f32, f32),
}

impl LossSums {
    fn add(&mut self, s: StepLosses) {
        let values = [
            s.critic_loss,
            s.generator_loss,
            s.wasserstein,
            s.gradient_penalty,
        ];
        for (acc, v) in self.sum.iter_mut().zip(values) {
            *acc += f64::from(v);
        }
        self.count += 1;
        self.last = (s.critic_loss, s.generator_loss);
    }

    fn last_is_finite(&self) -> bool {
        self.last.0.is_finite() && self.last.1.is_finite()
    }

    fn mean(&self, epoch: usize) -> EpochLosses {
        let n = self.count.max(1) as f64;
        let m = |i: usize| (self.sum[i] / n) as f32;
        EpochLosses {
            epoch,
            critic_loss: m(0),
            generator_loss: m(1),
            wasserstein: m(2),
            gradient_penalty: m(3),
        }
    }
}

/// Draws training rows in shuffled passes, reshuffling after each pass.
struct BatchSampler {
    order: Vec<usize>,
    next: usize,
}

impl BatchSampler {
    fn fill(
        &mut self,
        data: &[f32],
        dim: usize,
        batch: usize,
        rng: &mut impl Rng,
        out: &mut [f32],
    ) {
        for row in out.chunks_exact_mut(dim).take(batch) {
            if self.next == self.order.len() {
                self.order.shuffle(rng);
                self.next = 0;
            }
            let i = self.order[self.next];
            self.next += 1;
            row.copy_from_slice(&data[i * dim..(i + 1) * dim]);
        }
    }
}

/// Everything one run needs, with buffers reused across steps.
struct Trainer<'d> {
    data: &'d [f32],
    dim: usize,
    batch: usize,
    n_critic: usize,
    lambda_gp: f32,
    segments: Vec<ColumnActivation>,
    rng: ChaCha8Rng,
    sampler: BatchSampler,
    generator: Mlp,
    critic: Mlp,
    generator_adam: Adam,
    critic_adam: Adam,
    generator_grads: Vec<Dense>,
    critic_grads: Vec<Dense>,
    generator_tape: Tape,
    critic_tape: Tape,
    noise: Vec<f32>,
    fake: Vec<f32>,
    /// Real rows then fake rows, `2 * batch x dim`.
    stacked: Vec<f32>,
    interpolates: Vec<f32>,
    grad_out: Vec<f32>,
    grad_fake: Vec<f32>,
    grad_pre: Vec<f32>,
    generator_steps: usize,
}

impl<'d> Trainer<'d> {
    fn new(data: &'d [f32], dim: usize, rows: usize, p: &WganParams) -> Result<Self, WganError> {
        let segments = output::output_segments(dim, &p.output_activations)?;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let critic = Mlp::new(
            &layer_widths(dim, &p.critic_hidden, 1),
            p.leaky_slope,
            &mut rng,
        );
        let generator = Mlp::new(
            &layer_widths(p.noise_dim, &p.hidden, dim),
            p.leaky_slope,
            &mut rng,
        );
        let adam = |learning_rate| AdamConfig {
            learning_rate,
            beta1: p.betas.0,
            beta2: p.betas.1,
            epsilon: 1e-8,
        };
        let mut order: Vec<usize> = (0..rows).collect();
        order.shuffle(&mut rng);
        Ok(Self {
            data,
            dim,
            batch: p.batch,
            n_critic: p.n_critic,
            lambda_gp: p.lambda_gp,
            segments,
            rng,
            sampler: BatchSampler { order, next: 0 },
            generator_adam: Adam::new(&generator, adam(p.lr_generator)),
            critic_adam: Adam::new(&critic, adam(p.lr_critic)),
            generator_grads: generator.zeros_like(),
            critic_grads: critic.zeros_like(),
            generator,
            critic,
            generator_tape: Tape::with_threads(p.threads),
            critic_tape: Tape::with_threads(p.threads),
            noise: vec![0.0; p.batch * p.noise_dim],
            fake: Vec::new(),
            stacked: vec![0.0; 2 * p.batch * dim],
            interpolates: vec![0.0; p.batch * dim],
            grad_out: Vec::new(),
            grad_fake: Vec::new(),
            grad_pre: Vec::new(),
            generator_steps: 0,
        })
    }

    /// `n_critic` critic steps, then one generator step.
    fn iteration(&mut self) -> StepLosses {
        let mut losses = StepLosses::default();
        for _ in 0..self.n_critic {
            let (critic_loss, wasserstein, penalty) = self.critic_step();
            losses.critic_loss += critic_loss / self.n_critic as f32;
            losses.wasserstein += wasserstein / self.n_critic as f32;
            losses.gradient_penalty += penalty / self.n_critic as f32;
        }
        losses.generator_loss = self.generator_step();
        self.generator_steps += 1;
        losses
    }

    /// Fills `self.fake` with a fresh generated batch.
    fn generate_fake(&mut self) {
        let rng = &mut self.rng;
        self.noise
            .iter_mut()
            .for_each(|v| *v = rng.sample(StandardNormal));
        let pre = self
            .generator
            .forward(&self.noise, self.batch, &mut self.generator_tape);
        output::apply(&self.segments, self.dim, pre, &mut self.fake);
    }

    /// One critic update; returns (loss, Wasserstein estimate, penalty).
    fn critic_step(&mut self) -> (f32, f32, f32) {
        let losses = self.critic_gradients();
        self.critic_adam.step(&mut self.critic, &self.critic_grads);
        losses
    }

    /// Draws a real batch, a fake batch and interpolates, and leaves the critic loss's
    /// gradient in `critic_grads`; returns (loss, Wasserstein estimate, penalty).
    fn critic_gradients(&mut self) -> (f32, f32, f32) {
        let (batch, dim) = (self.batch, self.dim);
        let half = batch * dim;
        self.sampler.fill(
            self.data,
            dim,
            batch,
            &mut self.rng,
            &mut self.stacked[..half],
        );
        self.generate_fake();
        self.stacked[half..].copy_from_slice(&self.fake);
        self.critic_grads.iter_mut().for_each(Dense::fill_zero);

        let scores = self
            .critic
            .forward(&self.stacked, 2 * batch, &mut self.critic_tape);
        let mean_real = mean(&scores[..batch]);
        let mean_fake = mean(&scores[batch..]);
        let weight = 1.0 / batch as f32;
        self.grad_out.clear();
        self.grad_out.resize(batch, -weight);
        self.grad_out.resize(2 * batch, weight);
        self.critic.backward(
            &mut self.critic_tape,
            &self.grad_out,
            Some(&mut self.critic_grads),
            None,
        );

        let (real, fake) = self.stacked.split_at(half);
        for ((out, r), f) in self
            .interpolates
            .chunks_exact_mut(dim)
            .zip(real.chunks_exact(dim))
            .zip(fake.chunks_exact(dim))
        {
            let t: f32 = self.rng.random();
            for ((o, &r), &f) in out.iter_mut().zip(r).zip(f) {
                *o = t * r + (1.0 - t) * f;
            }
        }
        self.critic
            .forward(&self.interpolates, batch, &mut self.critic_tape);
        let penalty = self.critic.gradient_penalty(
            &mut self.critic_tape,
            self.lambda_gp,
            &mut self.critic_grads,
        );
        (
            mean_fake - mean_real + penalty,
            mean_real - mean_fake,
            penalty,
        )
    }

    /// One generator update; returns its loss.
    fn generator_step(&mut self) -> f32 {
        let loss = self.generator_gradients();
        self.generator_adam
            .step(&mut self.generator, &self.generator_grads);
        loss
    }

    /// Draws noise and leaves the generator loss's gradient in `generator_grads`; returns
    /// the loss.
    fn generator_gradients(&mut self) -> f32 {
        let batch = self.batch;
        self.generate_fake();
        self.generator_grads.iter_mut().for_each(Dense::fill_zero);

        let scores = self
            .critic
            .forward(&self.fake, batch, &mut self.critic_tape);
        let loss = -mean(scores);
        self.grad_out.clear();
        self.grad_out.resize(batch, -1.0 / batch as f32);
        self.critic.backward(
            &mut self.critic_tape,
            &self.grad_out,
            None,
            Some(&mut self.grad_fake),
        );
        output::backward(
            &self.segments,
            self.dim,
            &self.fake,
            &self.grad_fake,
            &mut self.grad_pre,
        );
        self.generator.backward(
            &mut self.generator_tape,
            &self.grad_pre,
            Some(&mut self.generator_grads),
            None,
        );
        loss
    }
}

fn mean(values: &[f32]) -> f32 {
    (values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64) as f32
}

#[cfg(test)]
mod tests;
