//! A run folder: the one place that knows where a training run keeps each of its files.
//!
//! ```text
//! <run>/run.json              the run's settings (crate::train::config::RunConfig reads and
//!                             writes it)
//! <run>/metrics.jsonl         one MetricsRow per optimizer step
//! <run>/checkpoints/latest    the name of the newest checkpoint folder
//! <run>/checkpoints/step-N/   model, ema, optimizer (burn records), state.json
//! <run>/samples/step-N.png    fixed-noise sample grids
//! <run>/loss.png              the loss curve, redrawn from metrics.jsonl
//! <run>/progress.gif          the sample grids in step order
//! ```

use std::path::{Path, PathBuf};

use crate::path_error::PathError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("no checkpoint in {0} (expected checkpoints/latest, written by `trainer train`)")]
    NoCheckpoint(PathBuf),
}

/// A run folder (it need not exist yet).
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("run.json")
    }

    pub fn metrics_file(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The folder of the checkpoint after `step` optimizer steps.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(format!("step-{step:08}"))
    }

    /// The step of a checkpoint folder named by [`RunDir::checkpoint`].
    pub fn checkpoint_step(folder: &Path) -> Option<u64> {
        folder
            .file_name()?
            .to_str()?
            .strip_prefix("step-")?
            .parse()
            .ok()
    }

    /// The file naming the newest checkpoint.
    pub fn latest_file(&self) -> PathBuf {
        self.checkpoints().join("latest")
    }

    /// The newest checkpoint's folder.
    pub fn latest_checkpoint(&self) -> Result<PathBuf, RunError> {
        let name = std::fs::read_to_string(self.latest_file())
            .map_err(|_| RunError::NoCheckpoint(self.root.clone()))?;
        Ok(self.checkpoints().join(name.trim()))
    }

    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The sample grid drawn after `step` optimizer steps.
    pub fn sample_grid(&self, step: u64) -> PathBuf {
        self.samples().join(format!("step-{step:08}.png"))
    }

    pub fn loss_plot(&self) -> PathBuf {
        self.root.join("loss.png")
    }

    pub fn progress_gif(&self) -> PathBuf {
        self.root.join("progress.gif")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_folders_name_their_step() {
        let run = RunDir::new("r");
        assert_eq!(RunDir::checkpoint_step(&run.checkpoint(1234)), Some(1234));
        assert_eq!(
            RunDir::checkpoint_step(Path::new("r/checkpoints/latest")),
            None
        );
        assert_eq!(
            RunDir::checkpoint_step(&crate::atomic::temporary_path(&run.checkpoint(5))),
            None
        );
        assert!(matches!(
            run.latest_checkpoint(),
            Err(RunError::NoCheckpoint(_))
        ));
    }
}
