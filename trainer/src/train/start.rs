//! Where a run starts: fresh weights from the seed (or `--init-weights`), or the run folder's
//! latest checkpoint when resuming; and how another device's worker makes its replica the same way.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::NoiseRng;
use dit_web::model::OwnKernels;
use dit_web::Dit;

use crate::path_error::PathError;

use super::checkpoint::{self, RunState};
use super::config::RunConfig;
use super::error::TrainError;
use super::optim::{adamw, Adam};
use super::parallel::Replica;
use crate::data::loader::LoaderState;
use crate::run_dir::RunDir;

/// Where a run starts: fresh weights (or `init_weights`), or the run's latest
/// checkpoint when resuming.
pub(super) struct Start<B: AutodiffBackend, O> {
    pub model: Dit<B>,
    pub ema: Dit<B::InnerBackend>,
    pub optim: O,
    pub state: RunState,
}

pub(super) fn start<B: AutodiffBackend>(
    run_config: &RunConfig,
    run: &RunDir,
    resume: bool,
    kernels: OwnKernels,
    device: &B::Device,
) -> Result<Start<B, Adam<B>>, TrainError> {
    let (config, model_config) = (&run_config.train, &run_config.model);
    let mut model: Dit<B> =
        crate::backend::seeded::<B, _>(device, config.seed, || model_config.init(device))
            .with_kernels(kernels);
    let mut ema: Dit<B::InnerBackend> = model.valid();
    let mut optim = adamw::<B>();
    let mut state = RunState {
        step: 0,
        rng: NoiseRng::new(config.seed, 1).state(),
        loader: LoaderState::start(config.seed),
        last_loss: None,
    };
    let latest = resume.then(|| run.latest_checkpoint().ok()).flatten();
    if let (Some(path), None) = (&config.init_weights, &latest) {
        model = start_weights(path, model_config, device)?.with_kernels(kernels);
        ema = model.valid();
    }
    if let Some(dir) = latest {
        let saved = RunConfig::read(run)?;
        if saved.model != run_config.model || saved.schedule != run_config.schedule {
            return Err(TrainError::Config(format!(
                "{} trains another network or schedule ({}); resume it with the same \
                 preset and label dropout, or train into a new folder",
                run.root().display(),
                run.config_file().display()
            )));
        }
        state = checkpoint::load_state(&dir)?;
        model = checkpoint::load_weights(&dir, "model", model, device)?;
        ema = checkpoint::load_weights(&dir, "ema", ema, device)?;
        optim = checkpoint::load_optimizer(&dir, optim, device)?;
    }
    Ok(Start {
        model,
        ema,
        optim,
        state,
    })
}

/// How another device's worker makes its replica: as the leader's, from the same seed or the
/// same checkpoint (the leader's weights then reach every replica by broadcast anyway).
pub(super) struct Follower<'a> {
    pub run_config: &'a RunConfig,
    pub run: &'a RunDir,
    pub resume: bool,
    pub kernels: OwnKernels,
}

impl<B: AutodiffBackend> Replica<B> for Follower<'_> {
    type Optim = Adam<B>;
    fn start(&self, device: &B::Device) -> Result<(Dit<B>, Adam<B>), String> {
        let start = start::<B>(self.run_config, self.run, self.resume, self.kernels, device)
            .map_err(|e| e.to_string())?;
        Ok((start.model, start.optim))
    }
}

/// The weights of the file at `path`, which must hold the network `model_config` describes.
fn start_weights<B: AutodiffBackend>(
    path: &Path,
    model_config: &dit_web::DitConfig,
    device: &B::Device,
) -> Result<Dit<B>, TrainError> {
    let bytes = std::fs::read(path).map_err(PathError::at(path))?;
    let bad = |reason: String| TrainError::Config(format!("{}: {reason}", path.display()));
    let file = dit_web::weights::WeightFile::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.meta.model != *model_config {
        return Err(bad(
            "its network is not the one this run trains (start from weights of the same preset \
             and network flags)"
                .into(),
        ));
    }
    let (model, _) = file
        .into_model::<B>(device)
        .map_err(|e| bad(e.to_string()))?;
    Ok(model)
}
