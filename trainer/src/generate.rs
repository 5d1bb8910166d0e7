//! `trainer generate`: PNGs from a weight file or straight from a run's latest checkpoint, on
//! the backend the user chose.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::SamplerConfig;
use dit_web::generate::{generate_pngs, Batches, GenerateError};

use crate::backend::{run_on, BackendChoice, OnBackend};
use crate::run_dir::RunDir;

/// Where the weights come from.
pub enum Weights<'a> {
    /// A weight file from `trainer export` (or the page's `www/weights/`).
    File(&'a Path),
    /// A run folder's latest checkpoint: its EMA weights, or the raw ones.
    Run { run: &'a RunDir, ema: bool },
}

/// Writes one PNG per label and a grid into `out` (see [`generate_pngs`]), `batch` images per
/// network call (batches side by side on the CPU); returns the paths.
pub fn generate(
    weights: Weights,
    guide: Option<&Path>,
    labels: &[String],
    sampler: &SamplerConfig,
    batch: usize,
    out: &Path,
    backend: BackendChoice,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let bytes = match weights {
        Weights::File(path) => {
            std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Weights::Run { run, ema } => crate::export::from_run(run, ema)?.to_bytes()?,
    };
    let guide = guide
        .map(|path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())))
        .transpose()?;
    struct Task<'a> {
        bytes: &'a [u8],
        guide: Option<&'a [u8]>,
        labels: &'a [String],
        sampler: &'a SamplerConfig,
        batches: Batches,
        out: &'a Path,
    }
    impl OnBackend for Task<'_> {
        type Output = Result<Vec<PathBuf>, GenerateError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            generate_pngs::<B::InnerBackend, _>(
                self.bytes,
                self.guide,
                self.labels,
                self.sampler,
                self.batches,
                self.out,
                &device,
            )
        }
    }
    let task = Task {
        bytes: &bytes,
        guide: guide.as_deref(),
        labels,
        sampler,
        batches: backend.batches(batch),
        out,
    };
    Ok(run_on(backend, task)??)
}
