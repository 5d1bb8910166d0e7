//! `trainer check-step`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::backend::BackendChoice;
use trainer::train::check::{check_step, Side};

use super::{write_json, ModelArgs, Result};

/// Check a backend's arithmetic: one training batch (same weights, images, noise, timesteps and
/// labels, made on the host from the seed) on --backend and on --reference; prints the loss, the
/// gradient norm and each parameter's relative gradient error, worst first, and fails when the
/// worst passes --tolerance.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
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

pub fn run(args: Args) -> Result {
    let preset = args.model.resolve("mnist-cpu")?;
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
        write_json(path, &result)?;
    }
    println!("{}", result.verdict(sides, args.tolerance)?);
    Ok(())
}
