use crate::config::{Convention, ScheduleConfig};

/// The discrete noise schedule: `x_t = sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) eps`.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    alpha_bar: Vec<f64>,
}

impl NoiseSchedule {
    /// Linear betas from `beta_start` to `beta_end` over T steps (as `torch.linspace`), indexed by
    /// the config's [`Convention`].
    pub fn new(config: &ScheduleConfig) -> Self {
        let t = config.num_timesteps;
        let betas = (0..t).map(|i| {
            let frac = if t > 1 {
                i as f64 / (t - 1) as f64
            } else {
                0.0
            };
            config.beta_start + (config.beta_end - config.beta_start) * frac
        });
        let mut product = 1.0;
        let mut alpha_bar = Vec::with_capacity(t);
        for beta in betas {
            match config.convention {
                Convention::Standard => {
                    product *= 1.0 - beta;
                    alpha_bar.push(product);
                }
                // alpha_bar[t] = prod_{i < t} alpha_i: push before multiplying.
                Convention::Shifted => {
                    alpha_bar.push(product);
                    product *= 1.0 - beta;
                }
            }
        }
        Self { alpha_bar }
    }

    /// Any decreasing table of alpha-bar values in (0, 1] (the samplers need nothing else).
    pub fn from_alpha_bar(alpha_bar: Vec<f64>) -> Self {
        assert!(!alpha_bar.is_empty(), "empty alpha-bar table");
        Self { alpha_bar }
    }

    /// T.
    pub fn num_timesteps(&self) -> usize {
        self.alpha_bar.len()
    }

    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bar[t]
    }

    pub fn alpha_bars(&self) -> &[f64] {
        &self.alpha_bar
    }

    /// `(sqrt(alpha_bar[t]), sqrt(1 - alpha_bar[t]))`, the weights of x_0 and eps in x_t.
    pub fn noise_coefficients(&self, t: usize) -> (f64, f64) {
        let a = self.alpha_bar[t];
        (a.sqrt(), (1.0 - a).sqrt())
    }

    /// Forward noising, q(x_t | x_0), on the host: `x_t = sqrt(alpha_bar[t]) x_0 +
    /// sqrt(1 - alpha_bar[t]) eps` for a batch of images stored one after another, image `i`
    /// (`x0.len() / t.len()` values) at timestep `t[i]`. Training draws its batches with it.
    pub fn q_sample(&self, x0: &[f32], eps: &[f32], t: &[usize]) -> Vec<f32> {
        assert_eq!(x0.len(), eps.len(), "x0 and eps differ in length");
        assert!(
            !t.is_empty() && x0.len().is_multiple_of(t.len()),
            "{} values for {} timesteps",
            x0.len(),
            t.len()
        );
        let per_image = x0.len() / t.len();
        x0.chunks(per_image)
            .zip(eps.chunks(per_image))
            .zip(t)
            .flat_map(|((x, e), &t)| {
                let (a, b) = self.noise_coefficients(t);
                x.iter()
                    .zip(e)
                    .map(move |(&x, &e)| a as f32 * x + b as f32 * e)
            })
            .collect()
    }

    /// The smallest timestep that carries noise (0, or 1 under the shifted convention where
    /// t = 0 is the clean image).
    pub fn first_noisy_timestep(&self) -> usize {
        self.alpha_bar
            .iter()
            .position(|&a| a < 1.0)
            .unwrap_or(self.alpha_bar.len())
    }

    /// Log signal-to-noise ratio of timestep t, `lambda = ln(sqrt(a) / sqrt(1 - a))`.
    pub fn log_snr(&self, t: usize) -> f64 {
        let a = self.alpha_bar[t];
        0.5 * (a / (1.0 - a)).ln()
    }

    /// Every noisy timestep, from T-1 down.
    fn all_noisy(&self) -> Vec<usize> {
        (self.first_noisy_timestep()..self.alpha_bar.len())
            .rev()
            .collect()
    }

    /// `steps` timesteps from T-1 down to the first noisy one, evenly spaced in t and rounded
    /// (every noisy timestep when `steps` is at least their number). DDPM's and DDIM's spacing.
    pub fn timesteps(&self, steps: usize) -> Vec<usize> {
        let (lo, hi) = (self.first_noisy_timestep(), self.alpha_bar.len() - 1);
        if steps >= hi + 1 - lo {
            return self.all_noisy();
        }
        if steps <= 1 {
            return vec![hi];
        }
        let span = (hi - lo) as f64;
        (0..steps)
            .map(|i| (hi as f64 - span * i as f64 / (steps - 1) as f64).round() as usize)
            .collect()
    }

    /// Up to `steps` timesteps from T-1 down to the first noisy one, evenly spaced in log-SNR
    /// (DPM-Solver's recommended spacing for discrete pixel models): each target lambda is
    /// mapped to the nearest timestep, and repeats are dropped, so a few fewer may come back.
    pub fn timesteps_log_snr(&self, steps: usize) -> Vec<usize> {
        let (lo, hi) = (self.first_noisy_timestep(), self.alpha_bar.len() - 1);
        if steps >= hi + 1 - lo {
            return self.all_noisy();
        }
        if steps <= 1 {
            return vec![hi];
        }
        let (l_hi, l_lo) = (self.log_snr(hi), self.log_snr(lo));
        let mut out: Vec<usize> = Vec::with_capacity(steps);
        for i in 0..steps {
            let target = l_hi + (l_lo - l_hi) * i as f64 / (steps - 1) as f64;
            // alpha-bar (and so log-SNR) falls as t grows: find the first t whose lambda is at
            // or below the target, then take whichever neighbour is nearer.
            let target_alpha_bar = 1.0 / (1.0 + (-2.0 * target).exp());
            let k = self.alpha_bar[lo..=hi].partition_point(|&a| a > target_alpha_bar);
            let above = lo + k.min(hi - lo);
            let t = match above.checked_sub(1).filter(|&b| b >= lo) {
                Some(below)
                    if (self.log_snr(below) - target).abs()
                        < (self.log_snr(above) - target).abs() =>
                {
                    below
                }
                _ => above,
            };
            if out.last().is_none_or(|&last| t < last) {
                out.push(t);
            }
        }
        out
    }
}
