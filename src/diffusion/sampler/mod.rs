//! Samplers over any alpha-bar table, as a host-side state machine:
//! ask [`Sampler::timestep`] and [`Sampler::x`], run the network, hand its noise prediction to
//! [`Sampler::advance`], repeat until [`Sampler::is_done`]. The driver may be sync (native) or
//! async (the browser); the maths is the same code.

mod ddim;
mod ddpm;
mod dpm_solver;

pub use ddpm::DdpmVariance;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::noise::{NoiseRng, NoiseSource};
use super::schedule::NoiseSchedule;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SamplerKind {
    /// DDPM ancestral sampling; by default over every timestep, as the reference does.
    #[serde(rename = "ddpm")]
    Ddpm,
    /// DDIM with noise level eta (0: deterministic), any number of steps.
    #[serde(rename = "ddim")]
    Ddim,
    /// DPM-Solver++(2M), a second-order multistep solver in data prediction, on timesteps evenly
    /// spaced in log-SNR; ~20 steps suffice.
    #[default]
    #[serde(rename = "dpm++")]
    DpmSolverPP,
}

impl SamplerKind {
    pub const NAMES: [&'static str; 3] = ["dpm++", "ddim", "ddpm"];

    /// The one rule for a number of sampler steps: 1..=`max`, or 0 for DDPM, which then takes
    /// every timestep (the reference's sampler).
    pub fn allows_steps(self, steps: usize, max: usize) -> bool {
        (1..=max).contains(&steps) || (steps == 0 && self == Self::Ddpm)
    }
}

impl FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            "dpm++" | "dpm-solver++" | "dpmpp" => Ok(Self::DpmSolverPP),
            other => Err(format!(
                "unknown sampler `{other}` (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ddpm => "ddpm",
            Self::Ddim => "ddim",
            Self::DpmSolverPP => "dpm++",
        })
    }
}

/// Everything that picks one image out of a trained model besides its labels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct SamplerConfig {
    pub kind: SamplerKind,
    /// Network evaluations; for DDPM, `0` means every timestep.
    pub steps: usize,
    /// DDIM's noise level (0 = deterministic, 1 = DDPM-like).
    pub eta: f64,
    /// Classifier-free guidance scale; 1 disables guidance (no unconditional pass).
    pub guidance: f32,
    /// Guide only the steps whose timestep lies in `[lo, hi]` (Kynkäänniemi et al. 2024,
    /// "Applying guidance in a limited interval"); the other steps run the conditional network
    /// alone, on half the images. `None`: every step is guided.
    pub guidance_interval: Option<[usize; 2]>,
    /// Autoguidance scale (1 = off): with a guiding model (a worse model of the same images),
    /// every step moves `(a - 1) (eps(x, y) - eps_guide(x, y))` further from it; see
    /// `generate::Denoiser`.
    pub autoguidance: f32,
    /// Clamp the predicted clean image to [-1, 1] at every step.
    pub clip_x0: bool,
    /// DDPM's step variance (the other samplers ignore it).
    pub ddpm_variance: DdpmVariance,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            kind: SamplerKind::DpmSolverPP,
            steps: 20,
            eta: 0.0,
            guidance: 1.0,
            guidance_interval: None,
            autoguidance: 1.0,
            clip_x0: false,
            ddpm_variance: DdpmVariance::Small,
            seed: 0,
        }
    }
}

/// One step of the plan: evaluate at timestep `t` and move from `alpha_bar` to `alpha_bar_next`
/// (1.0 for the last step: the clean image).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedStep {
    pub t: usize,
    pub alpha_bar: f64,
    pub alpha_bar_next: f64,
}

/// What a progress callback sees after each step.
#[derive(Debug)]
pub struct StepInfo<'a> {
    /// Steps done so far (1-based after the first step).
    pub step: usize,
    pub total: usize,
    pub t: usize,
    /// The current prediction of the clean images, `[batch * C * H * W]`.
    pub x0: &'a [f32],
}

/// The sampling loop's state for one batch.
#[derive(Clone, Debug)]
pub struct Sampler {
    kind: SamplerKind,
    eta: f64,
    clip_x0: bool,
    ddpm_variance: DdpmVariance,
    plan: Vec<PlannedStep>,
    index: usize,
    x: Vec<f32>,
    image_len: usize,
    rngs: Vec<NoiseRng>,
    /// DPM-Solver++'s memory: the previous x0 prediction and step size in log-SNR.
    history: Option<(Vec<f32>, f64)>,
}

impl Sampler {
    /// Starts from pure noise: image `i` draws from stream `i` of the seed.
    pub fn new(
        schedule: &NoiseSchedule,
        config: &SamplerConfig,
        batch: usize,
        image_len: usize,
    ) -> Self {
        Self::new_at(schedule, config, 0..batch, image_len)
    }

