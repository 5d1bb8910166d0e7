//! `trainer export`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use dit_web::weights::{Quantization, WeightFile};
use trainer::run_dir::RunDir;

use super::{parse_from_str, Result};

/// Write a run's weights as the weight file the page loads, with its model card beside it
/// (NAME.card.json: the page's start for it, replacing any earlier card).
#[derive(ClapArgs)]
pub struct Args {
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
    /// f32, f16, int8 or int4.
    #[arg(long, default_value = "int8", value_parser = parse_from_str::<Quantization>)]
    quant: Quantization,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result {
    let file = match (&args.run, &args.weights) {
        (Some(run), _) => trainer::export::from_run(&RunDir::new(run), !args.raw)?,
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            WeightFile::from_bytes(&bytes)?
        }
        (None, None) => unreachable!("clap requires --run or --weights"),
    };
    let (step, ema) = (file.meta.step, file.meta.ema);
    let card = trainer::export::card(&file.meta);
    let report = trainer::export::write(file, args.quant, &args.out)?;
    // A card left by an earlier file of this name would start this model at that one's settings.
    let card_path = trainer::export::write_card(&args.out, &card)?;
    println!(
        "wrote {} ({} bytes, {:?}, {} weights from step {step})",
        args.out.display(),
        report.bytes,
        args.quant,
        if ema { "EMA" } else { "raw" }
    );
    println!(
        "wrote {} (the page's start for it; `make demo` or `node tools/catalogue.mjs` lists the new file)",
        card_path.display()
    );
    if let Some((name, err)) = report.worst {
        println!(
            "largest quantization error: {name}: relative RMS {:.3e}, max abs {:.3e}",
            err.relative_rms, err.max_abs
        );
    }
    Ok(())
}
