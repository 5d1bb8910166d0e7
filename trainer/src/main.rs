//! `trainer`: the command line. Each command is a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dit_web::diffusion::{SamplerConfig, SamplerKind};
use dit_web::generate::generate_pngs;
use dit_web::weights::Quantization;
use dit_web::Preset;
use indicatif::{ProgressBar, ProgressStyle};
use trainer::data::celeba::{CelebA, Partition};
use trainer::data::mnist::{Mnist, Split};
use trainer::data::Dataset;
use trainer::train::lr::{Decay, LrSchedule};
use trainer::train::{train, TrainConfig, TrainOutcome};
use trainer::{export, Cpu};

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
    Train(TrainArgs),
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

#[derive(Clone, Copy, ValueEnum)]
enum BackendChoice {
    /// burn-ndarray on the CPU.
    Cpu,
    /// burn-cuda on an NVIDIA GPU (build with `--features cuda`).
    Cuda,
}

#[derive(Args)]
struct TrainArgs {
    /// Model preset: mnist, mnist-cpu or celeba.
    #[arg(long, default_value = "mnist-cpu")]
    preset: String,
    /// Dataset folder (MNIST: the four IDX files, gzipped or not).
    #[arg(long)]
    data: PathBuf,
    /// Run folder for checkpoints and reports.
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
    /// Peak learning rate. Default: 1e-3 (MNIST), 1e-4 (CelebA).
    #[arg(long)]
    lr: Option<f64>,
    /// Linear warmup steps. Default: 100 (MNIST), 200 (CelebA).
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: Decay,
    #[arg(long, default_value_t = 0.9999)]
    ema_decay: f64,
    /// Ramp the EMA decay as min(decay, (1+step)/(10+step)), for short runs.
    #[arg(long)]
    ema_warmup: bool,
    /// Probability of training on the null label (enables guidance). Default: the preset's.
    #[arg(long)]
    label_dropout: Option<f64>,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    grad_clip: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Keep checkpoints at multiples of this step (the latest is always kept).
    #[arg(long, default_value_t = 5000)]
    keep_every: u64,
    #[arg(long, default_value_t = 1000)]
    sample_every: u64,
    /// Stop if a loss exceeds this factor times its running average.
    #[arg(long, default_value_t = 10.0)]
    spike_factor: f64,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    resume: bool,
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
    #[arg(long, default_value = "dpm++", value_parser = parse_sampler)]
    sampler: SamplerKind,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Classifier-free guidance scale (1 = off).
    #[arg(long, default_value_t = 1.0)]
    cfg: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "out")]
    out: PathBuf,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    run: PathBuf,
    /// Export the raw weights instead of the EMA weights.
    #[arg(long)]
    raw: bool,
    #[arg(long, default_value = "int8", value_parser = parse_quant)]
    quant: Quantization,
    #[arg(long)]
    out: PathBuf,
}

fn parse_sampler(s: &str) -> Result<SamplerKind, String> {
    s.parse()
}

