//! The training loop: epsilon-prediction MSE at uniform timesteps, AdamW with warmup + cosine,
//! EMA after every step, step-level checkpoints that resume exactly.

pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod lr;
pub mod lr_find;
pub mod mesh;
pub mod parallel;
pub mod signal;
pub mod step;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::{Dit, PathError};

use crate::data::loader::{Batches, Loader, LoaderState, Prefetcher};
use crate::data::Dataset;
use crate::report::metrics::{Metrics, MetricsRow};
use crate::run_dir::{RunDir, RunError};
use checkpoint::RunState;
use config::{RunConfig, TrainConfig};
use lr::LrSchedule;
use parallel::Topology;

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
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("writing a sample grid: {0}")]
    Samples(#[from] dit_web::generate::GenerateError),
    #[error("data-parallel training: {0}")]
    Parallel(String),
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
    on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    let solo = Topology::default();
    train_on_devices::<B, D>(
        run_config,
        data,
        run,
        resume,
        &solo,
        vec![device.clone()],
        on_step,
    )
}

/// [`train`] on several devices at once (data-parallel, [`parallel`]): `devices` are this
/// machine's (the first is the leader's), `topology` says how many machines take part and which
/// this is. Only machine 0 writes the run folder; every machine reads its data and, to resume,
/// the run folder's checkpoints.
pub fn train_on_devices<B: AutodiffBackend, D: Dataset>(
    run_config: &RunConfig,
    data: &D,
    run: &RunDir,
    resume: bool,
    topology: &Topology,
    devices: Vec<B::Device>,
    mut on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    let (config, model_config) = (&run_config.train, &run_config.model);
    check_data(run_config, data)?;
    let check = topology.check(config.batch_size, devices.len());
    check.map_err(TrainError::Config)?;
    let (device, writes) = (&devices[0], topology.writes());
    let schedule = NoiseSchedule::new(&run_config.schedule);
    let Start {
        mut model,
        mut ema,
        mut optim,
        mut state,
    } = start::<B>(run_config, run, resume, device)?;
    if writes {
        run_config.write(run)?;
    }
    let follower = Follower {
        run_config,
        run,
        resume,
    };
    let mut plan = Plan::new(config, state.step);
    let cadence = Cadence::new(config);
    let mut monitor = Monitor::open(run, config, state.last_loss, writes)?;
    let mut rng = NoiseRng::from_state(&state.rng);
    let n = config.batch_size;
    // The loader runs two batches ahead on its own thread for as long as this scope lives, and
    // so do the other devices' workers.
    std::thread::scope(|scope| {
        let mut loader = Prefetcher::spawn(scope, Loader::resume(data, state.loader), n, 2);
        let mut replicas = Replicas::start(scope, topology, &follower, &devices, config)?;
        model = replicas.join(model)?;
        let mut stopped = false;
        while state.step < plan.total {
            let batch = step::HostBatch::draw(
                &mut loader,
                &mut rng,
                &schedule,
                model_config,
                n,
                config.label_dropout,
            );
            let lr = plan.lr.lr(state.step);
            let stats;
            (model, stats) = replicas.step(model, &mut optim, batch, lr)?;
            let decay = ema::decay_at(config.ema_decay, config.ema_warmup, state.step);
            ema = ema::update(ema, &model.valid(), decay);
            state.step += 1;
            monitor.push(state.step, lr, stats);

            let mut at_end = state.step == plan.total;
            let mut stop = false;
            if cadence.read(state.step, monitor.unread(), at_end) {
                stop = monitor.read(&mut on_step)?;
                // Before the next step: stop, or a shorter schedule (even one that ends here,
                // which then gets the last sample grid and checkpoint below).
                let fitted;
                (stop, fitted) = plan.at_read(state.step, monitor.read_at, stop, &mut replicas)?;
                if fitted && writes {
                    record_budgeted_steps(run, run_config, plan.total)?;
                }
                at_end = state.step == plan.total;
            }
            if writes && cadence.sample(state.step, at_end) {
                samples(run, &ema, &schedule, state.step)?;
            }
            if writes && cadence.checkpoint(state.step, at_end, stop) {
                state.rng = rng.state();
                state.loader = loader.state();
                state.last_loss = monitor.average;
                let dir = checkpoint::save(run, &model, &ema, &optim, &state, config.keep_every)?;
                monitor.last_good = dir.display().to_string();
            }
            if stop && !at_end {
                stopped = true;
                break;
            }
        }
        replicas.finish()?;
        let (count, reasons) = loader.skipped();
        Ok(TrainOutcome {
            losses: monitor.losses,
            final_step: state.step,
            stopped,
            skipped: (count, reasons.to_vec()),
        })
    })
}

