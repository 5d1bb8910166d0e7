//! `trainer import-torch`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use dit_web::weights::Quantization;
use trainer::import_torch::{import, ImportOptions};

use super::{parse_from_str, preset, Result};

/// Convert a reference PyTorch DiT checkpoint (torch.save dict with model_state, ema_state,
/// model_args, step) into a weight file.
#[derive(ClapArgs)]
pub struct Args {
    /// The checkpoint (.pt) written by the reference training script.
    checkpoint: PathBuf,
    /// Preset the checkpoint must match (its labels and schedule are used). Without it, the
    /// config comes from the tensors and the checkpoint's model_args.
    #[arg(long)]
    preset: Option<String>,
    /// Convert model_state instead of ema_state.
    #[arg(long)]
    raw: bool,
    /// f32, f16, int8 or int4.
    #[arg(long, default_value = "f32", value_parser = parse_from_str::<Quantization>)]
    quant: Quantization,
    /// Number of diffusion timesteps (default: model_args' num_timesteps, else the preset's).
    #[arg(long)]
    timesteps: Option<usize>,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result {
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
