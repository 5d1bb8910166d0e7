//! `trainer bench`.

use clap::Args as ClapArgs;
use trainer::backend::{BackendChoice, KernelChoice};
use trainer::bench::BenchRequest;

use super::{ModelArgs, Result};

/// Time optimizer steps (or, with --sample, guided DPM-Solver++ steps) of a preset on a backend,
/// on random data; prints one JSON line.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
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

pub fn run(args: Args) -> Result {
    let request = BenchRequest {
        backend: args.backend,
        kernels: args.kernels,
        preset: args.model.resolve("mnist")?,
        batch: args.batch_size,
        micro: args.micro_batch,
        warmup: args.warmup,
        steps: args.steps,
        read_every: args.read_every.iter().map(|&n| n as usize).collect(),
    };
    let lines = match (args.profile, args.sample) {
        (true, _) => vec![trainer::bench::profile(&request)?],
        (false, true) => vec![trainer::bench::sample(&request)?],
        (false, false) => trainer::bench::train(&request)?,
    };
    for json in lines {
        println!("{json}");
    }
    Ok(())
}
