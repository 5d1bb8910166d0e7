//! `trainer train`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use dit_web::Preset;
use trainer::backend::BackendChoice;
use trainer::run_dir::RunDir;
use trainer::train::config::{RunConfig, TrainConfig};
use trainer::train::lr::{Decay, LrSchedule};
use trainer::train::parallel::{Launch, Topology, DEFAULT_PATIENCE};
use trainer::train::signal::StopFlag;
use trainer::train::Job;

use super::{parse_positive, parse_seconds, progress_bar, ModelArgs, Result};

/// Train a preset on a dataset into a run folder (checkpoints, metrics.jsonl, run.json).
///
/// Ctrl-C (or SIGTERM) stops after the step in flight with a checkpoint there, which `--resume`
/// continues from (exit status 130); a second Ctrl-C (a second or more after the first) ends it
/// at once.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Dataset folder: MNIST's four IDX files (gzipped or not), CelebA's official layout, or your
    /// own images, one sub-folder per label (the labels are the folder names; JPEG, PNG, GIF, BMP
    /// or WebP of any size, centre-cropped and resized to the preset's size).
    #[arg(long)]
    data: PathBuf,
    /// Image folders: the side the images are resized to (a multiple of the patch size).
    /// Default: the preset's.
    #[arg(long)]
    image_size: Option<usize>,
    /// Image folders: 1 (grey) or 3 (RGB). Default: the preset's.
    #[arg(long)]
    channels: Option<usize>,
    /// Run folder for run.json, metrics, checkpoints, sample grids and plots.
    #[arg(long)]
    run: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Optimizer steps in total. Default: 20,000 (MNIST), 100,000 (CelebA).
    #[arg(long)]
    steps: Option<u64>,
    /// Default: 64 (MNIST), 112 (CelebA).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Images per forward/backward pass; their gradients add up to the whole batch's, so a
    /// large batch fits in less memory. Default: 0 (the whole batch at once).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Peak learning rate. Default: 1e-3 (MNIST), 1e-4 (CelebA).
    #[arg(long)]
    lr: Option<f64>,
    /// Linear warmup steps. Default: 100 (MNIST), 200 (CelebA).
    #[arg(long)]
    warmup: Option<u64>,
    /// Learning-rate decay after the warmup. Default: cosine.
    #[arg(long, value_enum)]
    schedule: Option<Decay>,
    /// Default: 0.9999.
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Ramp the EMA decay as min(decay, (1+step)/(10+step)), for short runs.
    #[arg(long)]
    ema_warmup: bool,
    /// Probability of training on the null label, which classifier-free guidance needs (the
    /// page guides by default). Default: the preset's, else 0.1; 0 trains a model that cannot
    /// be guided (the reference's MNIST recipe).
    #[arg(long)]
    label_dropout: Option<f64>,
    /// Clip the global gradient norm to this value. Default: no clipping.
    #[arg(long)]
    grad_clip: Option<f64>,
    /// Default: 0.
    #[arg(long)]
    seed: Option<u64>,
    /// Default: 500.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Keep checkpoints at multiples of this step (the latest is always kept). Default: 5,000.
    #[arg(long)]
    keep_every: Option<u64>,
    /// Draw a sample grid every this many steps (0: never). Default: 1,000.
    #[arg(long)]
    sample_every: Option<u64>,
    /// Stop if a loss exceeds this factor times its running average. Default: 10.
    #[arg(long)]
    spike_factor: Option<f64>,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Start a new run from this weight file's weights (`trainer export`, f16 or f32 best; the
    /// same network) instead of a random draw; optimizer, schedule and EMA start afresh.
    #[arg(long, value_name = "FILE")]
    init_weights: Option<PathBuf>,
    /// Train for about this many seconds: after 100 steps (50 untimed, 50 timed; on a slow
    /// machine a tenth of the budget each) the schedule is shortened to the steps that fit the
    /// rest of the budget at the measured speed, so the cosine still ends at 0; --steps stays the
    /// most. run.json records the steps chosen.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    time_budget: Option<f64>,
    /// Read the loss and gradient norm back from the device every N steps: a read waits for the
    /// device, so on a GPU fewer reads let the host queue steps ahead. Metrics, the progress bar,
    /// the divergence check and Ctrl-C then act every N steps. Default: 1 on the CPU, 20 on
    /// cuda and wgpu.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    read_every: Option<u64>,
    #[command(flatten)]
    parallel: ParallelArgs,
}

/// Data-parallel training: several devices, and several machines (each started by an MPI
/// launcher: `mpirun -np N trainer train ...`, or `srun` in a Slurm job; MPI gives each its rank).
#[derive(ClapArgs)]
struct ParallelArgs {
    /// Train on this many devices at once: every batch (--batch-size, the whole batch) is cut
    /// into one slice per device and their gradients summed. On cuda these are devices 0..N; on
    /// the CPU backends the workers share the CPU.
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    devices: Option<usize>,
    /// Which devices, by index (CUDA device numbers), e.g. `0,2,3`; instead of --devices.
    #[arg(
        long,
        value_name = "I,J,...",
        value_delimiter = ',',
        conflicts_with = "devices"
    )]
    device_ids: Vec<usize>,
    /// With several machines (started by `mpirun` or `srun`, in a build with `--features mpi`):
    /// how long a machine waits at a sum for the others before it ends the whole job with a
    /// message (a machine that hangs rather than dies; one that dies ends the job at once).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    peer_timeout: Option<f64>,
}

