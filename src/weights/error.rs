//! Why a weight file could not be used.

use super::format::METADATA_KEY;

/// Why a weight file could not be used. Every malformed input ends here, never in a panic.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightError {
    #[error("not a valid safetensors file: {0}")]
    Malformed(String),
    #[error("this safetensors file has no `{METADATA_KEY}` metadata; it was not written by dit-web (`trainer export` or `trainer import-torch`)")]
    MissingMetadata,
    #[error("weight file metadata is invalid: {0}")]
    BadMetadata(String),
    #[error("weight file format version {found} is newer than this build reads (up to {supported}); update dit-web")]
    NewerVersion { found: u64, supported: u32 },
    #[error("weight file describes an unusable model: {0}")]
    InvalidConfig(String),
    #[error("the labels list has {found} names but the model has {expected} classes")]
    LabelCount { found: usize, expected: usize },
    #[error("tensor `{0}` is missing from the weight file")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "tensor `{name}` has dtype {dtype}, which dit-web does not read (f32, f16, int8 + scales)"
    )]
    UnsupportedDtype { name: String, dtype: String },
    #[error("tensor `{0}` is not part of this model")]
    UnexpectedTensor(String),
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
}
