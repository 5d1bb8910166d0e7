//! Fixed-noise sample grids: one image per class from the same seed every time, so grids from
//! successive steps show the model's progress (and become `progress.gif`).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use dit_web::diffusion::{NoiseSchedule, SamplerConfig};
use dit_web::generate::{sample, to_images, GenerateError};
use dit_web::image::{encode_png, grid};
use dit_web::Dit;

use crate::path_error::PathError;

/// The grid's sampler: DPM-Solver++ 20 steps, seed 0, no guidance, each step's prediction of the
/// clean image clamped to [-1, 1]. Without the clamp, a model early in training draws blocks of
/// saturated colour on schedules that end as noisy as `celeba`'s (alpha-bar 4.5e-5 at T = 1000):
/// there a first step's noise error is multiplied about 150 times in its prediction of the image.
pub fn grid_sampler() -> SamplerConfig {
    SamplerConfig {
        steps: 20,
        seed: 0,
        clip_x0: true,
        ..Default::default()
    }
}

/// Why a sample grid was not written.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Samples `per_class` images of every class and writes them as one PNG (a row per repeat).
pub fn write_grid<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    per_class: usize,
    path: &Path,
) -> Result<PathBuf, GridError> {
    let config = model.config();
    let labels: Vec<usize> = (0..per_class).flat_map(|_| 0..config.num_classes).collect();
    let batch = sample(model, schedule, &labels, &grid_sampler(), |_| {})?;
    let images = to_images(&batch, config.in_channels, config.input_size);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(PathError::at(dir))?;
    }
    let sheet = grid(&images, config.num_classes, 2);
    crate::atomic::write(path, &encode_png(&sheet)).map_err(PathError::at(path))?;
    Ok(path.to_path_buf())
}
