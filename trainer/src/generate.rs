//! `trainer generate`: PNGs from a weight file or straight from a run's latest checkpoint, on
//! the backend the user chose.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::SamplerConfig;
use dit_web::generate::{draw_images, Batches, GenerateError, Generated, Models};
use dit_web::image::{encode_png, grid};
use dit_web::model::OwnKernels;

use crate::backend::{run_on, BackendChoice, OnBackend};
use crate::path_error::PathError;
use crate::run_dir::RunDir;

/// Where the weights come from.
pub enum Weights<'a> {
    /// A weight file from `trainer export` (or the page's `www/weights/`).
    File(&'a Path),
    /// A run folder's latest checkpoint: its EMA weights, or the raw ones.
    Run { run: &'a RunDir, ema: bool },
}

/// Writes one PNG per label and a grid into `out` ([`write_pngs`]), `batch` images per network
/// call (batches side by side on the CPU); returns the paths.
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
    }
    impl OnBackend for Task<'_> {
        type Output = Result<Generated, GenerateError>;
        fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> Self::Output {
            let models = Models::<B::InnerBackend>::load(self.bytes, self.guide, &device)?
                .with_kernels(kernels);
            let (labels, config, guide) = (self.labels, self.sampler, models.guide.as_ref());
            draw_images(
                &models.model,
                guide,
                &models.meta,
                labels,
                config,
                self.batches,
            )
        }
    }
    let task = Task {
        bytes: &bytes,
        guide: guide.as_deref(),
        labels,
        sampler,
        batches: backend.batches(batch),
    };
    let generated = run_on(backend, task)??;
    Ok(write_pngs(&generated, out)?)
}

/// Writes `NNNN_label-<name>.png` for each image and `grid.png` (ten to a row) into `out_dir`,
/// each whole or not at all ([`crate::atomic`]). Returns the paths written, grid last.
pub fn write_pngs(generated: &Generated, out_dir: &Path) -> Result<Vec<PathBuf>, PathError> {
    std::fs::create_dir_all(out_dir).map_err(PathError::at(out_dir))?;
    let mut written = Vec::new();
    let images = &generated.images;
    for (k, (image, label)) in images.iter().zip(&generated.labels).enumerate() {
        let path = out_dir.join(format!("{k:04}_label-{label}.png"));
        crate::atomic::write(&path, &encode_png(image)).map_err(PathError::at(&path))?;
        written.push(path);
    }
    let path = out_dir.join("grid.png");
    let sheet = grid(images, images.len().min(10), 2);
    crate::atomic::write(&path, &encode_png(&sheet)).map_err(PathError::at(&path))?;
    written.push(path);
    Ok(written)
}
