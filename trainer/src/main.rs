//! `trainer`: the command line. It parses arguments, calls the library once per command and
//! prints what came back; the work is all in the `trainer` library.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use dit_web::diffusion::{DdpmVariance, SamplerConfig, SamplerKind};
use dit_web::weights::Quantization;
use dit_web::{Conditioning, Flavour, Preset};
use indicatif::{ProgressBar, ProgressStyle};
use trainer::backend::{BackendChoice, KernelChoice};
use trainer::run_dir::{RunConfig, RunDir};
use trainer::train::lr::{Decay, LrSchedule};
use trainer::train::TrainConfig;

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train dit-web models, export their weights, generate images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a preset on a dataset into a run folder (checkpoints, metrics.jsonl, run.json).
    ///
    /// Ctrl-C (or SIGTERM) stops after the step in flight with a checkpoint there, which
    /// `--resume` continues from (exit status 130); a second Ctrl-C (a second or more after the
    /// first) ends it at once.
    Train(Box<TrainArgs>),
    /// Generate one PNG per label (NNNN_label-<name>.png) plus grid.png.
    Generate(GenerateArgs),
    /// Write a run's weights as the weight file the page loads.
    Export(ExportArgs),
    /// LR range test: loss against an exponentially growing learning rate (CSV + PNG) and a
    /// suggested maximum rate.
    LrFind(LrFindArgs),
    /// Download a dataset, verifying checksums (MNIST only; CelebA must be fetched by hand).
    Download {
        /// Which dataset: mnist.
        dataset: String,
        /// Folder to put the files in.
        #[arg(long)]
        data: PathBuf,
        /// Base URL holding <name>.gz files.
        #[arg(long, default_value = trainer::data::download::DEFAULT_MIRROR)]
        mirror: String,
    },
    /// Train the MNIST classifier that `eval` scores with (a small CNN on shifted digits).
    Classifier(ClassifierArgs),
    /// Score a model: K generated images per digit, class-conditional accuracy, and FID,
    /// precision and recall in the classifier's feature space against the real test set, beside
    /// the same figures for real test and training digits (the ceiling).
    Eval(EvalArgs),
    /// Convert a reference PyTorch DiT checkpoint (torch.save dict with model_state, ema_state,
    /// model_args, step) into a weight file.
    ImportTorch(ImportTorchArgs),
    /// Check a backend's arithmetic: one training batch (same weights, images, noise, timesteps
    /// and labels, made on the host from the seed) on --backend and on --reference; prints the
    /// loss, the gradient norm and each parameter's relative gradient error, worst first, and
    /// fails when the worst passes --tolerance.
    CheckStep(CheckStepArgs),
    /// Time optimizer steps (or, with --sample, guided DPM-Solver++ steps) of a preset on a
    /// backend, on random data; prints one JSON line.
    Bench(BenchArgs),
    /// Redraw a run's loss.png and progress.gif from its metrics and sample grids.
    Report {
        #[arg(long)]
        run: PathBuf,
    },
}

#[derive(Args)]
struct LrFindArgs {
    #[arg(long, default_value = "mnist-cpu")]
    preset: String,
    #[command(flatten)]
    network: NetworkArgs,
    #[arg(long)]
    data: PathBuf,
    /// Folder for lr_find.csv and lr_find.png.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1e-6)]
    min_lr: f64,
    #[arg(long, default_value_t = 1e-2)]
    max_lr: f64,
    #[arg(long, default_value_t = 100)]
    values: usize,
    #[arg(long, default_value_t = 2)]
    steps_per_value: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct BenchArgs {
    /// Model preset: mnist, mnist-cpu or celeba.
    #[arg(long, default_value = "mnist")]
    preset: String,
    #[command(flatten)]
    network: NetworkArgs,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Images per optimizer step, or images sampled at once with --sample.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Images per forward/backward pass (0: the whole batch).
    #[arg(long, default_value_t = 0)]
    micro_batch: usize,
    /// Time sampler steps (guidance 3: the network sees twice the images) instead of training.
    #[arg(long)]
    sample: bool,
    /// Profile training steps instead: each phase (batch upload, forward, backward, clipping,
    /// AdamW, EMA) timed alone between device synchronisations, the forward pass without
    /// autodiff, and burn's matrix product at the MLP's shape; one JSON line of medians.
    #[arg(long, conflicts_with_all = ["sample", "micro_batch", "read_every"])]
    profile: bool,
    /// Untimed steps first (kernel compilation, autotuning, caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Optimizer steps between read-backs of the loss, as `train --read-every`; several values
    /// (`1,20`) time --steps steps with each in turn, after one warm-up, a JSON line each.
    /// Default: as `train` (1 on the CPU, 20 on cuda and wgpu).
    #[arg(long, value_name = "N", value_delimiter = ',',
          value_parser = clap::value_parser!(u64).range(1..))]
    read_every: Vec<u64>,
    /// Whose kernels run the model's Linear layers, attention, adaLN and GELU on cpu and wgpu:
    /// dit-web's own or burn's, to time one against the other on the same device. `auto`: dit-web's
    /// on the CPU and on software wgpu adapters, burn's on hardware GPUs.
    #[arg(long, value_enum, default_value = "auto")]
    kernels: KernelChoice,
}

