//! What `import-torch` converts and how it describes the result.

use dit_web::config::Preset;

/// What to convert and how to describe it.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The preset the checkpoint must match (its labels, dataset and schedule length are used).
    /// Without one, everything comes from the tensors and `model_args`.
    pub preset: Option<Preset>,
    /// Convert `model_state` instead of `ema_state`.
    pub raw: bool,
    /// Overrides the number of diffusion timesteps (otherwise `model_args`, then the preset).
    pub num_timesteps: Option<usize>,
}
