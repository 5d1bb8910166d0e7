//! `trainer`: the command line. Each command is a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Parser, Subcommand};
use dit_web::diffusion::{SamplerConfig, SamplerKind};
use dit_web::generate::generate_pngs;
use dit_web::weights::Quantization;
use dit_web::Preset;
use indicatif::{ProgressBar, ProgressStyle};
use trainer::backend::{run_on, BackendChoice, OnBackend};
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
    /// Train the MNIST classifier that `eval` scores with (a small CNN on shifted digits).
    Classifier(ClassifierArgs),
    /// Score a model: K generated images per digit, class-conditional accuracy and FID in the
    /// classifier's feature space against the real test set, beside the same figures for real
    /// test and training digits (the ceiling).
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
    /// Untimed steps first (kernel compilation, autotuning, caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

#[derive(Args)]
struct CheckStepArgs {
    /// Model preset: mnist, mnist-cpu or celeba.
    #[arg(long, default_value = "mnist-cpu")]
    preset: String,
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
    /// Images per forward/backward pass; their gradients add up to the whole batch's, so a
    /// large batch fits in less memory (0: the whole batch at once).
    #[arg(long, default_value_t = 0)]
    micro_batch: usize,
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
    /// Classifier-free guidance scale (1 = off).
    #[arg(long, default_value_t = 1.0)]
    cfg: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per network call: larger requests run as several batches with the same images.
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
            guidance: self.cfg,
            seed: self.seed,
            ..Default::default()
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
    #[arg(long, default_value_t = 100)]
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

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
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
        Command::Classifier(args) => classifier_command(args),
        Command::Eval(args) => eval_command(args),
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
        Command::ImportTorch(args) => import_torch_command(args),
        Command::CheckStep(args) => check_step_command(args),
        Command::Bench(args) => {
            use trainer::bench::{SampleSteps, TrainSteps};
            let preset = preset(&args.preset)?;
            if args.batch_size == 0 || args.steps == 0 {
                return Err("--batch-size and --steps must be positive".into());
            }
            let result = if args.sample {
                run_on(
                    args.backend,
                    SampleSteps {
                        preset: &preset,
                        images: args.batch_size,
                        warmup: args.warmup,
                        steps: args.steps,
                    },
                )?
            } else {
                run_on(
                    args.backend,
                    TrainSteps {
                        preset: &preset,
                        batch: args.batch_size,
                        micro: args.micro_batch,
                        warmup: args.warmup,
                        steps: args.steps,
                    },
                )?
            };
            let mut json = serde_json::to_value(&result)?;
            json["kind"] = if args.sample { "sample" } else { "train" }.into();
            json["backend"] = format!("{:?}", args.backend).to_lowercase().into();
            json["micro_batch"] = args.micro_batch.into();
            println!("{json}");
            Ok(())
        }
        Command::Report { run } => {
            let gif = trainer::report::refresh(&run)?;
            println!("wrote {}", run.join("loss.png").display());
            match gif {
                true => println!("wrote {}", run.join("progress.gif").display()),
                false => println!(
                    "no sample grids in {}: no progress.gif",
                    run.join("samples").display()
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
        micro_batch: args.micro_batch,
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
    struct Task<'a, D, F> {
        preset: &'a Preset,
        config: &'a TrainConfig,
        data: &'a D,
        args: &'a TrainArgs,
        on_step: F,
    }
    impl<D: Dataset, F: FnMut(&trainer::report::metrics::MetricsRow)> OnBackend for Task<'_, D, F> {
        type Output = Result<TrainOutcome, trainer::train::TrainError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            train::<B, D>(
                self.preset,
                self.config,
                self.data,
                &self.args.run,
                self.args.resume,
                &device,
                self.on_step,
            )
        }
    }
    let task = Task {
        preset,
        config,
        data,
        args,
        on_step,
    };
    Ok(run_on(args.backend, task)??)
}

