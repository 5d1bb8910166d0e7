//! The training loop: epsilon-prediction MSE at uniform timesteps, AdamW with warmup + cosine,
//! EMA after every step, step-level checkpoints that resume exactly.

pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod ema;
pub mod lr;
pub mod lr_find;
pub mod step;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::{Dit, Preset};
use serde::{Deserialize, Serialize};

use crate::data::loader::{Batches, Loader, LoaderState, Prefetcher};
use crate::data::Dataset;
use crate::report::metrics::{Metrics, MetricsRow};
use crate::run_dir::{RunConfig, RunDir, RunError};
use checkpoint::RunState;
use lr::LrSchedule;

/// How a run trains (what it trains is the rest of [`RunConfig`], saved with it as `run.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    /// Images per forward/backward pass; gradients of the passes add up to the whole batch's
    /// (0: the whole batch in one pass). Older run.json files have none.
    #[serde(default)]
    pub micro_batch: usize,
    pub lr: LrSchedule,
    pub ema_decay: f64,
    pub ema_warmup: bool,
    pub label_dropout: f64,
    /// Global gradient-norm clipping (as PyTorch's clip_grad_norm_), if set.
    pub grad_clip: Option<f64>,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub keep_every: u64,
    pub sample_every: u64,
    /// Stop when a loss exceeds this factor times the running average (NaN/inf always stop).
    pub spike_factor: f64,
    /// A weight file (`trainer export`) whose weights a new run starts from, model and EMA
    /// alike, instead of a random draw: training continued with a fresh optimizer and schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<PathBuf>,
    /// Seconds this call may train: once its speed is measured the schedule's total is cut to
    /// the steps that fit the rest (`steps` stays the most), so the cosine ends inside the
    /// budget ([`budget`]). run.json then records the steps chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget: Option<f64>,
    /// Steps between read-backs of the loss and gradient norm (at least 1). Each read waits for
    /// the device, so on a GPU reading every step keeps the host from queueing work ahead; the
    /// steps' metrics, progress and divergence check then come in groups. Sample grids,
    /// checkpoints and the end of the run always read first. Older run.json files have none.
    #[serde(default = "every_step")]
    pub read_every: u64,
}

fn every_step() -> u64 {
    1
}