impl ParallelArgs {
    /// This machine's devices, and the machines MPI reports when a launcher started the run.
    fn topology(&self, launch: Option<&Launch>) -> Topology {
        let devices = match (&self.device_ids[..], self.devices) {
            ([], n) => (0..n.unwrap_or(1)).collect(),
            (ids, _) => ids.to_vec(),
        };
        let (nodes, rank) = launch.map_or((1, 0), |l| l.nodes_and_rank());
        let patience = self.peer_timeout.map(Duration::from_secs_f64);
        Topology {
            devices,
            nodes,
            rank,
            patience: patience.unwrap_or(DEFAULT_PATIENCE),
        }
    }
}

impl Args {
    /// The preset's default settings with the flags given on top.
    fn config(&self, preset: &Preset) -> TrainConfig {
        let d = TrainConfig::defaults(preset);
        let steps = self.steps.unwrap_or(d.steps);
        TrainConfig {
            steps,
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            micro_batch: self.micro_batch.unwrap_or(d.micro_batch),
            lr: LrSchedule {
                max_lr: self.lr.unwrap_or(d.lr.max_lr),
                warmup: self.warmup.unwrap_or(d.lr.warmup),
                total: steps,
                decay: self.schedule.unwrap_or(d.lr.decay),
            },
            ema_decay: self.ema_decay.unwrap_or(d.ema_decay),
            ema_warmup: self.ema_warmup || d.ema_warmup,
            label_dropout: self.label_dropout.unwrap_or(d.label_dropout),
            grad_clip: self.grad_clip.or(d.grad_clip),
            seed: self.seed.unwrap_or(d.seed),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            keep_every: self.keep_every.unwrap_or(d.keep_every),
            sample_every: self.sample_every.unwrap_or(d.sample_every),
            spike_factor: self.spike_factor.unwrap_or(d.spike_factor),
            init_weights: self.init_weights.clone(),
            time_budget: self.time_budget,
            read_every: self.read_every.unwrap_or(self.backend.default_read_every()),
        }
    }
}

/// A training run stopped on a signal, its checkpoint written (not a failure of the trainer:
/// exit status 130).
#[derive(Debug, thiserror::Error)]
#[error("stopped at step {step} on a signal; the checkpoint there continues with the same command and --resume: {run}")]
pub struct Stopped {
    step: u64,
    run: String,
}

pub fn run(args: Args) -> Result {
    // MPI for the length of the run, when a launcher started it (finalised when dropped).
    let launch = Launch::from_env()?;
    let result = train(args, launch.as_ref());
    match (&launch, &result) {
        // One rank's error ends every rank (a rank that returned alone would leave the others
        // waiting at their next sum); a stop on a signal is agreed by all and ends each.
        (Some(launch), Err(e)) if !e.is::<Stopped>() => launch.abort(&e.to_string()),
        _ => result,
    }
}

fn train(args: Args, launch: Option<&Launch>) -> Result {
    let preset = args.model.resolve("mnist-cpu")?;
    let mut config = RunConfig::new(&preset, args.config(&preset));
    if trainer::data::is_image_folder(&args.data) {
        let scan = trainer::data::folder::Scan::of(&args.data)?;
        println!(
            "{}: {} images of {} labels ({})",
            args.data.display(),
            scan.items.len(),
            scan.labels.len(),
            scan.labels.join(", ")
        );
        config = config.on_dataset(
            trainer::data::folder::DATASET,
            scan.labels,
            args.image_size,
            args.channels,
        )?;
    } else if args.image_size.is_some() || args.channels.is_some() {
        return Err("--image-size and --channels are for a folder of your own images (one sub-folder per label); MNIST and CelebA keep the preset's".into());
    }
    let bar = progress_bar(
        config.train.steps,
        "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
    );
    let run = RunDir::new(&args.run);
    let stop = StopFlag::on_signals()?;
    let job = Job::open(config, &args.data, run)?
        .resuming(args.resume)
        .on(args.parallel.topology(launch));
    let outcome = job.run(args.backend, |row| {
        bar.set_position(row.step);
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.1} img/s",
            row.loss, row.lr, row.images_per_sec
        ));
        match stop.raised() {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    })?;
    bar.finish();
    if outcome.stopped {
        return Err(Stopped {
            step: outcome.final_step,
            run: job.run_dir.root().display().to_string(),
        }
        .into());
    }
    println!(
        "trained to step {} in {}",
        outcome.final_step,
        job.run_dir.root().display()
    );
    let (skipped, reasons) = &outcome.skipped;
    if *skipped > 0 {
        println!("skipped {skipped} unreadable images, e.g.:");
        for reason in reasons {
            println!("  {reason}");
        }
    }
    Ok(())
}
