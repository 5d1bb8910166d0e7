//! A request's checks before any work starts: its labels by name or index, and a step count the
//! model's schedule can give.

use super::error::GenerateError;
use crate::diffusion::{NoiseSchedule, SamplerConfig, SamplerKind};

/// Resolves labels given by name (`male`, `7`) or by index into label ids.
pub fn resolve_labels<S: AsRef<str>>(
    names: &[String],
    requested: &[S],
) -> Result<Vec<usize>, GenerateError> {
    requested
        .iter()
        .map(|r| {
            let r = r.as_ref().trim();
            names
                .iter()
                .position(|n| n == r)
                .or_else(|| r.parse::<usize>().ok().filter(|&i| i < names.len()))
                .ok_or_else(|| GenerateError::UnknownLabel {
                    label: r.to_string(),
                    valid: names.to_vec(),
                })
        })
        .collect()
}

/// The most sampler steps `schedule` can give: one per noisy timestep (t = 0 is the clean image
/// under the shifted convention).
pub fn max_steps(schedule: &NoiseSchedule) -> usize {
    schedule.num_timesteps() - schedule.first_noisy_timestep()
}

/// Refuses a number of sampler steps the model's schedule cannot give: 0 (but for DDPM, where 0
/// means every timestep) or more than [`max_steps`]. Without this a sampler would quietly take
/// one step, or every timestep, instead of what was asked.
pub fn check_steps(schedule: &NoiseSchedule, config: &SamplerConfig) -> Result<(), GenerateError> {
    let max = max_steps(schedule);
    if config.kind.allows_steps(config.steps, max) {
        return Ok(());
    }
    Err(GenerateError::BadSteps {
        steps: config.steps,
        max,
        hint: if config.kind == SamplerKind::Ddpm {
            " (or 0: every timestep)"
        } else {
            ""
        },
    })
}
