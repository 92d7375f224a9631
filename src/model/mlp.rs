//! A small dense network over `matrixmultiply`: forward and backward passes, and the
//! gradient penalty of WGAN-GP with its exact second-order parameter gradient.
//!
//! Matrices are row-major `f32`. A batch of `batch` rows of width `d` is a slice of
//! `batch * d` values; a layer's weight is `in_dim x out_dim`, so `Z = X W + b`.
//! Hidden layers apply LeakyReLU; the last layer is linear. Large matrix products can be
//! split by rows of the result over a few scoped threads; each value is still computed by
//! one thread in the same order, so results are bit-for-bit the same for any thread count.

use rand::Rng;

/// One fully connected layer: `z = x w + b` with `w` stored `in_dim x out_dim` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// Weights, `in_dim * out_dim` values, row `i` holds the weights leaving input `i`.
    pub w: Vec<f32>,
    /// Biases, `out_dim` values.
    pub b: Vec<f32>,
}

impl Dense {
    /// A layer of zeros, used as a gradient or optimiser-moment accumulator.
    pub fn zeros(in_dim: usize, out_dim: usize) -> Self {
        Self {
            in_dim,
            out_dim,
            w: vec![0.0; in_dim * out_dim],
            b: vec![0.0; out_dim],
        }
    }

    /// Sets every weight and bias to zero.
    pub fn fill_zero(&mut self) {
        self.w.fill(0.0);
        self.b.fill(0.0);
    }
}

/// A multilayer perceptron: LeakyReLU after every layer but the last.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// The layers, input first.
    pub layers: Vec<Dense>,
    /// Slope of LeakyReLU for negative inputs.
    pub leaky_slope: f32,
}

/// Values kept from a forward pass for the backward pass and the gradient penalty.
#[derive(Debug, Default)]
pub struct Tape {
    /// Threads for the matrix products (0 counts as 1).
    threads: usize,
    batch: usize,
    /// `inputs[l]` is the input of layer `l` (the batch itself for `l = 0`).
    inputs: Vec<Vec<f32>>,
    /// `pre[l]` is the pre-activation output of layer `l`.
    pre: Vec<Vec<f32>>,
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
    /// `penalty_v[l]` is `u_l * d_l` of the input-gradient chain for hidden layer `l`.
    penalty_v: Vec<Vec<f32>>,
    penalty_u: Vec<f32>,
    penalty_u_next: Vec<f32>,
}

impl Tape {
    /// An empty tape whose passes split large matrix products over `threads` threads.
    pub fn with_threads(threads: usize) -> Self {
        Self {
            threads,
            ..Self::default()
        }
    }

    /// The pre-activation output of the last layer from the latest forward pass.
    pub fn output(&self) -> &[f32] {
        self.pre.last().map_or(&[], Vec::as_slice)
    }
}

impl Mlp {
    /// A network with the given layer widths (`widths[0]` is the input width), weights
    /// drawn He-uniform for LeakyReLU and biases zero.
    pub fn new(widths: &[usize], leaky_slope: f32, rng: &mut impl Rng) -> Self {
        let gain_sq = 2.0 / (1.0 + leaky_slope * leaky_slope);
        let layers = widths
            .windows(2)
            .map(|pair| {
                let (in_dim, out_dim) = (pair[0], pair[1]);
                let bound = (3.0 * gain_sq / in_dim as f32).sqrt();
                let mut layer = Dense::zeros(in_dim, out_dim);
                for w in &mut layer.w {
                    *w = rng.random_range(-bound..bound);
                }
                layer
            })
            .collect();
        Self {
            layers,
            leaky_slope,
        }
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Zeroed accumulators with this network's shapes.
    pub fn zeros_like(&self) -> Vec<Dense> {
        self.layers
            .iter()
            .map(|l| Dense::zeros(l.in_dim, l.out_dim))
            .collect()
    }

    /// Runs `batch` rows of `x` through the network, recording what the backward pass needs;
    /// returns the last layer's linear output (`batch x out_dim`).
    pub fn forward<'t>(&self, x: &[f32], batch: usize, tape: &'t mut Tape) -> &'t [f32] {
        assert_eq!(x.len(), batch * self.in_dim(), "mlp input shape");
        let depth = self.layers.len();
        tape.batch = batch;
        let threads = tape.threads;
        tape.inputs.resize_with(depth, Vec::new);
        tape.pre.resize_with(depth, Vec::new);
        tape.inputs[0].clear();
        tape.inputs[0].extend_from_slice(x);

