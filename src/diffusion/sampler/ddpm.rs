use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::diffusion::noise::NoiseSource;

/// The variance of DDPM's ancestral steps (Ho et al. 2020 found the two bounds alike over every
/// timestep; they differ on a few large steps).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DdpmVariance {
    /// The posterior's, beta-tilde `= b (1 - a_next) / (1 - a)`: the lower bound.
    #[default]
    #[serde(rename = "small")]
    Small,
    /// The step's beta `b = 1 - a / a_next`: the upper bound, improved-diffusion's default for
    /// models that do not learn their variance.
    #[serde(rename = "large")]
    Large,
}

impl FromStr for DdpmVariance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(Self::Small),
            "large" => Ok(Self::Large),
            other => Err(format!(
                "unknown DDPM variance `{other}` (expected small or large)"
            )),
        }
    }
}

/// One ancestral step from alpha-bar `a` to `a_next` with the mean of the Gaussian posterior
/// q(x_next | x, x0), `sqrt(a_next) b / (1 - a) x0 + sqrt(a / a_next) (1 - a_next) / (1 - a) x`,
/// where `b = 1 - a / a_next` is the step's beta. The variance is the posterior's
/// `b (1 - a_next) / (1 - a)` (DDPM's beta-tilde) or `b` itself; the last step (to `a_next = 1`)
/// adds no noise with either, so the output is clean.
pub(super) fn step(
    x: &[f32],
    x0: &[f32],
    a: f64,
    a_next: f64,
    variance: DdpmVariance,
    noise: NoiseSource,
) -> Vec<f32> {
    let beta = 1.0 - a / a_next;
    let c_x0 = (a_next.sqrt() * beta / (1.0 - a)) as f32;
    let c_x = ((a / a_next).sqrt() * (1.0 - a_next) / (1.0 - a)) as f32;
    let var = match variance {
        _ if a_next >= 1.0 => 0.0,
        DdpmVariance::Small => beta * (1.0 - a_next) / (1.0 - a),
        DdpmVariance::Large => beta,
    };
    let std = var.sqrt() as f32;
    let mean = x.iter().zip(x0).map(|(&x, &x0)| c_x0 * x0 + c_x * x);
    if std > 0.0 {
        mean.zip(noise.draw()).map(|(m, z)| m + std * z).collect()
    } else {
        mean.collect()
    }
}
