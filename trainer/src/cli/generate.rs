//! `trainer generate`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::generate::Weights;
use trainer::run_dir::RunDir;

use super::{Result, SamplerArgs};

/// Generate one PNG per label (NNNN_label-<name>.png) plus grid.png.
#[derive(ClapArgs)]
pub struct Args {
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

pub fn run(args: Args) -> Result {
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