        for (l, layer) in self.layers.iter().enumerate() {
            let z = &mut tape.pre[l];
            z.resize(batch * layer.out_dim, 0.0);
            affine(layer, &tape.inputs[l], batch, z, threads);
            if l + 1 < depth {
                let h = &mut tape.inputs[l + 1];
                h.clear();
                h.extend(z.iter().map(|&v| leaky(v, self.leaky_slope)));
            }
        }
        tape.output()
    }

    /// Backpropagates `grad_out` (d loss / d output, `batch x out_dim`) through the pass on
    /// `tape`. Adds the parameter gradients to `grads` when given, and writes d loss / d input
    /// into `grad_in` when given.
    pub fn backward(
        &self,
        tape: &mut Tape,
        grad_out: &[f32],
        mut grads: Option<&mut [Dense]>,
        grad_in: Option<&mut Vec<f32>>,
    ) {
        let (batch, threads) = (tape.batch, tape.threads);
        assert_eq!(
            grad_out.len(),
            batch * self.out_dim(),
            "mlp output gradient shape"
        );
        tape.delta.clear();
        tape.delta.extend_from_slice(grad_out);

        for (l, layer) in self.layers.iter().enumerate().rev() {
            if let Some(grads) = grads.as_deref_mut() {
                let (x, delta) = (&tape.inputs[l], &tape.delta);
                accumulate_layer_grad(layer, x, delta, batch, &mut grads[l], threads);
            }
            let wants_input = l > 0 || grad_in.is_some();
            if !wants_input {
                break;
            }
            tape.delta_prev.resize(batch * layer.in_dim, 0.0);
            gemm(
                (batch, layer.out_dim, layer.in_dim),
                (&tape.delta, false),
                (&layer.w, true),
                &mut tape.delta_prev,
                0.0,
                threads,
            );
            if l > 0 {
                let slope = self.leaky_slope;
                for (d, &z) in tape.delta_prev.iter_mut().zip(&tape.pre[l - 1]) {
                    *d *= leaky_grad(z, slope);
                }
            }
            std::mem::swap(&mut tape.delta, &mut tape.delta_prev);
        }
        if let Some(grad_in) = grad_in {
            grad_in.clear();
            grad_in.extend_from_slice(&tape.delta);
        }
    }

    /// The WGAN-GP penalty `lambda * mean_i (|grad_x f(x_i)| - 1)^2` for the rows of the
    /// forward pass on `tape`; adds its gradient with respect to every parameter to `grads`
    /// and returns the penalty.
    ///
    /// The network must have one output. Given the LeakyReLU masks `d_l` (piecewise constant),
    /// the input gradient `g = W_1 D_1 ... W_L` is linear in each weight, so its parameter
    /// gradient is exact: the chain is walked down once to form `g`, then back up with the
    /// adjoint `dP/dg`. Biases only move the masks and so get no gradient (almost everywhere).
    pub fn gradient_penalty(&self, tape: &mut Tape, lambda: f32, grads: &mut [Dense]) -> f32 {
        assert_eq!(self.out_dim(), 1, "gradient penalty needs a scalar critic");
        let (batch, threads) = (tape.batch, tape.threads);
        let hidden = self.layers.len() - 1;
        self.input_gradient_chain(tape);

        let penalty = penalty_adjoint(&mut tape.penalty_u, self.in_dim(), batch, lambda);

        let mut ubar = std::mem::take(&mut tape.penalty_u);
        for (l, layer) in self.layers[..hidden].iter().enumerate() {
            let v = &tape.penalty_v[l];
            gemm(
                (layer.in_dim, batch, layer.out_dim),
                (&ubar, true),
                (v, false),
                &mut grads[l].w,
                1.0,
                threads,
            );
            let next = &mut tape.penalty_u_next;
            next.resize(batch * layer.out_dim, 0.0);
            gemm(
                (batch, layer.in_dim, layer.out_dim),
                (&ubar, false),
                (&layer.w, false),
                next,
                0.0,
                threads,
            );
            for (u, &z) in next.iter_mut().zip(&tape.pre[l]) {
                *u *= leaky_grad(z, self.leaky_slope);
            }
            std::mem::swap(&mut ubar, next);
        }
        let top = &mut grads[hidden].w;
        for row in ubar.chunks_exact(top.len()) {
            for (g, &u) in top.iter_mut().zip(row) {
                *g += u;
            }
        }
        tape.penalty_u = ubar;
        penalty
    }

    /// Walks the input gradient `d f / d x` down the recorded masks: leaves `g` in
    /// `tape.penalty_u` (`batch x in_dim`) and each hidden layer's `u_l * d_l` in
    /// `tape.penalty_v`.
    fn input_gradient_chain(&self, tape: &mut Tape) {
        let (batch, threads) = (tape.batch, tape.threads);
        let hidden = self.layers.len() - 1;
        let top = &self.layers[hidden];
        tape.penalty_v.resize_with(hidden, Vec::new);

        let u = &mut tape.penalty_u;
        u.clear();
        for _ in 0..batch {
            u.extend_from_slice(&top.w);
        }
        for l in (0..hidden).rev() {
            let layer = &self.layers[l];
            let v = &mut tape.penalty_v[l];
            v.clear();
            v.extend(
                tape.penalty_u
                    .iter()
                    .zip(&tape.pre[l])
                    .map(|(&u, &z)| u * leaky_grad(z, self.leaky_slope)),
            );
            tape.penalty_u.resize(batch * layer.in_dim, 0.0);
            gemm(
                (batch, layer.out_dim, layer.in_dim),
                (v, false),
                (&layer.w, true),
                &mut tape.penalty_u,
                0.0,
                threads,
            );
        }
    }
}

