//! `trainer lr-find`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::train::lr_find::{lr_find_on, suggest, write_report, LrFindConfig};

use super::{progress_bar, ModelArgs, Result};

/// LR range test: loss against an exponentially growing learning rate (CSV + PNG) and a suggested
/// maximum rate.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
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

pub fn run(args: Args) -> Result {
    let preset = args.model.resolve("mnist-cpu")?;
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