/// The schedule a call trains to: the run's, or shorter under a time budget.
struct Plan {
    total: u64,
    lr: LrSchedule,
    budget: Option<budget::TimeBudget>,
    /// `--steps`: the most a budget may fit.
    most: u64,
}

impl Plan {
    fn new(config: &TrainConfig, first_step: u64) -> Self {
        Self {
            total: config.steps,
            lr: config.lr,
            budget: config
                .time_budget
                .map(|seconds| budget::TimeBudget::new(seconds, Instant::now(), first_step)),
            most: config.steps,
        }
    }

    /// At a read-back after `step`: fits the schedule to the time budget and, with several
    /// devices, agrees with them on it and on stopping. Returns (stop, whether the total moved).
    fn at_read<B: AutodiffBackend>(
        &mut self,
        step: u64,
        now: Instant,
        stop: bool,
        replicas: &mut Replicas<'_, B>,
    ) -> Result<(bool, bool), TrainError> {
        let fitted = self
            .budget
            .as_mut()
            .and_then(|b| b.before_step(step, now, self.most));
        let (stop, total) = replicas.agree(stop, fitted.unwrap_or(self.total))?;
        let moved = total != self.total;
        if moved {
            self.total = total;
            self.lr.total = total;
        }
        Ok((stop, moved))
    }
}

/// This machine's devices: the leader's alone, or a data-parallel group ([`parallel`]).
struct Replicas<'a, B: AutodiffBackend> {
    device: B::Device,
    group: Option<parallel::Group<'a>>,
    micro: usize,
    grad_clip: Option<f64>,
}

impl<'a, B: AutodiffBackend> Replicas<'a, B> {
    fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        topology: &'a Topology,
        follower: &'env Follower<'env>,
        devices: &[B::Device],
        config: &TrainConfig,
    ) -> Result<Self, TrainError>
    where
        'a: 'scope,
    {
        let group = match topology.is_parallel() {
            false => None,
            true => Some(
                parallel::Group::start::<B, _>(
                    scope,
                    topology,
                    follower,
                    devices.to_vec(),
                    config.grad_clip,
                    config.micro_batch,
                )
                .map_err(TrainError::Parallel)?,
            ),
        };
        Ok(Self {
            device: devices[0].clone(),
            group,
            micro: config.micro_batch,
            grad_clip: config.grad_clip,
        })
    }

    /// The leader's weights on every device.
    fn join(&mut self, model: Dit<B>) -> Result<Dit<B>, TrainError> {
        match &mut self.group {
            None => Ok(model),
            Some(group) => group
                .join(&self.device, model)
                .map_err(TrainError::Parallel),
        }
    }

    fn step(
        &mut self,
        model: Dit<B>,
        optim: &mut Adam<B>,
        batch: step::HostBatch,
        lr: f64,
    ) -> Result<(Dit<B>, step::StepStats<B::InnerBackend>), TrainError> {
        let (micro, clip) = (self.micro, self.grad_clip);
        match self.group.as_mut() {
            None => {
                let batch = batch.upload(&self.device);
                Ok(step::optimizer_step(model, optim, batch, micro, lr, clip))
            }
            Some(group) => group
                .step(model, optim, &batch, &self.device, micro, lr, clip)
                .map_err(TrainError::Parallel),
        }
    }

    /// Whether any device stops, and the leader's schedule length.
    fn agree(&mut self, stop: bool, total: u64) -> Result<(bool, u64), TrainError> {
        match self.group.as_mut() {
            None => Ok((stop, total)),
            Some(group) => group
                .agree::<B::InnerBackend>(&self.device, stop, total)
                .map_err(TrainError::Parallel),
        }
    }

    fn finish(self) -> Result<(), TrainError> {
        match self.group {
            None => Ok(()),
            Some(group) => group
                .finish::<B::InnerBackend>()
                .map_err(TrainError::Parallel),
        }
    }
}

/// Refuses data whose images are not the network's size, and batches larger than the data.
fn check_data(run_config: &RunConfig, data: &impl Dataset) -> Result<(), TrainError> {
    let (config, model) = (&run_config.train, &run_config.model);
    if data.image_len() != model.image_len() {
        return Err(TrainError::Config(format!(
            "the data has {} values per image, the preset `{}` expects {}",
            data.image_len(),
            run_config.preset,
            model.image_len()
        )));
    }
    if config.batch_size == 0 || config.batch_size > data.len() {
        return Err(TrainError::Config(format!(
            "batch size {} for {} images",
            config.batch_size,
            data.len()
        )));
    }
    Ok(())
}