#[derive(Args)]
struct CheckStepArgs {
    /// Model preset: mnist, mnist-cpu or celeba.
    #[arg(long, default_value = "mnist-cpu")]
    preset: String,
    #[command(flatten)]
    network: NetworkArgs,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// The backend under test.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Images per forward/backward pass on --backend (0: the whole batch).
    #[arg(long, default_value_t = 0)]
    micro_batch: usize,
    /// The backend it is compared with.
    #[arg(long, value_enum, default_value = "ndarray")]
    reference: BackendChoice,
    /// Images per forward/backward pass on --reference (0: the whole batch).
    #[arg(long, default_value_t = 0)]
    reference_micro_batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest relative error (loss or any parameter's gradient) that passes.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
    /// Parameters to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Also write the whole comparison as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct TrainArgs {
    /// Model preset: mnist, mnist-cpu or celeba.
    #[arg(long, default_value = "mnist-cpu")]
    preset: String,
    #[command(flatten)]
    network: NetworkArgs,
    /// Dataset folder (MNIST: the four IDX files, gzipped or not; CelebA: the official layout).
    #[arg(long)]
    data: PathBuf,
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
    /// Probability of training on the null label (enables guidance). Default: the preset's.
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
}

/// Changes to the preset's network (train, bench, lr-find, check-step); run.json and the exported
/// weight file record the result.
#[derive(Args)]
struct NetworkArgs {
    /// How t and y reach the blocks (the paper's Figure 5 designs): adaln-zero (the preset's),
    /// adaln, cross-attn or in-context.
    #[arg(long, value_parser = parse_conditioning)]
    conditioning: Option<Conditioning>,
    /// seed (the reference PyTorch DiT's details, the presets') or paper (the official DiT
    /// models.py: 2-D position table, SiLU, tanh GELU, fused qkv).
    #[arg(long, value_parser = parse_flavour)]
    flavour: Option<Flavour>,
    /// Token width d (a multiple of 4 and of --num-heads).
    #[arg(long)]
    hidden_size: Option<usize>,
    /// Transformer blocks.
    #[arg(long)]
    depth: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    num_heads: Option<usize>,
    /// Side of a square patch (divides the image side).
    #[arg(long)]
    patch_size: Option<usize>,
}

impl NetworkArgs {
    /// `preset` with the flags given on top, checked.
    fn apply(&self, mut preset: Preset) -> Result<Preset, String> {
        let m = &mut preset.model;
        m.conditioning = self.conditioning.unwrap_or(m.conditioning);
        m.flavour = self.flavour.unwrap_or(m.flavour);
        m.hidden_size = self.hidden_size.unwrap_or(m.hidden_size);
        m.depth = self.depth.unwrap_or(m.depth);
        m.num_heads = self.num_heads.unwrap_or(m.num_heads);
        m.patch_size = self.patch_size.unwrap_or(m.patch_size);
        m.validate()
            .map_err(|e| format!("the network asked for is not valid: {e}"))?;
        Ok(preset)
    }
}

fn parse_conditioning(s: &str) -> Result<Conditioning, String> {
    s.parse()
}

fn parse_flavour(s: &str) -> Result<Flavour, String> {
    s.parse()
}

impl TrainArgs {
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

#[derive(Args)]
struct GenerateArgs {
    /// A weight file (from `trainer export`).
    #[arg(long, conflicts_with = "run", required_unless_present = "run")]
    weights: Option<PathBuf>,
    /// A run folder: uses its latest checkpoint.
    #[arg(long)]
    run: Option<PathBuf>,
    /// With --run: the raw weights instead of the EMA weights.
    #[arg(long)]
    raw: bool,
    /// Labels by name or index, e.g. `3 1 4` or `female male`.
    #[arg(long, num_args = 1.., required = true)]
    labels: Vec<String>,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[arg(long, default_value = "out")]
    out: PathBuf,
}

/// The sampler flags `generate` and `eval` share.
#[derive(Args)]
struct SamplerArgs {
    /// dpm++, ddim or ddpm.
    #[arg(long, default_value = "dpm++", value_parser = parse_sampler)]
    sampler: SamplerKind,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// DDIM's noise level: 0 deterministic, 1 the noise of DDPM's ancestral steps.
    #[arg(long, default_value_t = 0.0, value_parser = parse_eta)]
    eta: f64,
    /// Classifier-free guidance scale (1 = off).
    #[arg(long, default_value_t = 1.0)]
    cfg: f32,
    /// Guide only the steps whose timestep t lies in LO..=HI (e.g. `100,399`); the other steps
    /// run the network once, on half the images. Default: every step.
    #[arg(long, value_name = "LO,HI", value_parser = parse_interval)]
    cfg_interval: Option<[usize; 2]>,
    /// Clamp each step's prediction of the clean image to [-1, 1] (static thresholding).
    #[arg(long)]
    clip_x0: bool,
    /// DDPM's step variance: small (the posterior's, beta-tilde) or large (the step's beta).
    #[arg(long, default_value = "small")]
    ddpm_variance: DdpmVariance,
    /// Autoguidance scale (1 = off; needs --guide-weights): every step moves (A - 1) times the
    /// difference between the model's and the guiding model's conditional predictions further
    /// from the guiding one. Combines with --cfg.
    #[arg(
        long,
        value_name = "A",
        default_value_t = 1.0,
        requires = "guide_weights"
    )]
    autoguidance: f32,
    /// The guiding model of autoguidance: a worse model of the same images, labels and noise
    /// schedule (smaller or less trained); it runs on the images at every step.
    #[arg(long, value_name = "WEIGHTS")]
    guide_weights: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per network call: larger requests run as several batches with the same images,
    /// side by side (one per core) on the CPU backends.
    #[arg(long, default_value_t = dit_web::generate::DEFAULT_BATCH, value_parser = parse_positive)]
    batch: usize,
    /// Where the network runs.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
}