fn parse_quant(s: &str) -> Result<Quantization, String> {
    s.parse()
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Train(args) => train_command(args),
        Command::Generate(args) => generate_command(args),
        Command::Export(args) => export_command(args),
        Command::LrFind(args) => lr_find_command(args),
        Command::Download {
            dataset,
            data,
            mirror,
        } => {
            use trainer::data::download::{download, MNIST_FILES};
            if dataset != "mnist" {
                return Err(format!(
                    "`{dataset}` cannot be downloaded automatically; only `mnist` can (CelebA: get \
                     img_align_celeba, list_attr_celeba.txt and list_eval_partition.txt from its official page)"
                )
                .into());
            }
            for (name, fetched) in download(&mirror, &data, &MNIST_FILES)? {
                println!("{name}.gz: {fetched:?}");
            }
            Ok(())
        }
        Command::Report { run } => {
            trainer::report::refresh(&run)?;
            println!(
                "wrote {} and {}",
                run.join("loss.png").display(),
                run.join("progress.gif").display()
            );
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

fn lr_find_command(args: LrFindArgs) -> Result<(), Box<dyn std::error::Error>> {
    use trainer::report::plot::{line_plot, Series};
    use trainer::train::lr_find::{lr_find, suggest, LrFindConfig, LrPoint};
    let preset = preset(&args.preset)?;
    if preset.dataset != "mnist" {
        return Err("the LR finder reads MNIST only in this build".into());
    }
    let data = Mnist::load(&args.data, Split::Train)?;
    let config = LrFindConfig {
        min_lr: args.min_lr,
        max_lr: args.max_lr,
        values: args.values,
        steps_per_value: args.steps_per_value,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let bar = ProgressBar::new(args.values as u64);
    let points = lr_find::<burn::backend::Autodiff<Cpu>, _>(
        &preset,
        &config,
        &data,
        &Default::default(),
        |p| {
            bar.inc(1);
            bar.set_message(format!("lr {:.2e} loss {:.4}", p.lr, p.loss));
        },
    );
    bar.finish();
    std::fs::create_dir_all(&args.out)?;
    let mut csv = String::from("lr,loss,smoothed\n");
    for p in &points {
        csv.push_str(&format!("{},{},{}\n", p.lr, p.loss, p.smoothed));
    }
    std::fs::write(args.out.join("lr_find.csv"), csv)?;
    let curve = |f: fn(&LrPoint) -> f64| points.iter().map(|p| (p.lr.log10(), f(p))).collect();
    line_plot(
        &args.out.join("lr_find.png"),
        &format!(
            "LR range test, {} ({} steps per value)",
            preset.name, args.steps_per_value
        ),
        "log10(learning rate)",
        "loss",
        &[
            Series {
                label: "loss",
                points: curve(|p| p.loss),
            },
            Series {
                label: "smoothed",
                points: curve(|p| p.smoothed),
            },
        ],
    )?;
    match suggest(&points) {
        Some(lr) => println!("suggested max lr: {lr:.2e} (steepest descent of the smoothed loss)"),
        None => println!("no suggestion: the loss never fell"),
    }
    println!(
        "wrote {} and {}",
        args.out.join("lr_find.csv").display(),
        args.out.join("lr_find.png").display()
    );
    Ok(())
}

fn train_command(args: TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let preset = preset(&args.preset)?;
    let mnist = preset.dataset == "mnist";
    let steps = args.steps.unwrap_or(if mnist { 20_000 } else { 100_000 });
    let config = TrainConfig {
        preset: preset.name.into(),
        steps,
        batch_size: args.batch_size.unwrap_or(if mnist { 64 } else { 112 }),
        lr: LrSchedule {
            max_lr: args.lr.unwrap_or(if mnist { 1e-3 } else { 1e-4 }),
            warmup: args.warmup.unwrap_or(if mnist { 100 } else { 200 }),
            total: steps,
            decay: args.schedule,
        },
        ema_decay: args.ema_decay,
        ema_warmup: args.ema_warmup,
        label_dropout: args.label_dropout.unwrap_or(preset.model.class_dropout),
        grad_clip: args.grad_clip,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        keep_every: args.keep_every,
        sample_every: args.sample_every,
        spike_factor: args.spike_factor,
    };
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let on_step = |row: &trainer::report::metrics::MetricsRow| {
        bar.set_position(row.step);
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.1} img/s",
            row.loss, row.lr, row.images_per_sec
        ));
    };
    let outcome = if mnist {
        train_on(
            &preset,
            &config,
            &Mnist::load(&args.data, Split::Train)?,
            &args,
            on_step,
        )?
    } else {
        train_on(
            &preset,
            &config,
            &CelebA::load(&args.data, Partition::Train)?,
            &args,
            on_step,
        )?
    };
    bar.finish();
    println!(
        "trained to step {} in {}",
        outcome.final_step,
        args.run.display()
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

/// Runs training on the chosen backend.
fn train_on<D: Dataset>(
    preset: &Preset,
    config: &TrainConfig,
    data: &D,
    args: &TrainArgs,
    on_step: impl FnMut(&trainer::report::metrics::MetricsRow),
) -> Result<TrainOutcome, Box<dyn std::error::Error>> {
    fn on<B: AutodiffBackend, D: Dataset>(
        preset: &Preset,
        config: &TrainConfig,
        data: &D,
        args: &TrainArgs,
        on_step: impl FnMut(&trainer::report::metrics::MetricsRow),
    ) -> Result<TrainOutcome, Box<dyn std::error::Error>> {
        Ok(train::<B, D>(
            preset,
            config,
            data,
            &args.run,
            args.resume,
            &Default::default(),
            on_step,
        )?)
    }
    match args.backend {
        BackendChoice::Cpu => {
            on::<burn::backend::Autodiff<Cpu>, D>(preset, config, data, args, on_step)
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => on::<burn::backend::Autodiff<burn::backend::Cuda>, D>(
            preset, config, data, args, on_step,
        ),
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda => Err(
            "this trainer was built without CUDA: cargo build -p trainer --release --features cuda"
                .into(),
        ),
    }
}

fn generate_command(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = match (&args.weights, &args.run) {
        (Some(path), _) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        (None, Some(run)) => export::from_run(run, !args.raw)?.to_bytes()?,
        (None, None) => unreachable!("clap requires --weights or --run"),
    };
    let config = SamplerConfig {
        kind: args.sampler,
        steps: args.steps,
        guidance: args.cfg,
        seed: args.seed,
        ..Default::default()
    };
    let written = generate_pngs::<Cpu, _>(
        &bytes,
        &args.labels,
        &config,
        &args.out,
        &Default::default(),
    )?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn export_command(args: ExportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = export::from_run(&args.run, !args.raw)?;
    let step = file.meta.step;
    let (bytes, report) = export::encode(file, args.quant)?;
    let tmp = args.out.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, {:?}, {} weights from step {step})",
        args.out.display(),
        report.bytes,
        args.quant,
        if args.raw { "raw" } else { "EMA" }
    );
    if let Some((name, err)) = report.worst {
        println!(
            "largest quantization error: {name}: relative RMS {:.3e}, max abs {:.3e}",
            err.relative_rms, err.max_abs
        );
    }
    Ok(())
}