fn generate_command(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = match (&args.weights, &args.run) {
        (Some(path), _) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        (None, Some(run)) => export::from_run(run, !args.raw)?.to_bytes()?,
        (None, None) => unreachable!("clap requires --weights or --run"),
    };
    struct Task<'a>(&'a GenerateArgs, &'a [u8]);
    impl OnBackend for Task<'_> {
        type Output = Result<Vec<PathBuf>, dit_web::generate::GenerateError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let Task(args, bytes) = self;
            generate_pngs::<B::InnerBackend, _>(
                bytes,
                &args.labels,
                &args.sampler.config(),
                args.sampler.batch,
                &args.out,
                &device,
            )
        }
    }
    for path in run_on(args.sampler.backend, Task(&args, &bytes))?? {
        println!("{}", path.display());
    }
    Ok(())
}

fn export_command(args: ExportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = match (&args.run, &args.weights) {
        (Some(run), _) => export::from_run(run, !args.raw)?,
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            dit_web::weights::WeightFile::from_bytes(&bytes)?
        }
        (None, None) => unreachable!("clap requires --run or --weights"),
    };
    let (step, ema) = (file.meta.step, file.meta.ema);
    let (bytes, report) = export::encode(file, args.quant)?;
    let tmp = args.out.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
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

fn classifier_command(args: ClassifierArgs) -> Result<(), Box<dyn std::error::Error>> {
    use trainer::eval::classifier;
    let train = Mnist::load(&args.data, Split::Train)?;
    let test = Mnist::load(&args.data, Split::Test)?;
    let steps = args.epochs * train.len() / 128;
    let bar = ProgressBar::new(steps as u64);
    let model = classifier::train::<burn::backend::Autodiff<Cpu>>(
        &train,
        args.epochs,
        args.seed,
        &Default::default(),
        |step, loss| {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        },
    );
    bar.finish();
    let accuracy = classifier::accuracy(&model, &test);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    model.save(&args.out)?;
    println!(
        "test accuracy {:.2} % on {} images; wrote {}",
        100.0 * accuracy,
        test.len(),
        args.out.display()
    );
    Ok(())
}

fn eval_command(args: EvalArgs) -> Result<(), Box<dyn std::error::Error>> {
    use dit_web::weights::WeightFile;
    use trainer::eval::{self, classifier::Classifier, fid::Gaussian, PerClass, Scores};
    let device = Default::default();
    let classifier = Classifier::<Cpu>::load(&args.classifier, &device)?;
    let test = Mnist::load(&args.data, Split::Test)?;
    let mut test_images = vec![0f32; test.len() * test.image_len()];
    for (i, out) in test_images.chunks_mut(test.image_len()).enumerate() {
        test.image_into(i, out)?;
    }
    let (_, test_features) = classifier.predict(&test_images);
    let reference = Gaussian::fit(&test_features);

    // The ceiling: real digits through the same scoring. Test digits were never seen by the
    // classifier (a fair accuracy) but are part of the FID reference (an optimistic FID);
    // training digits are the other way round.
    let mut rows: Vec<(String, Scores)> = Vec::new();
    for (name, split) in [
        ("real test digits", &test),
        (
            "real training digits",
            &Mnist::load(&args.data, Split::Train)?,
        ),
    ] {
        let (real, real_labels) = eval::real_images(split, args.per_class, args.sampler.seed);
        rows.push((
            name.into(),
            eval::score(&classifier, &real, &real_labels, &reference),
        ));
    }
    let config = args.sampler.config();
    for path in &args.weights {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta = WeightFile::from_bytes(&bytes)?.meta;
        if meta.dataset != "mnist" {
            return Err(format!(
                "{}: eval scores MNIST models, this one is {}",
                path.display(),
                meta.dataset
            )
            .into());
        }
        let bar = ProgressBar::new((args.per_class * meta.model.num_classes) as u64);
        let task = PerClass {
            bytes: &bytes,
            config: &config,
            per_class: args.per_class,
            batch: args.sampler.batch,
            progress: |done| bar.set_position(done as u64),
        };
        let (images, labels) = run_on(args.sampler.backend, task)??;
        bar.finish_and_clear();
        let name = format!(
            "{} ({:?}{}, step {})",
            path.display(),
            meta.quantization,
            if meta.ema { " EMA" } else { " raw" },
            meta.step
        );
        rows.push((name, eval::score(&classifier, &images, &labels, &reference)));
    }
    println!(
        "{} per class, {} {} steps, guidance {}, seed {}; FID against the {} test digits",
        args.per_class,
        config.kind,
        config.steps,
        config.guidance,
        config.seed,
        test.len()
    );
    println!("{:<60} {:>9} {:>9}", "images", "accuracy", "FID");
    for (name, s) in &rows {
        println!("{name:<60} {:>8.2}% {:>9.3}", 100.0 * s.accuracy, s.fid);
    }
    if let Some(path) = &args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(name, s)| serde_json::json!({ "images": name, "scores": s, "sampler": config }))
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
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

