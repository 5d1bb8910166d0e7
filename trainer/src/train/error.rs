//! Why a training run stopped before its last step.

use crate::path_error::PathError;

use super::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::run_dir::RunError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Config(String),
    /// The backend asked for cannot run here (not built in, no driver or adapter).
    #[error("{0}")]
    Backend(String),
    #[error("loss became {loss} at step {step}; stopped. The last good checkpoint is {last_good}")]
    Diverged {
        step: u64,
        loss: f64,
        last_good: String,
    },
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("writing a sample grid: {0}")]
    Samples(#[from] crate::report::samples::GridError),
    #[error("data-parallel training: {0}")]
    Parallel(String),
}