impl TrainConfig {
    /// The settings a run of `preset` starts from: the reference's for its dataset (MNIST: 20,000
    /// steps of 64 at 1e-3 after 100 warmup steps; CelebA: 100,000 of 112 at 1e-4 after 200),
    /// cosine decay, EMA 0.9999, the preset's label dropout, checkpoints every 500 steps (kept
    /// every 5,000), sample grids every 1,000.
    pub fn defaults(preset: &Preset) -> Self {
        let mnist = preset.dataset == "mnist";
        let steps = if mnist { 20_000 } else { 100_000 };
        Self {
            steps,
            batch_size: if mnist { 64 } else { 112 },
            micro_batch: 0,
            lr: LrSchedule {
                max_lr: if mnist { 1e-3 } else { 1e-4 },
                warmup: if mnist { 100 } else { 200 },
                total: steps,
                decay: lr::Decay::Cosine,
            },
            ema_decay: 0.9999,
            ema_warmup: false,
            label_dropout: preset.model.class_dropout,
            grad_clip: None,
            seed: 0,
            checkpoint_every: 500,
            keep_every: 5000,
            sample_every: 1000,
            spike_factor: 10.0,
            init_weights: None,
            time_budget: None,
            read_every: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Config(String),
    #[error("loss became {loss} at step {step}; stopped. The last good checkpoint is {last_good}")]
    Diverged {
        step: u64,
        loss: f64,
        last_good: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing a sample grid: {0}")]
    Samples(#[from] dit_web::generate::GenerateError),
}

/// What a finished (or stopped) call of [`train`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// (step, loss) of every step run by this call.
    pub losses: Vec<(u64, f64)>,
    pub final_step: u64,
    /// Whether `on_step` stopped the run before its last step (its checkpoint is then at
    /// `final_step`, and `--resume` continues from there).
    pub stopped: bool,
    /// Images the loader could not read (each attempt counted), and the first reasons.
    pub skipped: (u64, Vec<String>),
}

/// Trains `run_config`'s network on `data` into the folder `run`, resuming from its latest
/// checkpoint when `resume` is set (the folder's `run.json` must then describe the same network).
/// `on_step` sees each step's metrics (for a progress bar); when it answers `Break` (the user
/// pressed Ctrl-C), that step is checkpointed and the run stops there, losing nothing.
pub fn train<B: AutodiffBackend, D: Dataset>(
    run_config: &RunConfig,
    data: &D,
    run: &RunDir,
    resume: bool,
    device: &B::Device,
    mut on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    let config = &run_config.train;
    let model_config = &run_config.model;
    if data.image_len() != model_config.image_len() {
        return Err(TrainError::Config(format!(
            "the data has {} values per image, the preset `{}` expects {}",
            data.image_len(),
            run_config.preset,
            model_config.image_len()
        )));
    }
    if config.batch_size == 0 || config.batch_size > data.len() {
        return Err(TrainError::Config(format!(
            "batch size {} for {} images",
            config.batch_size,
            data.len()
        )));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let schedule = NoiseSchedule::new(&run_config.schedule);

    let mut model: Dit<B> =
        crate::backend::seeded::<B, _>(device, config.seed, || model_config.init(device));
    let mut ema: Dit<B::InnerBackend> = model.valid();
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, Dit<B>>();
    let mut state = RunState {
        step: 0,
        rng: NoiseRng::new(config.seed, 1).state(),
        loader: LoaderState::start(config.seed),
        last_loss: None,
    };
    let latest = resume.then(|| run.latest_checkpoint().ok()).flatten();
    if let (Some(path), None) = (&config.init_weights, &latest) {
        model = start_weights(path, model_config, device)?;
        ema = model.valid();
    }
    if let Some(dir) = latest {
        let saved = run.read_config()?;
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
    run.write_config(run_config)?;
    // The schedule this call trains to: `config`'s, or shorter under a time budget.
    let mut total = config.steps;
    let mut lr_schedule = config.lr;
    let mut time_budget = config
        .time_budget
        .map(|seconds| budget::TimeBudget::new(seconds, Instant::now(), state.step));
    let metrics_file = run.metrics_file();
    let mut metrics = Metrics::open(&metrics_file).map_err(io(&metrics_file))?;

    let mut rng = NoiseRng::from_state(&state.rng);
    let n = config.batch_size;
    // The loader runs two batches ahead on its own thread for as long as this scope lives.
    std::thread::scope(|scope| {
        let mut loader = Prefetcher::spawn(scope, Loader::resume(data, state.loader), n, 2);
        let mut losses = Vec::new();
        let mut average: Option<f64> = state.last_loss;
        let mut last_good = run
            .latest_checkpoint()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "none (no checkpoint yet)".into());
        let mut stopped = false;
        // Steps run but not read back yet, and when the last read-back ended.
        let mut unread: Vec<(u64, f64, step::StepStats<B::InnerBackend>)> = Vec::new();
        let mut read_at = Instant::now();

        while state.step < total {
            let step = state.step;
            let batch = step::Batch::<B>::draw(
                &mut loader,
                &mut rng,
                &schedule,
                model_config,
                n,
                config.label_dropout,
                device,
            );
            let lr = lr_schedule.lr(step);
            let (next, stats) = step::optimizer_step(
                model,
                &mut optim,
                batch,
                config.micro_batch,
                lr,
                config.grad_clip,
            );
            model = next;
            ema = ema::update(
                ema,
                &model.valid(),
                ema::decay_at(config.ema_decay, config.ema_warmup, step),
            );
            state.step += 1;
            unread.push((state.step, lr, stats));

            let due = |every: u64| every > 0 && state.step.is_multiple_of(every);
            let mut at_end = state.step == total;
            let read_now = unread.len() as u64 >= config.read_every.max(1)
                || at_end
                || due(config.sample_every)
                || due(config.checkpoint_every);
            let mut stop = false;
            if read_now {
                let (rows, stats): (Vec<(u64, f64)>, Vec<_>) = unread
                    .drain(..)
                    .map(|(step, lr, stats)| ((step, lr), stats))
                    .unzip();
                let values = step::StepStats::read_all(stats);
                let now = Instant::now();
                // The device's time for these steps, shared out evenly.
                let images_per_sec =
                    (n * rows.len()) as f64 / now.duration_since(read_at).as_secs_f64();
                read_at = now;
                for ((step, lr), (loss, grad_norm)) in rows.into_iter().zip(values) {
                    let spike =
                        average.is_some_and(|avg| loss > config.spike_factor * avg.max(1e-3));
                    if !loss.is_finite() || spike {
                        return Err(TrainError::Diverged {
                            step: step - 1,
                            loss,
                            last_good,
                        });
                    }
                    average = Some(average.map_or(loss, |a| 0.98 * a + 0.02 * loss));
                    losses.push((step - 1, loss));
                    let row = MetricsRow {
                        step,
                        loss,
                        lr,
                        grad_norm,
                        images_per_sec,
                    };
                    metrics.append(&row).map_err(io(&metrics_file))?;
                    stop |= on_step(&row).is_break();
                }

                // Before the next step, the time budget may shorten the schedule, even to end
                // here (then this step gets the last sample grid and checkpoint below).
                if let Some(fitted) = time_budget
                    .as_mut()
                    .and_then(|b| b.before_step(state.step, now, config.steps))
                {
                    total = fitted;
                    lr_schedule.total = total;
                    let mut recorded = run_config.clone();
                    recorded.train.steps = total;
                    recorded.train.lr.total = total;
                    run.write_config(&recorded)?;
                    eprintln!(
                        "time budget {} s: training to step {total}",
                        config.time_budget.unwrap_or_default()
                    );
                    at_end = state.step == total;
                }
            }
            if config.sample_every > 0 && (due(config.sample_every) || at_end) {
                crate::report::samples::write_grid(
                    &ema,
                    &schedule,
                    2,
                    &run.sample_grid(state.step),
                )?;
                // Pictures for people; a failure to draw one must not stop the run.
                if let Err(e) = crate::report::refresh(run) {
                    eprintln!("warning: could not redraw loss.png / progress.gif: {e}");
                }
            }
            if due(config.checkpoint_every) || at_end || stop {
                state.rng = rng.state();
                state.loader = loader.state();
                state.last_loss = average;
                let dir = checkpoint::save(run, &model, &ema, &optim, &state, config.keep_every)?;
                last_good = dir.display().to_string();
            }
            if stop && !at_end {
                stopped = true;
                break;
            }
        }
        let (count, reasons) = loader.skipped();
        Ok(TrainOutcome {
            losses,
            final_step: state.step,
            stopped,
            skipped: (count, reasons.to_vec()),
        })
    })
}

/// The weights of the file at `path`, which must hold the network `model_config` describes.
fn start_weights<B: AutodiffBackend>(
    path: &Path,
    model_config: &dit_web::DitConfig,
    device: &B::Device,
) -> Result<Dit<B>, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
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

/// [`train`] on the backend the user chose, on the dataset `config` names, read from `data`
/// (MNIST: the four IDX files; CelebA: the official layout). Datasets load before the backend
/// starts, so a wrong folder fails fast.
pub fn train_on(
    backend: crate::backend::BackendChoice,
    config: &RunConfig,
    data: &Path,
    run: &RunDir,
    resume: bool,
    on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
) -> Result<TrainOutcome, Box<dyn std::error::Error>> {
    use crate::backend::run_on;
    use crate::data::celeba::{CelebA, Partition};
    use crate::data::mnist::{Mnist, Split};

    struct Task<'a, D, F> {
        config: &'a RunConfig,
        data: &'a D,
        run: &'a RunDir,
        resume: bool,
        on_step: F,
    }
    impl<D: Dataset, F: FnMut(&MetricsRow) -> ControlFlow<()>> crate::backend::OnBackend
        for Task<'_, D, F>
    {
        type Output = Result<TrainOutcome, TrainError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            train::<B, D>(
                self.config,
                self.data,
                self.run,
                self.resume,
                &device,
                self.on_step,
            )
        }
    }
    fn go<D: Dataset>(
        backend: crate::backend::BackendChoice,
        config: &RunConfig,
        data: &D,
        run: &RunDir,
        resume: bool,
        on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
    ) -> Result<TrainOutcome, Box<dyn std::error::Error>> {
        let task = Task {
            config,
            data,
            run,
            resume,
            on_step,
        };
        Ok(run_on(backend, task)??)
    }
    match config.dataset.as_str() {
        "mnist" => {
            let mnist = Mnist::load(data, Split::Train)?;
            go(backend, config, &mnist, run, resume, on_step)
        }
        "celeba" => {
            let celeba = CelebA::load(data, Partition::Train)?;
            go(backend, config, &celeba, run, resume, on_step)
        }
        other => Err(format!("no loader for the dataset `{other}`").into()),
    }
}