/// Turns the input gradients `g` (`batch x dim`, in place) into `dP/dg` and returns the
/// penalty `P = lambda * mean_i (|g_i| - 1)^2`.
fn penalty_adjoint(g: &mut [f32], dim: usize, batch: usize, lambda: f32) -> f32 {
    let mut penalty = 0.0_f64;
    let scale = 2.0 * lambda / batch as f32;
    for row in g.chunks_exact_mut(dim) {
        let norm = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        penalty += (norm - 1.0) * (norm - 1.0);
        // The penalty is not differentiable at g = 0; take the zero subgradient there.
        let coef = if norm > 1e-12 {
            scale * ((norm - 1.0) / norm) as f32
        } else {
            0.0
        };
        for v in row {
            *v *= coef;
        }
    }
    (f64::from(lambda) * penalty / batch as f64) as f32
}

/// `z = x w + b` for one layer.
fn affine(layer: &Dense, x: &[f32], batch: usize, z: &mut [f32], threads: usize) {
    for row in z.chunks_exact_mut(layer.out_dim) {
        row.copy_from_slice(&layer.b);
    }
    gemm(
        (batch, layer.in_dim, layer.out_dim),
        (x, false),
        (&layer.w, false),
        z,
        1.0,
        threads,
    );
}

/// Adds `x^T delta` to the weight gradient and the column sums of `delta` to the bias's.
fn accumulate_layer_grad(
    layer: &Dense,
    x: &[f32],
    delta: &[f32],
    batch: usize,
    grad: &mut Dense,
    threads: usize,
) {
    gemm(
        (layer.in_dim, batch, layer.out_dim),
        (x, true),
        (delta, false),
        &mut grad.w,
        1.0,
        threads,
    );
    for row in delta.chunks_exact(layer.out_dim) {
        for (g, &d) in grad.b.iter_mut().zip(row) {
            *g += d;
        }
    }
}

/// LeakyReLU.
pub fn leaky(z: f32, slope: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        slope * z
    }
}

/// Derivative of LeakyReLU (taking the negative side's slope at zero).
fn leaky_grad(z: f32, slope: f32) -> f32 {
    if z > 0.0 {
        1.0
    } else {
        slope
    }
}

/// Products with fewer multiply-adds than this stay on one thread: below it, starting a
/// thread costs more than it saves.
const PARALLEL_MIN_MULTIPLY_ADDS: usize = 1 << 21;

/// `c = op(a) op(b) + beta c` for row-major matrices, with `op(a)` of shape `m x k` and
/// `op(b)` of shape `k x n`; a `true` flag means the slice holds the transpose. Large
/// products are split by rows of `c` over up to `threads` threads.
fn gemm(
    (m, k, n): (usize, usize, usize),
    (a, a_transposed): (&[f32], bool),
    (b, b_transposed): (&[f32], bool),
    c: &mut [f32],
    beta: f32,
    threads: usize,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm shapes"
    );
    // Strides of op(a): moving one row down, one column right.
    let (rsa, csa) = if a_transposed { (1, m) } else { (k, 1) };
    let (rsb, csb) = if b_transposed { (1, k) } else { (n, 1) };
    let parts = threads.clamp(1, m.max(1));
    if parts == 1 || m * k * n < PARALLEL_MIN_MULTIPLY_ADDS {
        sgemm(
            (m, k, n),
            (a, rsa, csa),
            (b, rsb, csb),
            &mut c[..m * n],
            beta,
        );
        return;
    }
    let rows_per_part = m.div_ceil(parts);
    std::thread::scope(|scope| {
        for (part, c_rows) in c[..m * n].chunks_mut(rows_per_part * n).enumerate() {
            let first_row = part * rows_per_part;
            let rows = c_rows.len() / n;
            let a_part = &a[first_row * rsa..];
            let mut job = move || {
                sgemm(
                    (rows, k, n),
                    (a_part, rsa, csa),
                    (b, rsb, csb),
                    c_rows,
                    beta,
                )
            };
            if first_row + rows == m {
                job();
            } else {
                scope.spawn(job);
            }
        }
    });
}