/// Where a call of [`train`] starts: fresh weights (or `init_weights`), or the run's latest
/// checkpoint when resuming.
struct Start<B: AutodiffBackend, O> {
    model: Dit<B>,
    ema: Dit<B::InnerBackend>,
    optim: O,
    state: RunState,
}

/// The optimizer every run uses: AdamW (see [`start`]).
type Adam<B> = OptimizerAdaptor<AdamW, Dit<B>, B>;

fn start<B: AutodiffBackend>(
    run_config: &RunConfig,
    run: &RunDir,
    resume: bool,
    device: &B::Device,
) -> Result<Start<B, Adam<B>>, TrainError> {
    let (config, model_config) = (&run_config.train, &run_config.model);
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
struct Follower<'a> {
    run_config: &'a RunConfig,
    run: &'a RunDir,
    resume: bool,
}

impl<B: AutodiffBackend> parallel::Replica<B> for Follower<'_> {
    type Optim = Adam<B>;
    fn start(&self, device: &B::Device) -> Result<(Dit<B>, Adam<B>), String> {
        let start = start::<B>(self.run_config, self.run, self.resume, device)
            .map_err(|e| e.to_string())?;
        Ok((start.model, start.optim))
    }
}

/// When a run reads its metrics back from the device, draws a sample grid and checkpoints.
struct Cadence {
    read_every: u64,
    sample_every: u64,
    checkpoint_every: u64,
}

impl Cadence {
    fn new(config: &TrainConfig) -> Self {
        Self {
            read_every: config.read_every.max(1),
            sample_every: config.sample_every,
            checkpoint_every: config.checkpoint_every,
        }
    }

    /// Whether `step` is a multiple of `every` (0: never).
    fn due(every: u64, step: u64) -> bool {
        every > 0 && step.is_multiple_of(every)
    }

    /// After `step`, with `unread` steps not read back yet: every `read_every` steps, and always
    /// before a sample grid, a checkpoint or the end (which must see the latest numbers).
    fn read(&self, step: u64, unread: usize, at_end: bool) -> bool {
        unread as u64 >= self.read_every
            || at_end
            || Self::due(self.sample_every, step)
            || Self::due(self.checkpoint_every, step)
    }

    fn sample(&self, step: u64, at_end: bool) -> bool {
        self.sample_every > 0 && (Self::due(self.sample_every, step) || at_end)
    }

    fn checkpoint(&self, step: u64, at_end: bool, stopping: bool) -> bool {
        Self::due(self.checkpoint_every, step) || at_end || stopping
    }
}

/// The steps run but not yet read back, and what the read-backs have seen: each step's loss
/// goes through the divergence check (not finite, or over `spike_factor` times the running
/// average) into `metrics.jsonl` and to the caller's `on_step`.
struct Monitor<B: Backend> {
    unread: Vec<(u64, f64, step::StepStats<B>)>,
    /// The running average of the loss (0.98), carried across resumes.
    average: Option<f64>,
    spike_factor: f64,
    batch: usize,
    /// When the last read-back ended.
    read_at: Instant,
    /// The checkpoint a divergence points the user back to.
    last_good: String,
    metrics: Option<Metrics>,
    metrics_file: PathBuf,
    /// (step, loss) of every step read back.
    losses: Vec<(u64, f64)>,
}

impl<B: Backend> Monitor<B> {
    /// `average`: the running average of the loss where the run resumes (none for a new run).
    /// `writes`: whether this machine keeps `metrics.jsonl` (the others of a multi-node run
    /// read the same numbers and keep nothing).
    fn open(
        run: &RunDir,
        config: &TrainConfig,
        average: Option<f64>,
        writes: bool,
    ) -> Result<Self, TrainError> {
        let metrics_file = run.metrics_file();
        let metrics = match writes {
            true => Some(Metrics::open(&metrics_file).map_err(PathError::at(&metrics_file))?),
            false => None,
        };
        let last_good = run
            .latest_checkpoint()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "none (no checkpoint yet)".into());
        Ok(Self {
            unread: Vec::new(),
            average,
            spike_factor: config.spike_factor,
            batch: config.batch_size,
            read_at: Instant::now(),
            last_good,
            metrics,
            metrics_file,
            losses: Vec::new(),
        })
    }

    fn push(&mut self, step: u64, lr: f64, stats: step::StepStats<B>) {
        self.unread.push((step, lr, stats));
    }

    fn unread(&self) -> usize {
        self.unread.len()
    }

    /// Reads every unread step back with one wait for the device. Returns whether `on_step`
    /// asked to stop; a diverged loss is an error naming the last good checkpoint.
    fn read(
        &mut self,
        on_step: &mut impl FnMut(&MetricsRow) -> ControlFlow<()>,
    ) -> Result<bool, TrainError> {
        let (rows, stats): (Vec<(u64, f64)>, Vec<_>) = self
            .unread
            .drain(..)
            .map(|(step, lr, stats)| ((step, lr), stats))
            .unzip();
        let values = step::StepStats::read_all(stats);
        let now = Instant::now();
        // The device's time for these steps, shared out evenly.
        let seconds = now.duration_since(self.read_at).as_secs_f64();
        let images_per_sec = (self.batch * rows.len()) as f64 / seconds;
        self.read_at = now;
        let mut stop = false;
        for ((step, lr), (loss, grad_norm)) in rows.into_iter().zip(values) {
            let spike = self
                .average
                .is_some_and(|avg| loss > self.spike_factor * avg.max(1e-3));
            if !loss.is_finite() || spike {
                return Err(TrainError::Diverged {
                    step: step - 1,
                    loss,
                    last_good: self.last_good.clone(),
                });
            }
            self.average = Some(self.average.map_or(loss, |a| 0.98 * a + 0.02 * loss));
            self.losses.push((step - 1, loss));
            let row = MetricsRow {
                step,
                loss,
                lr,
                grad_norm,
                images_per_sec,
            };
            if let Some(metrics) = self.metrics.as_mut() {
                metrics
                    .append(&row)
                    .map_err(PathError::at(&self.metrics_file))?;
            }
            stop |= on_step(&row).is_break();
        }
        Ok(stop)
    }
}

