//! A generation request as the page sends it (JSON with the page's field names), and the checks
//! it must pass before any work starts. Plain Rust, so `cargo test` covers what the wasm API
//! enforces.

use serde::Deserialize;

use crate::diffusion::{DdpmVariance, SamplerConfig, SamplerKind};

/// Most images one request may ask for (memory grows with it). The page reads this limit from
/// the wasm module (`maxBatch()`), so there is one source.
pub const MAX_BATCH: usize = 64;
/// Most network evaluations one request may ask for.
pub const MAX_STEPS: usize = 1000;
/// Largest seed: a JS number holds integers exactly up to 2^53 - 1.
pub const MAX_SEED: f64 = 9_007_199_254_740_991.0;

/// What the page asks for; unknown fields are an error, missing ones take the page's defaults.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Label names or indices, one image each.
    pub labels: Vec<String>,
    #[serde(default = "default_sampler")]
    #[cfg_attr(
        target_arch = "wasm32",
        tsify(type = "\"dpm++\" | \"ddim\" | \"ddpm\"")
    )]
    pub sampler: String,
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Classifier-free guidance scale (1 = off).
    #[serde(default = "one")]
    pub cfg: f32,
    /// Guide only the steps whose timestep lies in `[lo, hi]`; absent: every step.
    #[serde(default)]
    pub cfg_interval: Option<[usize; 2]>,
    #[serde(default)]
    pub seed: f64,
    /// DDIM's eta.
    #[serde(default)]
    pub eta: f64,
    /// Pass the current x0 prediction as RGBA to the progress callback.
    #[serde(default)]
    pub preview: bool,
}

fn default_sampler() -> String {
    "dpm++".into()
}
fn default_steps() -> usize {
    20
}
fn one() -> f32 {
    1.0
}

impl Request {
    /// Parses the page's JSON.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("bad request: {e}"))
    }

    /// Checks the request and returns the sampler settings it asks for. Labels are resolved
    /// against the model later (`generate::resolve_labels`), which knows their names.
    pub fn sampler_config(&self) -> Result<SamplerConfig, String> {
        if self.labels.is_empty() || self.labels.len() > MAX_BATCH {
            return Err(format!(
                "give 1..={MAX_BATCH} labels (one image each), got {}",
                self.labels.len()
            ));
        }
        let kind: SamplerKind = self.sampler.parse()?;
        if !kind.allows_steps(self.steps, MAX_STEPS) {
            return Err(format!(
                "steps must be 1..={MAX_STEPS} (0 means every timestep, DDPM only), got {}",
                self.steps
            ));
        }
        if !(self.seed.fract() == 0.0 && (0.0..=MAX_SEED).contains(&self.seed)) {
            return Err(format!(
                "seed must be a whole number in 0..=2^53-1, got {}",
                self.seed
            ));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(format!("eta must be in [0, 1], got {}", self.eta));
        }
        if !self.cfg.is_finite() {
            return Err(format!(
                "guidance must be a finite number, got {}",
                self.cfg
            ));
        }
        if let Some([lo, hi]) = self.cfg_interval {
            if lo > hi {
                return Err(format!(
                    "cfg_interval [{lo}, {hi}]: the first timestep must not be above the last"
                ));
            }
        }
        Ok(SamplerConfig {
            kind,
            steps: self.steps,
            eta: self.eta,
            guidance: self.cfg,
            guidance_interval: self.cfg_interval,
            autoguidance: 1.0,
            clip_x0: false,
            ddpm_variance: DdpmVariance::Small,
            seed: self.seed as u64,
        })
    }
}
