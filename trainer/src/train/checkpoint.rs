//! Checkpoints: model, EMA, optimizer state and the run's position (step, RNG, data order),
//! written to a temporary folder and renamed into place, so a killed run never leaves a half one.
//! Where they live is [`RunDir`]'s business.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::NoiseState;
use dit_web::Dit;

use crate::path_error::PathError;
use serde::{Deserialize, Serialize};

use crate::data::loader::LoaderState;
use crate::run_dir::{RunDir, RunError};

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
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{path}: {reason}")]
    Record { path: PathBuf, reason: String },
    #[error(transparent)]
    Run(#[from] RunError),
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let error = PathError::at(path);
    move |source| error(source).into()
}

/// Writes a checkpoint whole or not at all ([`dit_web::atomic`]) and points `latest` at it.
/// Keeps checkpoints whose step is a multiple of `keep_every` (and the newest); deletes the others.
pub fn save<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
    run: &RunDir,
    model: &Dit<B>,
    ema: &Dit<B::InnerBackend>,
    optim: &O,
    state: &RunState,
    keep_every: u64,
) -> Result<PathBuf, CheckpointError> {
    let dir = run.checkpoint(state.step);
    let folder = run.checkpoints();
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    // Whatever fails inside is reported against the checkpoint being written.
    crate::atomic::create(&dir, |tmp| -> Result<(), Box<dyn std::error::Error>> {
        std::fs::create_dir(tmp)?;
        model.clone().save_file(tmp.join("model"), &recorder())?;
        ema.clone().save_file(tmp.join("ema"), &recorder())?;
        Recorder::<B>::record(&recorder(), optim.to_record(), tmp.join("optimizer"))?;
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        std::fs::write(tmp.join("state.json"), json)?;
        Ok(())
    })
    .map_err(|e| CheckpointError::Record {
        path: dir.clone(),
        reason: format!("writing the checkpoint: {e}"),
    })?;
    let latest = run.latest_file();
    let name = dir.file_name().expect("a checkpoint folder has a name");
    crate::atomic::write(&latest, name.as_encoded_bytes()).map_err(io(&latest))?;
    prune(run, state.step, keep_every)?;
    Ok(dir)
}

/// Removes checkpoints that are neither the newest nor on the `keep_every` grid.
fn prune(run: &RunDir, newest: u64, keep_every: u64) -> Result<(), CheckpointError> {
    let folder = run.checkpoints();
    for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
        let path = entry.map_err(io(&folder))?.path();
        if let Some(step) = RunDir::checkpoint_step(&path) {
            if step != newest && (keep_every == 0 || !step.is_multiple_of(keep_every)) {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
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