impl SamplerArgs {
    fn config(&self) -> SamplerConfig {
        SamplerConfig {
            kind: self.sampler,
            steps: self.steps,
            eta: self.eta,
            guidance: self.cfg,
            guidance_interval: self.cfg_interval,
            autoguidance: self.autoguidance,
            clip_x0: self.clip_x0,
            ddpm_variance: self.ddpm_variance,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
struct ClassifierArgs {
    /// MNIST folder (the four IDX files).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "runs/classifier.mpk")]
    out: PathBuf,
    /// Passes over the 60,000 training digits (3: 99.0 % test accuracy, ~5 minutes on 2 cores).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct EvalArgs {
    /// Weight files to score (each gets a row).
    #[arg(long, num_args = 1.., required = true)]
    weights: Vec<PathBuf>,
    /// MNIST folder: the test set is the FID reference; real test and training digits the ceiling.
    #[arg(long)]
    data: PathBuf,
    /// From `trainer classifier`.
    #[arg(long, default_value = "runs/classifier.mpk")]
    classifier: PathBuf,
    /// Images per class.
    #[arg(long, default_value_t = 100, value_parser = parse_positive)]
    per_class: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Also write the scores as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// The run folder whose latest checkpoint is exported.
    #[arg(long, conflicts_with = "weights", required_unless_present = "weights")]
    run: Option<PathBuf>,
    /// Or an existing weight file, stored again with --quant (its weights as they are: from an
    /// int8 or int4 file the losses add up).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Export the EMA weights (the default; the flag is accepted for clarity).
    #[arg(long, conflicts_with = "raw")]
    ema: bool,
    /// Export the raw weights instead of the EMA weights.
    #[arg(long)]
    raw: bool,
    #[arg(long, default_value = "int8", value_parser = parse_quant)]
    quant: Quantization,
    #[arg(long)]
    out: PathBuf,
}

fn parse_interval(s: &str) -> Result<[usize; 2], String> {
    let bad =
        || format!("`{s}` is not an interval of timesteps LO,HI with LO <= HI (e.g. 100,399)");
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    match (lo.trim().parse::<usize>(), hi.trim().parse::<usize>()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok([lo, hi]),
        _ => Err(bad()),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn parse_eta(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(eta) if (0.0..=1.0).contains(&eta) => Ok(eta),
        _ => Err(format!("`{s}` is not a number in 0..=1")),
    }
}

fn parse_sampler(s: &str) -> Result<SamplerKind, String> {
    s.parse()
}

fn parse_quant(s: &str) -> Result<Quantization, String> {
    s.parse()
}

#[derive(Args)]
struct ImportTorchArgs {
    /// The checkpoint (.pt) written by the reference training script.
    checkpoint: PathBuf,
    /// Preset the checkpoint must match (its labels and schedule are used). Without it, the
    /// config comes from the tensors and the checkpoint's model_args.
    #[arg(long)]
    preset: Option<String>,
    /// Convert model_state instead of ema_state.
    #[arg(long)]
    raw: bool,
    #[arg(long, default_value = "f32", value_parser = parse_quant)]
    quant: Quantization,
    /// Number of diffusion timesteps (default: model_args' num_timesteps, else the preset's).
    #[arg(long)]
    timesteps: Option<usize>,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Stopped>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// A training run stopped on a signal, its checkpoint written (not a failure of the trainer).
#[derive(Debug, thiserror::Error)]
#[error("stopped at step {step} on a signal; the checkpoint there continues with the same command and --resume: {run}")]
struct Stopped {
    step: u64,
    run: String,
}

/// A flag that Ctrl-C or SIGTERM raises. A second signal ends the process at once (exit status
/// 130), but only one that comes at least a second after the first: GNU `timeout` and `kill 0`
/// send theirs to the process and to its group, so one request can arrive twice in an instant.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::{
        consts::{SIGINT, SIGTERM},
        iterator::Signals,
    };
    const REPEAT: std::time::Duration = std::time::Duration::from_secs(1);
    let flag = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let raised = Arc::clone(&flag);
    // Signals are read on a thread of their own, so the handler itself only wakes it.
    std::thread::spawn(move || {
        let mut first: Option<std::time::Instant> = None;
        for _ in signals.forever() {
            match first {
                None => {
                    first = Some(std::time::Instant::now());
                    raised.store(true, Ordering::Relaxed);
                }
                Some(at) if at.elapsed() >= REPEAT => std::process::exit(130),
                Some(_) => {}
            }
        }
    });
    Ok(flag)
}

fn run(cli: Cli) -> Result {
    match cli.command {
        Command::Train(args) => train(*args),
        Command::Generate(args) => generate(args),
        Command::Export(args) => export(args),
        Command::LrFind(args) => lr_find(args),
        Command::Classifier(args) => classifier(args),
        Command::Eval(args) => eval(args),
        Command::ImportTorch(args) => import_torch(args),
        Command::CheckStep(args) => check_step(args),
        Command::Download {
            dataset,
            data,
            mirror,
        } => {
            for (name, fetched) in
                trainer::data::download::download_dataset(&dataset, &mirror, &data)?
            {
                println!("{name}.gz: {fetched:?}");
            }
            Ok(())
        }
        Command::Bench(args) => {
            let preset = args.network.apply(preset(&args.preset)?)?;
            let (backend, kernels) = (args.backend, args.kernels);
            let lines = if args.profile {
                let profile = trainer::bench::profile(
                    backend,
                    kernels,
                    &preset,
                    args.batch_size,
                    args.warmup,
                    args.steps,
                )?;
                vec![profile]
            } else {
                let read_every: Vec<usize> = if args.read_every.is_empty() {
                    vec![backend.default_read_every() as usize]
                } else {
                    args.read_every.iter().map(|&n| n as usize).collect()
                };
                trainer::bench::bench(
                    backend,
                    kernels,
                    &preset,
                    args.batch_size,
                    args.micro_batch,
                    args.sample,
                    args.warmup,
                    args.steps,
                    &read_every,
                )?
            };
            for json in lines {
                println!("{json}");
            }
            Ok(())
        }
        Command::Report { run } => {
            let run = RunDir::new(run);
            let gif = trainer::report::refresh(&run)?;
            println!("wrote {}", run.loss_plot().display());
            match gif {
                true => println!("wrote {}", run.progress_gif().display()),
                false => println!(
                    "no sample grids in {}: no progress.gif",
                    run.samples().display()
                ),
            }
            Ok(())
        }
    }
}

fn preset(name: &str) -> Result<Preset, String> {
    Preset::by_name(name).ok_or_else(|| {
        format!(
            "unknown preset `{name}` (expected one of: {})",
            Preset::NAMES.join(", ")
        )
    })
}

/// A progress bar that draws only on a terminal (indicatif's default).
fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}

fn train(args: TrainArgs) -> Result {
    let preset = args.network.apply(preset(&args.preset)?)?;
    let config = RunConfig::new(&preset, args.config(&preset));
    let bar = progress_bar(
        config.train.steps,
        "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
    );
    let run = RunDir::new(&args.run);
    let stop = stop_flag()?;
    let outcome = trainer::train::train_on(
        args.backend,
        &config,
        &args.data,
        &run,
        args.resume,
        |row| {
            bar.set_position(row.step);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {:.1} img/s",
                row.loss, row.lr, row.images_per_sec
            ));
            if stop.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    bar.finish();
    if outcome.stopped {
        return Err(Stopped {
            step: outcome.final_step,
            run: run.root().display().to_string(),
        }
        .into());
    }
    println!(
        "trained to step {} in {}",
        outcome.final_step,
        run.root().display()
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

fn generate(args: GenerateArgs) -> Result {
    use trainer::generate::Weights;
    let run = args.run.as_ref().map(RunDir::new);
    let weights = match (&args.weights, &run) {
        (Some(path), _) => Weights::File(path),
        (None, Some(run)) => Weights::Run {
            run,
            ema: !args.raw,
        },
        (None, None) => unreachable!("clap requires --weights or --run"),
    };
    let s = &args.sampler;
    for path in trainer::generate::generate(
        weights,
        s.guide_weights.as_deref(),
        &args.labels,
        &s.config(),
        s.batch,
        &args.out,
        s.backend,
    )? {
        println!("{}", path.display());
    }
    Ok(())
}

fn export(args: ExportArgs) -> Result {
    use dit_web::weights::WeightFile;
    let file = match (&args.run, &args.weights) {
        (Some(run), _) => trainer::export::from_run(&RunDir::new(run), !args.raw)?,
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            WeightFile::from_bytes(&bytes)?
        }
        (None, None) => unreachable!("clap requires --run or --weights"),
    };
    let (step, ema) = (file.meta.step, file.meta.ema);
    let report = trainer::export::write(file, args.quant, &args.out)?;
    println!(
        "wrote {} ({} bytes, {:?}, {} weights from step {step})",
        args.out.display(),
        report.bytes,
        args.quant,
        if ema { "EMA" } else { "raw" }
    );
    if let Some((name, err)) = report.worst {
        println!(
            "largest quantization error: {name}: relative RMS {:.3e}, max abs {:.3e}",
            err.relative_rms, err.max_abs
        );
    }
    Ok(())
}

fn lr_find(args: LrFindArgs) -> Result {
    use trainer::train::lr_find::{lr_find_on, suggest, write_report, LrFindConfig};
    let preset = args.network.apply(preset(&args.preset)?)?;
    let config = LrFindConfig {
        min_lr: args.min_lr,
        max_lr: args.max_lr,
        values: args.values,
        steps_per_value: args.steps_per_value,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let bar = progress_bar(args.values as u64, "{bar:30} {pos}/{len} {msg}");
    let points = lr_find_on(&preset, &config, &args.data, |p| {
        bar.inc(1);
        bar.set_message(format!("lr {:.2e} loss {:.4}", p.lr, p.loss));
    })?;
    bar.finish();
    let title = format!(
        "LR range test, {} ({} steps per value)",
        preset.name, args.steps_per_value
    );
    let [csv, png] = write_report(&args.out, &title, &points)?;
    match suggest(&points) {
        Some(lr) => println!("suggested max lr: {lr:.2e} (steepest descent of the smoothed loss)"),
        None => println!("no suggestion: the loss never fell"),
    }
    println!("wrote {} and {}", csv.display(), png.display());
    Ok(())
}

fn classifier(args: ClassifierArgs) -> Result {
    let bar = progress_bar(0, "{bar:30} {pos}/{len} {msg}");
    let (accuracy, tested) = trainer::eval::classifier::train_and_save(
        &args.data,
        &args.out,
        args.epochs,
        args.seed,
        |step, steps, loss| {
            bar.set_length(steps as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        },
    )?;
    bar.finish();
    println!(
        "test accuracy {:.2} % on {tested} images; wrote {}",
        100.0 * accuracy,
        args.out.with_extension("mpk").display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result {
    use trainer::eval::{evaluate, EvalRequest};
    let request = EvalRequest {
        weights: &args.weights,
        data: &args.data,
        classifier: &args.classifier,
        per_class: args.per_class,
        guide: args.sampler.guide_weights.as_deref(),
        sampler: args.sampler.config(),
        batch: args.sampler.batch,
        backend: args.sampler.backend,
    };
    let bar = progress_bar(0, "{bar:30} {pos}/{len} images");
    let report = evaluate(&request, |_, done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    print!("{}", report.table());
    if let Some(path) = &args.json {
        dit_web::atomic::write(path, &serde_json::to_vec_pretty(&report.to_json())?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn import_torch(args: ImportTorchArgs) -> Result {
    use trainer::import_torch::{import, ImportOptions};
    let options = ImportOptions {
        preset: args.preset.as_deref().map(preset).transpose()?,
        raw: args.raw,
        num_timesteps: args.timesteps,
    };
    let imported = import(&args.checkpoint, &options)?;
    let meta = imported.file.meta.clone();
    let report = trainer::export::write(imported.file, args.quant, &args.out)?;
    let m = &meta.model;
    println!(
        "wrote {} ({} bytes, {:?}, {} from step {}): {}x{}x{}, patch {}, width {}, depth {}, {} heads, {} classes{}, T = {} (shifted)",
        args.out.display(),
        report.bytes,
        args.quant,
        imported.state,
        meta.step,
        m.input_size,
        m.input_size,
        m.in_channels,
        m.patch_size,
        m.hidden_size,
        m.depth,
        m.num_heads,
        m.num_classes,
        if m.has_null_label() { " + null" } else { "" },
        meta.schedule.num_timesteps,
    );
    println!(
        "position table matches dit-web's (max difference {:.1e})",
        imported.position_table_diff
    );
    Ok(())
}

fn check_step(args: CheckStepArgs) -> Result {
    use trainer::train::check::{check_step, Side};
    let preset = args.network.apply(preset(&args.preset)?)?;
    let sides = [
        Side {
            backend: args.backend,
            micro: args.micro_batch,
        },
        Side {
            backend: args.reference,
            micro: args.reference_micro_batch,
        },
    ];
    let result = check_step(&preset, args.batch_size, args.seed, sides[0], sides[1])?;
    let title = format!("{} batch {}", preset.name, args.batch_size);
    print!("{}", result.table(&title, sides, args.top));
    if let Some(path) = &args.json {
        dit_web::atomic::write(path, &serde_json::to_vec_pretty(&result)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let [a, r] = sides;
    let worst = result.worst();
    if worst.is_nan() || worst > args.tolerance {
        return Err(format!(
            "{a} differs from {r}: worst relative error {worst:.3e} > {:.1e}",
            args.tolerance
        )
        .into());
    }
    println!(
        "{a} matches {r}: worst relative error {worst:.3e} <= {:.1e}",
        args.tolerance
    );
    Ok(())
}
