//! Learning-rate schedules: linear warmup, then cosine decay to zero or a constant rate.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    Cosine,
    Constant,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub max_lr: f64,
    pub warmup: u64,
    pub total: u64,
    pub decay: Decay,
}

impl LrSchedule {
    /// The rate for optimizer step `step` (0-based): `max * (step + 1) / warmup` during warmup,
    /// then `max * (1 + cos(pi * progress)) / 2` over the remaining steps (or `max`).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.max_lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.decay {
            Decay::Constant => self.max_lr,
            Decay::Cosine => {
                let span = self.total.saturating_sub(self.warmup).max(1) as f64;
                let progress = ((step - self.warmup) as f64 / span).min(1.0);
                0.5 * self.max_lr * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}
