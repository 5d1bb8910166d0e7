//! Checkpoints: model, EMA, optimizer state and the run's position (step, RNG, data order),
//! written to a temporary folder and renamed into place, so a killed run never leaves a half one.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::NoiseState;
use dit_web::Dit;
use serde::{Deserialize, Serialize};

use crate::data::loader::LoaderState;

/// Everything besides tensors that a resumed run needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunState {
    /// Optimizer steps done.
    pub step: u64,
    pub rng: NoiseState,
    pub loader: LoaderState,
    /// The last loss, for the spike check after a resume.
    pub last_loss: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Record { path: PathBuf, reason: String },
    #[error("no checkpoint in {0} (expected a `latest` file written by `trainer train`)")]
    NoCheckpoint(PathBuf),
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder of checkpoint `step`.
pub fn step_dir(run: &Path, step: u64) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step:08}"))
}

/// Writes a checkpoint atomically and points `latest` at it. Keeps checkpoints whose step is a
/// multiple of `keep_every` (and the newest); deletes the others.
pub fn save<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
    run: &Path,
    model: &Dit<B>,
    ema: &Dit<B::InnerBackend>,
    optim: &O,
    state: &RunState,
    keep_every: u64,
) -> Result<PathBuf, CheckpointError> {
    let dir = step_dir(run, state.step);
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let record_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: burn::record::RecorderError| CheckpointError::Record {
            path,
            reason: e.to_string(),
        }
    };
    model
        .clone()
        .save_file(tmp.join("model"), &recorder())
        .map_err(record_err(&tmp))?;
    ema.clone()
        .save_file(tmp.join("ema"), &recorder())
        .map_err(record_err(&tmp))?;
    Recorder::<B>::record(&recorder(), optim.to_record(), tmp.join("optimizer"))
        .map_err(record_err(&tmp))?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    std::fs::write(tmp.join("state.json"), json).map_err(io(&tmp))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;

    let latest = run.join("checkpoints").join("latest");
    let latest_tmp = latest.with_extension("tmp");
    std::fs::write(
        &latest_tmp,
        dir.file_name().unwrap().to_string_lossy().as_bytes(),
    )
    .map_err(io(&latest_tmp))?;
    std::fs::rename(&latest_tmp, &latest).map_err(io(&latest))?;
    prune(run, state.step, keep_every)?;
    Ok(dir)
}

/// Removes checkpoints that are neither the newest nor on the `keep_every` grid.
fn prune(run: &Path, newest: u64, keep_every: u64) -> Result<(), CheckpointError> {
    let folder = run.join("checkpoints");
    for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
        let path = entry.map_err(io(&folder))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(step) = step {
            if step != newest && (keep_every == 0 || !step.is_multiple_of(keep_every)) {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

/// The folder `latest` points at.
pub fn latest(run: &Path) -> Result<PathBuf, CheckpointError> {
    let latest = run.join("checkpoints").join("latest");
    let name = std::fs::read_to_string(&latest)
        .map_err(|_| CheckpointError::NoCheckpoint(run.to_path_buf()))?;
    Ok(run.join("checkpoints").join(name.trim()))
}

pub fn load_state(dir: &Path) -> Result<RunState, CheckpointError> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Record {
        path,
        reason: e.to_string(),
    })
}

/// Loads the model or EMA weights of a checkpoint into `model` (which fixes the structure).
pub fn load_weights<B: burn::tensor::backend::Backend>(
    dir: &Path,
    which: &str,
    model: Dit<B>,
    device: &B::Device,
) -> Result<Dit<B>, CheckpointError> {
    let path = dir.join(which);
    model
        .load_file(&path, &recorder(), device)
        .map_err(|e| CheckpointError::Record {
            path,
            reason: e.to_string(),
        })
}

pub fn load_optimizer<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
    dir: &Path,
    optim: O,
    device: &B::Device,
) -> Result<O, CheckpointError> {
    let path = dir.join("optimizer");
    let record = Recorder::<B>::load(&recorder(), path.clone(), device).map_err(|e| {
        CheckpointError::Record {
            path,
            reason: e.to_string(),
        }
    })?;
    Ok(optim.load_record(record))
}
