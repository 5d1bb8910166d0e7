//! Running a [`Job`]: on the backend the user chose, then the training loop itself:
//! epsilon-prediction MSE at uniform timesteps, AdamW with warmup + cosine, EMA after every step,
//! read-backs, sample grids and step-level checkpoints that resume exactly.

use std::ops::ControlFlow;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::model::OwnKernels;

use super::checkpoint;
use super::config::RunConfig;
use super::ema;
use super::error::TrainError;
use super::grids::sample_grid;
use super::job::Job;
use super::monitor::Monitor;
use super::parallel::{Fingerprint, Replicas};
use super::plan::{record_budgeted_steps, Cadence, Plan};
use super::start::{start, Follower, Start};
use super::step::HostBatch;
use crate::backend::{run_on, BackendChoice, OnBackend};
use crate::data::loader::{Batches, Loader, Prefetcher};
use crate::data::Dataset;
use crate::report::metrics::MetricsRow;

/// What a finished (or stopped) training run reports.
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

impl<D: Dataset> Job<D> {
    /// Trains on `backend`, on the devices of [`Job::topology`]. `on_step` sees each step's
    /// metrics (for a progress bar); when it answers `Break` (the user pressed Ctrl-C), that step
    /// is checkpointed and the run stops there, losing nothing.
    pub fn run(
        &self,
        backend: BackendChoice,
        on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
    ) -> Result<TrainOutcome, TrainError> {
        struct Task<'a, D, F> {
            job: &'a Job<D>,
            cpu: bool,
            on_step: F,
        }
        impl<D: Dataset, F: FnMut(&MetricsRow) -> ControlFlow<()>> OnBackend for Task<'_, D, F> {
            type Output = Result<TrainOutcome, TrainError>;
            fn run<B: AutodiffBackend>(
                self,
                device: B::Device,
                kernels: OwnKernels,
            ) -> Self::Output {
                let ids = &self.job.topology.devices;
                let devices = crate::backend::devices::<B>(&device, ids, self.cpu);
                train_loop::<B, D>(self.job, devices, kernels, self.on_step)
            }
        }
        let cpu = backend.is_cpu();
        let task = Task {
            job: self,
            cpu,
            on_step,
        };
        run_on(backend, task).map_err(TrainError::Backend)?
    }

    /// Trains on backend `B`'s `devices` (the first leads; one per entry of the topology's
    /// devices), with dit-web's own kernels wherever the backend has some.
    pub fn run_on<B: AutodiffBackend>(
        &self,
        devices: Vec<B::Device>,
        on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
    ) -> Result<TrainOutcome, TrainError> {
        train_loop::<B, D>(self, devices, OwnKernels::default(), on_step)
    }
}

/// Trains `job` on `devices` (data-parallel when there are several, [`super::parallel`]). Only
/// machine 0 writes the run folder; every machine reads its data and, to resume, the run
/// folder's checkpoints.
fn train_loop<B: AutodiffBackend, D: Dataset>(
    job: &Job<D>,
    devices: Vec<B::Device>,
    kernels: OwnKernels,
    mut on_step: impl FnMut(&MetricsRow) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    let (run_config, run, topology) = (&job.config, &job.run_dir, &job.topology);
    let (config, model_config) = (&run_config.train, &run_config.model);
    check_data(run_config, &job.data)?;
    let check = topology.check(config.batch_size, devices.len());
    check.map_err(TrainError::Config)?;
    let (device, writes) = (&devices[0], topology.writes());
    let schedule = NoiseSchedule::new(&run_config.schedule);
    let Start {
        mut model,
        mut ema,
        mut optim,
        mut state,
    } = start::<B>(run_config, run, job.resume, kernels, device)?;
    if writes {
        run_config.write(run)?;
    }
    let follower = Follower {
        run_config,
        run,
        resume: job.resume,
        kernels,
    };
    let mut plan = Plan::new(config, state.step);
    let cadence = Cadence::new(config);
    let mut monitor = Monitor::open(run, config, state.last_loss, writes)?;
    let mut rng = NoiseRng::from_state(&state.rng);
    let n = config.batch_size;
    // The loader runs two batches ahead on its own thread for as long as this scope lives, and
    // so do the other devices' workers.
    std::thread::scope(|scope| {
        let mut loader = Prefetcher::spawn(scope, Loader::resume(&job.data, state.loader), n, 2);
        let fingerprint = Fingerprint::of(run_config, state.step, devices.len(), job.data.len());
        let mut replicas = Replicas::start(
            scope,
            topology,
            job.fault,
            &follower,
            &devices,
            config,
            &fingerprint,
        )?;
        model = replicas.join(model)?;
        let mut stopped = false;
        while state.step < plan.total {
            let batch = HostBatch::draw(
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
                sample_grid(run, &ema, &schedule, state.step)?;
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