/// Writes the steps a time budget chose into `run.json`, so that a resume keeps that schedule.
fn record_budgeted_steps(
    run: &RunDir,
    run_config: &RunConfig,
    total: u64,
) -> Result<(), TrainError> {
    let mut recorded = run_config.clone();
    recorded.train.steps = total;
    recorded.train.lr.total = total;
    recorded.write(run)?;
    eprintln!(
        "time budget {} s: training to step {total}",
        run_config.train.time_budget.unwrap_or_default()
    );
    Ok(())
}

/// The EMA model's sample grid after `step`, and the loss plot and progress GIF redrawn.
fn samples<B: Backend>(
    run: &RunDir,
    ema: &Dit<B>,
    schedule: &NoiseSchedule,
    step: u64,
) -> Result<(), TrainError> {
    crate::report::samples::write_grid(ema, schedule, 2, &run.sample_grid(step))?;
    // Pictures for people; a failure to draw one must not stop the run.
    if let Err(e) = crate::report::refresh(run) {
        eprintln!("warning: could not redraw loss.png / progress.gif: {e}");
    }
    Ok(())
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

/// [`train`] on the backend the user chose, on the dataset `config` names, read from `data`
/// (MNIST: the four IDX files; CelebA: the official layout; images: one sub-folder per label),
/// on the devices `topology` names.
/// Datasets load before the backend starts, so a wrong folder fails fast.
pub fn train_on(
    backend: crate::backend::BackendChoice,
    config: &RunConfig,
    data: &Path,
    run: &RunDir,
    resume: bool,
    topology: &Topology,
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
        topology: &'a Topology,
        cpu: bool,
        on_step: F,
    }
    impl<D: Dataset, F: FnMut(&MetricsRow) -> ControlFlow<()>> crate::backend::OnBackend
        for Task<'_, D, F>
    {
        type Output = Result<TrainOutcome, TrainError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let devices = crate::backend::devices::<B>(&device, &self.topology.devices, self.cpu);
            train_on_devices::<B, D>(
                self.config,
                self.data,
                self.run,
                self.resume,
                self.topology,
                devices,
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
        topology: &Topology,
        on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
    ) -> Result<TrainOutcome, Box<dyn std::error::Error>> {
        let task = Task {
            config,
            data,
            run,
            resume,
            topology,
            cpu: backend.is_cpu(),
            on_step,
        };
        Ok(run_on(backend, task)??)
    }
    match config.dataset.as_str() {
        "mnist" => {
            let mnist = Mnist::load(data, Split::Train)?;
            go(backend, config, &mnist, run, resume, topology, on_step)
        }
        "celeba" => {
            let celeba = CelebA::load(data, Partition::Train)?;
            go(backend, config, &celeba, run, resume, topology, on_step)
        }
        crate::data::folder::DATASET => {
            let (side, channels) = (config.model.input_size, config.model.in_channels);
            let folder = crate::data::folder::ImageFolder::open(data, side, channels)?;
            if folder.labels() != config.labels {
                return Err(format!(
                    "the label folders of {} are {:?}, the run's labels {:?}",
                    data.display(),
                    folder.labels(),
                    config.labels
                )
                .into());
            }
            go(backend, config, &folder, run, resume, topology, on_step)
        }
        other => Err(format!("no loader for the dataset `{other}`").into()),
    }
}