/// One call of `matrixmultiply::sgemm` with explicit strides; `c` is `m x n` contiguous.
fn sgemm(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    c: &mut [f32],
    beta: f32,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.saturating_sub(1)) * rs + (cols.saturating_sub(1)) * cs
    };
    assert!(
        m == 0 || k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len()),
        "gemm operand strides"
    );
    assert_eq!(c.len(), m * n, "gemm result shape");
    let stride = |s: usize| isize::try_from(s).expect("matrix stride fits isize");
    // SAFETY: the asserts above keep every element the strides reach inside `a`, `b` and
    // `c`, and `c` is borrowed mutably so it aliases neither operand.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            stride(rsa),
            stride(csa),
            b.as_ptr(),
            stride(rsb),
            stride(csb),
            beta,
            c.as_mut_ptr(),
            stride(n),
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// An independent `f64` evaluation of the network, written as plain loops.
    fn forward_f64(net: &Mlp, x: &[f64], batch: usize) -> Vec<f64> {
        let mut h = x.to_vec();
        for (l, layer) in net.layers.iter().enumerate() {
            let mut z = vec![0.0; batch * layer.out_dim];
            for i in 0..batch {
                for j in 0..layer.out_dim {
                    let mut s = f64::from(layer.b[j]);
                    for p in 0..layer.in_dim {
                        s += h[i * layer.in_dim + p] * f64::from(layer.w[p * layer.out_dim + j]);
                    }
                    z[i * layer.out_dim + j] = s;
                }
            }
            if l + 1 < net.layers.len() {
                let slope = f64::from(net.leaky_slope);
                z.iter_mut()
                    .for_each(|v| *v = if *v > 0.0 { *v } else { slope * *v });
            }
            h = z;
        }
        h
    }

    /// The penalty in `f64`, with the input gradient taken by central differences in `x`.
    fn penalty_f64(net: &Mlp, x: &[f64], batch: usize, lambda: f64) -> f64 {
        let dim = net.in_dim();
        let step = 1e-6;
        let mut total = 0.0;
        for i in 0..batch {
            let row = &x[i * dim..(i + 1) * dim];
            let mut norm_sq = 0.0;
            for p in 0..dim {
                let mut plus = row.to_vec();
                let mut minus = row.to_vec();
                plus[p] += step;
                minus[p] -= step;
                let d =
                    (forward_f64(net, &plus, 1)[0] - forward_f64(net, &minus, 1)[0]) / (2.0 * step);
                norm_sq += d * d;
            }
            total += (norm_sq.sqrt() - 1.0).powi(2);
        }
        lambda * total / batch as f64
    }

    fn random_net(widths: &[usize], seed: u64) -> Mlp {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = Mlp::new(widths, 0.2, &mut rng);
        for layer in &mut net.layers {
            for b in &mut layer.b {
                *b = rng.random_range(-0.3..0.3);
            }
        }
        net
    }

    fn random_batch(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.5..1.5)).collect()
    }

    fn param_mut(net: &mut Mlp, layer: usize, idx: usize) -> &mut f32 {
        let layer = &mut net.layers[layer];
        let weights = layer.w.len();
        if idx < weights {
            &mut layer.w[idx]
        } else {
            &mut layer.b[idx - weights]
        }
    }

    /// Central differences of `loss` with respect to every parameter of `net`, in `f64`.
    /// The step is small so that no LeakyReLU mask flips between the two evaluations.
    fn numeric_grads(net: &Mlp, loss: impl Fn(&Mlp) -> f64) -> Vec<f64> {
        let step = 1e-4_f32;
        let mut out = Vec::new();
        let mut probe = net.clone();
        for l in 0..net.layers.len() {
            for idx in 0..net.layers[l].w.len() + net.layers[l].b.len() {
                let original = *param_mut(&mut probe, l, idx);
                *param_mut(&mut probe, l, idx) = original + step;
                let plus = loss(&probe);
                *param_mut(&mut probe, l, idx) = original - step;
                let minus = loss(&probe);
                *param_mut(&mut probe, l, idx) = original;
                // Divide by the step that f32 rounding actually took.
                let actual_step = f64::from(original + step) - f64::from(original - step);
                out.push((plus - minus) / actual_step);
            }
        }
        out
    }

    fn flatten(grads: &[Dense]) -> Vec<f64> {
        grads
            .iter()
            .flat_map(|g| g.w.iter().chain(&g.b).map(|&v| f64::from(v)))
            .collect()
    }

    fn assert_close(analytic: &[f64], numeric: &[f64], what: &str) {
        assert_eq!(analytic.len(), numeric.len());
        let diff: f64 = analytic
            .iter()
            .zip(numeric)
            .map(|(a, n)| (a - n).powi(2))
            .sum();
        let scale: f64 = numeric.iter().map(|n| n * n).sum();
        let relative = (diff / scale).sqrt();
        assert!(relative < 1e-3, "{what}: relative error {relative}");
        for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
            let tolerance = 2e-3 * n.abs().max(1e-2);
            assert!(
                (a - n).abs() <= tolerance,
                "{what}: parameter {i}: {a} vs {n}"
            );
        }
    }

    #[test]
    fn forward_matches_an_independent_f64_evaluation() {
        let net = random_net(&[5, 7, 6, 3], 1);
        let x = random_batch(4 * 5, 2);
        let mut tape = Tape::default();
        let out = net.forward(&x, 4, &mut tape).to_vec();
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for (a, b) in out.iter().zip(forward_f64(&net, &x64, 4)) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let net = random_net(&[4, 6, 5, 2], 3);
        let batch = 5;
        let x = random_batch(batch * 4, 4);
        let weights = random_batch(batch * 2, 5);
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let loss = |m: &Mlp| -> f64 {
            let out = forward_f64(m, &x64, batch);
            out.iter()
                .zip(&weights)
                .map(|(o, &w)| o * f64::from(w))
                .sum()
        };

        let mut tape = Tape::default();
        net.forward(&x, batch, &mut tape);
        let mut grads = net.zeros_like();
        let mut grad_in = Vec::new();
        net.backward(&mut tape, &weights, Some(&mut grads), Some(&mut grad_in));
        assert_close(&flatten(&grads), &numeric_grads(&net, loss), "parameters");

        // The input gradient, against differences in each input value.
        for idx in 0..x.len() {
            let mut plus = x64.clone();
            let mut minus = x64.clone();
            plus[idx] += 1e-6;
            minus[idx] -= 1e-6;
            let dot = |o: Vec<f64>| -> f64 {
                o.iter().zip(&weights).map(|(o, &w)| o * f64::from(w)).sum()
            };
            let numeric = (dot(forward_f64(&net, &plus, batch))
                - dot(forward_f64(&net, &minus, batch)))
                / 2e-6;
            let analytic = f64::from(grad_in[idx]);
            assert!(
                (analytic - numeric).abs() < 1e-4 * numeric.abs().max(1.0),
                "input {idx}"
            );
        }
    }

    #[test]
    fn gradient_penalty_matches_finite_differences_for_every_parameter() {
        for (widths, seed) in [
            (&[4usize, 8, 6, 1][..], 10),
            (&[3, 5, 1][..], 11),
            (&[3, 1][..], 12),
        ] {
            let net = random_net(widths, seed);
            let batch = 6;
            let dim = widths[0];
            let x = random_batch(batch * dim, seed + 100);
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let lambda = 10.0;

            let mut tape = Tape::default();
            net.forward(&x, batch, &mut tape);
            let mut grads = net.zeros_like();
            let penalty = net.gradient_penalty(&mut tape, lambda, &mut grads);

            let reference = penalty_f64(&net, &x64, batch, f64::from(lambda));
            assert!(
                (f64::from(penalty) - reference).abs() < 1e-4 * reference.max(1.0),
                "penalty {penalty} vs {reference}"
            );
            let numeric = numeric_grads(&net, |m| penalty_f64(m, &x64, batch, f64::from(lambda)));
            assert_close(&flatten(&grads), &numeric, "penalty gradient");
        }
    }

    #[test]
    fn gradient_penalty_accumulates_onto_existing_gradients() {
        let net = random_net(&[3, 4, 1], 20);
        let x = random_batch(2 * 3, 21);
        let mut tape = Tape::default();
        net.forward(&x, 2, &mut tape);
        let mut once = net.zeros_like();
        net.gradient_penalty(&mut tape, 10.0, &mut once);
        let mut twice = net.zeros_like();
        net.gradient_penalty(&mut tape, 10.0, &mut twice);
        net.gradient_penalty(&mut tape, 10.0, &mut twice);
        for (a, b) in flatten(&once).iter().zip(flatten(&twice)) {
            assert!((2.0 * a - b).abs() <= 1e-6 * a.abs().max(1.0));
        }
    }
}
