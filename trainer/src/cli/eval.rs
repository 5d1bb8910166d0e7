//! `trainer eval`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::eval::{evaluate, EvalRequest};

use super::{parse_positive, progress_bar, write_json, Result, SamplerArgs};

/// Score a model: K generated images per digit, class-conditional accuracy, and FID, precision
/// and recall in the classifier's feature space against the real test set, beside the same
/// figures for real test and training digits (the ceiling).
#[derive(ClapArgs)]
pub struct Args {
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

pub fn run(args: Args) -> Result {
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
        write_json(path, &report.to_json())?;
    }
    Ok(())
}