    /// Starts from pure noise for images `streams` of a larger request: image `i` of the request
    /// draws from stream `i` of the seed, so a request split into several batches gives the same
    /// images as one batch.
    pub fn new_at(
        schedule: &NoiseSchedule,
        config: &SamplerConfig,
        streams: std::ops::Range<usize>,
        image_len: usize,
    ) -> Self {
        let batch = streams.len();
        let mut rngs: Vec<NoiseRng> = streams
            .map(|i| NoiseRng::new(config.seed, i as u64))
            .collect();
        let mut x = vec![0f32; batch * image_len];
        for (rng, image) in rngs.iter_mut().zip(x.chunks_mut(image_len)) {
            rng.fill_normal(image);
        }
        Self::from_parts(schedule, config, x, image_len, rngs)
    }

    /// Starts from a given x_T (tests, and re-running a known noise).
    pub fn with_initial_noise(
        schedule: &NoiseSchedule,
        config: &SamplerConfig,
        x_t: Vec<f32>,
        image_len: usize,
    ) -> Self {
        assert!(
            image_len > 0 && x_t.len().is_multiple_of(image_len),
            "x_T is not a whole number of images"
        );
        let rngs = (0..x_t.len() / image_len)
            .map(|i| NoiseRng::new(config.seed, i as u64))
            .collect();
        Self::from_parts(schedule, config, x_t, image_len, rngs)
    }

    fn from_parts(
        schedule: &NoiseSchedule,
        config: &SamplerConfig,
        x: Vec<f32>,
        image_len: usize,
        rngs: Vec<NoiseRng>,
    ) -> Self {
        let steps = match (config.kind, config.steps) {
            (SamplerKind::Ddpm, 0) => usize::MAX,
            (_, s) => s.max(1),
        };
        let ts = match config.kind {
            SamplerKind::DpmSolverPP => schedule.timesteps_log_snr(steps),
            _ => schedule.timesteps(steps),
        };
        let plan = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| PlannedStep {
                t,
                alpha_bar: schedule.alpha_bar(t),
                alpha_bar_next: ts.get(i + 1).map_or(1.0, |&n| schedule.alpha_bar(n)),
            })
            .collect();
        Self {
            kind: config.kind,
            eta: config.eta,
            clip_x0: config.clip_x0,
            ddpm_variance: config.ddpm_variance,
            plan,
            index: 0,
            x,
            image_len,
            rngs,
            history: None,
        }
    }

    pub fn plan(&self) -> &[PlannedStep] {
        &self.plan
    }

    pub fn num_steps(&self) -> usize {
        self.plan.len()
    }

    pub fn steps_done(&self) -> usize {
        self.index
    }

    pub fn is_done(&self) -> bool {
        self.index >= self.plan.len()
    }

    /// The timestep the network must be evaluated at next, `None` when done.
    pub fn timestep(&self) -> Option<usize> {
        self.plan.get(self.index).map(|s| s.t)
    }

    /// The current noisy batch (the network's input).
    pub fn x(&self) -> &[f32] {
        &self.x
    }

    pub fn batch(&self) -> usize {
        self.x.len() / self.image_len
    }

    /// Takes the network's noise prediction for [`Sampler::x`] at [`Sampler::timestep`], moves
    /// to the next timestep, and returns the clean-image prediction of this step.
    ///
    /// # Panics
    /// If called after the last step or with `eps` of the wrong length.
    pub fn advance(&mut self, eps: &[f32]) -> Vec<f32> {
        let step = *self
            .plan
            .get(self.index)
            .expect("advance() after the last step");
        assert_eq!(eps.len(), self.x.len(), "eps has the wrong length");
        let (a, a_next) = (step.alpha_bar, step.alpha_bar_next);
        let (sa, s1a) = (a.sqrt() as f32, (1.0 - a).sqrt() as f32);

        // x0 = (x - sqrt(1 - a) eps) / sqrt(a); with clipping, eps is re-derived from the
        // clamped x0 so the two stay consistent.
        let mut x0: Vec<f32> = self
            .x
            .iter()
            .zip(eps)
            .map(|(&x, &e)| (x - s1a * e) / sa)
            .collect();
        let eps: Vec<f32> = if self.clip_x0 {
            x0.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
            self.x
                .iter()
                .zip(&x0)
                .map(|(&x, &x0)| (x - sa * x0) / s1a)
                .collect()
        } else {
            eps.to_vec()
        };

        let noise = NoiseSource {
            rngs: &mut self.rngs,
            image_len: self.image_len,
        };
        let next = match self.kind {
            SamplerKind::Ddpm => ddpm::step(&self.x, &x0, a, a_next, self.ddpm_variance, noise),
            SamplerKind::Ddim => ddim::step(&x0, &eps, a, a_next, self.eta, noise),
            SamplerKind::DpmSolverPP => {
                dpm_solver::step(&self.x, &x0, a, a_next, &mut self.history)
            }
        };
        self.x = next;
        self.index += 1;
        x0
    }

    /// The finished batch, `[batch * C * H * W]` in [-1, 1] (roughly: no clamping is applied).
    pub fn into_output(self) -> Vec<f32> {
        self.x
    }
}