fn import_torch_command(args: ImportTorchArgs) -> Result<(), Box<dyn std::error::Error>> {
    use trainer::import_torch::{import, write, ImportOptions};
    let options = ImportOptions {
        preset: args.preset.as_deref().map(preset).transpose()?,
        raw: args.raw,
        num_timesteps: args.timesteps,
    };
    let imported = import(&args.checkpoint, &options)?;
    let meta = imported.file.meta.clone();
    let report = write(imported.file, args.quant, &args.out)?;
    println!(
        "wrote {} ({} bytes, {:?}, {} from step {}): {}x{}x{}, patch {}, width {}, depth {}, {} heads, {} classes{}, T = {} (shifted)",
        args.out.display(),
        report.bytes,
        args.quant,
        imported.state,
        meta.step,
        meta.model.input_size,
        meta.model.input_size,
        meta.model.in_channels,
        meta.model.patch_size,
        meta.model.hidden_size,
        meta.model.depth,
        meta.model.num_heads,
        meta.model.num_classes,
        if meta.model.has_null_label() { " + null" } else { "" },
        meta.schedule.num_timesteps,
    );
    println!(
        "position table matches dit-web's (max difference {:.1e})",
        imported.position_table_diff
    );
    Ok(())
}

fn check_step_command(args: CheckStepArgs) -> Result<(), Box<dyn std::error::Error>> {
    use trainer::train::check::{compare, CheckSide};
    let preset = preset(&args.preset)?;
    let side = |micro| CheckSide {
        preset: &preset,
        batch: args.batch_size,
        micro,
        seed: args.seed,
    };
    let tested = run_on(args.backend, side(args.micro_batch))?;
    let reference = run_on(args.reference, side(args.reference_micro_batch))?;
    let result = compare(&tested, &reference);
    let name = |b: BackendChoice, micro: usize| match micro {
        0 => format!("{b:?}").to_lowercase(),
        m => format!("{} (micro-batch {m})", format!("{b:?}").to_lowercase()),
    };
    let (a, r) = (
        name(args.backend, args.micro_batch),
        name(args.reference, args.reference_micro_batch),
    );
    println!(
        "{} batch {}: loss {:.6e} on {a}, {:.6e} on {r}; gradient norm {:.6e} vs {:.6e}",
        preset.name,
        args.batch_size,
        result.loss[0],
        result.loss[1],
        result.grad_norm[0],
        result.grad_norm[1]
    );
    println!(
        "{:<48} {:>12} {:>12}",
        "parameter", "rel. error", "|grad| ref"
    );
    for p in result.params.iter().take(args.top) {
        println!(
            "{:<48} {:>12.3e} {:>12.3e}",
            p.name, p.relative, p.reference_norm
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&result)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
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
