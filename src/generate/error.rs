//! Why a generation request was refused.

use crate::weights::WeightError;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("unknown label `{label}`; valid labels: {}", valid.join(", "))]
    UnknownLabel { label: String, valid: Vec<String> },
    #[error("guidance {0} needs a model trained with label dropout (it has no null label); use guidance 1")]
    NoNullLabel(f32),
    #[error("no labels given: nothing to generate")]
    NoLabels,
    #[error("{steps} sampler steps: this model has {max} noisy timesteps, so give 1..={max} steps{hint}")]
    BadSteps {
        steps: usize,
        max: usize,
        /// What 0 would mean, where it means something.
        hint: &'static str,
    },
    #[error("guidance must be a finite number, got {0}")]
    BadGuidance(f32),
    #[error("guidance interval [{0}, {1}]: the first timestep must not be above the last")]
    BadGuidanceInterval(usize, usize),
    #[error("the guiding model does not fit the model it guides: {0}")]
    GuideMismatch(String),
    #[error("autoguidance {0} needs a guiding model (a weaker model of the same images); use autoguidance 1")]
    NoGuide(f32),
    #[error(transparent)]
    Weights(#[from] WeightError),
}
