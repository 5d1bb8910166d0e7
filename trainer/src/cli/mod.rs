//! The command line, one file per command: its clap arguments and a thin call into the `trainer`
//! library. What several commands share (the model flags, the sampler flags, value parsers, the
//! progress bar) lives here.

pub mod bench;
pub mod check_step;
pub mod classifier;
pub mod download;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import_torch;
pub mod lr_find;
pub mod report;
pub mod shapes;
pub mod train;

use std::path::PathBuf;

use clap::Args;
use dit_web::diffusion::{DdpmVariance, SamplerConfig, SamplerKind};
use dit_web::{Conditioning, Flavour, Preset};
use indicatif::{ProgressBar, ProgressStyle};
use trainer::backend::BackendChoice;

/// What every command returns: its error is printed as one line.
pub type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// A preset and the changes to its network (train, bench, lr-find, check-step); run.json and the
/// exported weight file record the result.
#[derive(Args)]
pub struct ModelArgs {
    /// Model preset: mnist, mnist-cpu or celeba. Default: mnist-cpu (bench: mnist).
    #[arg(long)]
    pub preset: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

impl ModelArgs {
    /// The preset asked for (else `default`) with the network flags given on top, checked.
    pub fn resolve(&self, default: &str) -> Result<Preset, String> {
        let preset = preset(self.preset.as_deref().unwrap_or(default))?;
        self.network.apply(preset)
    }
}

/// Changes to the preset's network.
#[derive(Args)]
pub struct NetworkArgs {
    /// How t and y reach the blocks (the paper's Figure 5 designs): adaln-zero (the preset's),
    /// adaln, cross-attn or in-context.
    #[arg(long, value_parser = parse_from_str::<Conditioning>)]
    pub conditioning: Option<Conditioning>,
    /// seed (the reference PyTorch DiT's details, the presets') or paper (the official DiT
    /// models.py: 2-D position table, SiLU, tanh GELU, fused qkv).
    #[arg(long, value_parser = parse_from_str::<Flavour>)]
    pub flavour: Option<Flavour>,
    /// Token width d (a multiple of 4 and of --num-heads).
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Transformer blocks.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    pub num_heads: Option<usize>,
    /// Side of a square patch (divides the image side).
    #[arg(long)]
    pub patch_size: Option<usize>,
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

/// A preset by name, or a message listing the names.
pub fn preset(name: &str) -> Result<Preset, String> {
    Preset::by_name(name).ok_or_else(|| {
        format!(
            "unknown preset `{name}` (expected one of: {})",
            Preset::NAMES.join(", ")
        )
    })
}

/// The sampler flags `generate` and `eval` share.
#[derive(Args)]
pub struct SamplerArgs {
    /// dpm++, ddim or ddpm.
    #[arg(long, default_value = "dpm++", value_parser = parse_from_str::<SamplerKind>)]
    pub sampler: SamplerKind,
    /// Sampler steps (1 to the model's number of timesteps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// DDIM's noise level: 0 deterministic, 1 the noise of DDPM's ancestral steps.
    #[arg(long, default_value_t = 0.0, value_parser = parse_eta)]
    pub eta: f64,
    /// Classifier-free guidance scale (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub cfg: f32,
    /// Guide only the steps whose timestep t lies in LO..=HI (e.g. `100,399`); the other steps
    /// run the network once, on half the images. Default: every step.
    #[arg(long, value_name = "LO,HI", value_parser = parse_interval)]
    pub cfg_interval: Option<[usize; 2]>,
    /// Clamp each step's prediction of the clean image to [-1, 1] (static thresholding).
    #[arg(long)]
    pub clip_x0: bool,
    /// DDPM's step variance: small (the posterior's, beta-tilde) or large (the step's beta).
    #[arg(long, default_value = "small")]
    pub ddpm_variance: DdpmVariance,
    /// Autoguidance scale (1 = off; needs --guide-weights): every step moves (A - 1) times the
    /// difference between the model's and the guiding model's conditional predictions further
    /// from the guiding one. Combines with --cfg.
    #[arg(
        long,
        value_name = "A",
        default_value_t = 1.0,
        requires = "guide_weights"
    )]
    pub autoguidance: f32,
    /// The guiding model of autoguidance: a worse model of the same images, labels and noise
    /// schedule (smaller or less trained); it runs on the images at every step.
    #[arg(long, value_name = "WEIGHTS")]
    pub guide_weights: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per network call: larger requests run as several batches with the same images,
    /// side by side (one per core) on the CPU backends.
    #[arg(long, default_value_t = dit_web::generate::DEFAULT_BATCH, value_parser = parse_positive)]
    pub batch: usize,
    /// Where the network runs.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
}

impl SamplerArgs {
    pub fn config(&self) -> SamplerConfig {
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

/// A value of a type that parses itself (presets' enums: their messages name the choices).
pub fn parse_from_str<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

/// `LO,HI` (the spelling the docs use; `LO-HI` and `LO HI`, the page's and the widget's older
/// ones, read too).
pub fn parse_interval(s: &str) -> Result<[usize; 2], String> {
    let bad =
        || format!("`{s}` is not an interval of timesteps LO,HI with LO <= HI (e.g. 100,399)");
    let (lo, hi) = s.trim().split_once([',', '-', ' ']).ok_or_else(bad)?;
    match (lo.trim().parse::<usize>(), hi.trim().parse::<usize>()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok([lo, hi]),
        _ => Err(bad()),
    }
}

pub fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
}

pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

pub fn parse_eta(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(eta) if (0.0..=1.0).contains(&eta) => Ok(eta),
        _ => Err(format!("`{s}` is not a number in 0..=1")),
    }
}

/// A progress bar that draws only on a terminal (indicatif's default).
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}

/// Writes `value` as pretty JSON to `path`, whole or not at all.
pub fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result {
    trainer::atomic::write(path, &serde_json::to_vec_pretty(value)?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guidance_interval_reads_in_each_spelling() {
        for s in ["100,399", "100-399", "100 399", " 100, 399 "] {
            assert_eq!(super::parse_interval(s), Ok([100, 399]), "{s}");
        }
        for s in ["399,100", "100", "a,b", "100;399"] {
            assert!(super::parse_interval(s).is_err(), "{s}");
        }
    }
}
