//! Why a checkpoint could not be converted.

use crate::export::ExportError;
use crate::path_error::PathError;

/// How far the checkpoint's position table may differ from ours (float32 rounding of the
/// reference's own computation stays far below this).
pub(super) const POSITION_TOLERANCE: f32 = 1e-3;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("not a PyTorch checkpoint written by torch.save (PyTorch 1.6+ zip format): {0}")]
    NotACheckpoint(String),
    #[error("cannot read the checkpoint's data.pkl: {0}")]
    Pickle(String),
    #[error("the checkpoint has no `{key}` entry (it has: {})", found.join(", "))]
    MissingEntry { key: String, found: Vec<String> },
    #[error("`{key}` is not a state dict: {reason}")]
    NotAStateDict { key: String, reason: String },
    #[error("model_args: {0}")]
    ModelArgs(String),
    #[error("cannot tell the model's configuration from the checkpoint: {0}")]
    Config(String),
    #[error("the checkpoint does not match preset `{preset}`: {}", diffs.join("; "))]
    PresetMismatch { preset: String, diffs: Vec<String> },
    #[error("tensor `{name}` is missing from `{state}`")]
    MissingTensor { state: String, name: String },
    #[error("`{state}` holds tensor `{name}`, which the reference DiT does not have")]
    UnexpectedTensor { state: String, name: String },
    #[error("tensor `{name}` has shape {found:?}, the model needs {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("positional_embeddings differ from dit-web's fixed sin-cos table by up to {max_diff:.3e} (tolerance {POSITION_TOLERANCE:e}): the checkpoint does not use the reference's position encoding")]
    PositionTable { max_diff: f32 },
    #[error(transparent)]
    Export(#[from] ExportError),
}
