//! The Adam optimiser (Kingma and Ba, 2015) over the layers of an [`Mlp`].

use super::mlp::{Dense, Mlp};

/// Adam's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub learning_rate: f32,
    /// Decay of the first-moment average.
    pub beta1: f32,
    /// Decay of the second-moment average.
    pub beta2: f32,
    /// Added to the root of the second moment so that the step stays finite.
    pub epsilon: f32,
}

/// Adam's state for one network: the moment averages and the step count.
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    steps: i32,
    first: Vec<Dense>,
    second: Vec<Dense>,
}

impl Adam {
    /// Fresh optimiser state for `net`.
    pub fn new(net: &Mlp, config: AdamConfig) -> Self {
        Self {
            config,
            steps: 0,
            first: net.zeros_like(),
            second: net.zeros_like(),
        }
    }

    /// Moves every parameter of `net` one step against `grads` (shaped like `net`).
    pub fn step(&mut self, net: &mut Mlp, grads: &[Dense]) {
        assert_eq!(grads.len(), net.layers.len(), "gradient layer count");
        self.steps = self.steps.saturating_add(1);
        let AdamConfig {
            learning_rate,
            beta1,
            beta2,
            epsilon,
        } = self.config;
        let correction1 = 1.0 - beta1.powi(self.steps);
        let correction2 = 1.0 - beta2.powi(self.steps);
        let step_size = learning_rate / correction1;
        let inv_sqrt_correction2 = 1.0 / correction2.sqrt();

        let update = |param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                *p -= step_size * *m / (v.sqrt() * inv_sqrt_correction2 + epsilon);
            }
        };
        for (((layer, grad), m), v) in net
            .layers
            .iter_mut()
            .zip(grads)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            update(&mut layer.w, &grad.w, &mut m.w, &mut v.w);
            update(&mut layer.b, &grad.b, &mut m.b, &mut v.b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_weight(value: f32) -> Mlp {
        Mlp {
            layers: vec![Dense {
                in_dim: 1,
                out_dim: 1,
                w: vec![value],
                b: vec![0.0],
            }],
            leaky_slope: 0.2,
        }
    }

    fn grad(w: f32) -> Vec<Dense> {
        vec![Dense {
            in_dim: 1,
            out_dim: 1,
            w: vec![w],
            b: vec![0.0],
        }]
    }

    const CONFIG: AdamConfig = AdamConfig {
        learning_rate: 0.1,
        beta1: 0.5,
        beta2: 0.9,
        epsilon: 1e-8,
    };

    #[test]
    fn first_step_moves_each_parameter_by_the_learning_rate() {
        // With bias correction, m_hat = g and v_hat = g^2 after one step: the move is lr * sign(g).
        for g in [3.0_f32, -0.01, 250.0] {
            let mut net = one_weight(1.0);
            let mut adam = Adam::new(&net, CONFIG);
            adam.step(&mut net, &grad(g));
            let expected = 1.0 - 0.1 * g.signum();
            assert!((net.layers[0].w[0] - expected).abs() < 1e-6, "g = {g}");
            assert_eq!(
                net.layers[0].b[0], 0.0,
                "zero gradient leaves the bias alone"
            );
        }
    }

    #[test]
    fn second_step_follows_the_moment_recurrences() {
        let mut net = one_weight(0.0);
        let mut adam = Adam::new(&net, CONFIG);
        adam.step(&mut net, &grad(1.0));
        adam.step(&mut net, &grad(-2.0));
        // By hand: m2 = 0.5*0.5 + 0.5*(-2) = -0.75, v2 = 0.9*0.1 + 0.1*4 = 0.49,
        // m_hat = -0.75 / 0.75 = -1, v_hat = 0.49 / 0.19, step = 0.1 * -1 / sqrt(v_hat).
        let second = -0.1 / (0.49_f32 / 0.19).sqrt();
        let expected = -0.1 - second;
        assert!((net.layers[0].w[0] - expected).abs() < 1e-6);
    }

    #[test]
    fn minimises_a_quadratic() {
        let mut net = one_weight(5.0);
        let mut adam = Adam::new(&net, CONFIG);
        for _ in 0..500 {
            let w = net.layers[0].w[0];
            adam.step(&mut net, &grad(2.0 * (w - 1.5)));
        }
        assert!((net.layers[0].w[0] - 1.5).abs() < 1e-2);
    }
}
