//! From a run folder to the weight file the page loads.

use std::path::Path;

use dit_web::weights::{quant, Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};
use dit_web::Preset;

use crate::train::checkpoint::{self, CheckpointError};
use crate::train::TrainConfig;
use crate::Cpu;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Run(String),
    #[error(transparent)]
    Weights(#[from] dit_web::weights::WeightError),
}

/// The preset and training config a run was started with (`run.json`).
pub fn run_config(run: &Path) -> Result<(Preset, TrainConfig), ExportError> {
    let path = run.join("run.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        ExportError::Run(format!(
            "{}: {e} (is {} a run folder?)",
            path.display(),
            run.display()
        ))
    })?;
    let config: TrainConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ExportError::Run(format!("{}: {e}", path.display())))?;
    let preset = Preset::by_name(&config.preset).ok_or_else(|| {
        ExportError::Run(format!(
            "unknown preset `{}` in {}",
            config.preset,
            path.display()
        ))
    })?;
    Ok((preset, config))
}

/// The latest checkpoint's EMA (or raw) weights as an f32 [`WeightFile`].
pub fn from_run(run: &Path, ema: bool) -> Result<WeightFile, ExportError> {
    let (preset, config) = run_config(run)?;
    let dir = checkpoint::latest(run)?;
    let state = checkpoint::load_state(&dir)?;
    let device = Default::default();
    let model_config = config.model_config(&preset);
    let model = checkpoint::load_weights::<Cpu>(
        &dir,
        if ema { "ema" } else { "model" },
        model_config.init(&device),
        &device,
    )?;
    let meta = WeightsMeta {
        format_version: FORMAT_VERSION,
        model: model_config,
        schedule: preset.schedule.clone(),
        labels: preset.labels.clone(),
        dataset: preset.dataset.into(),
        step: state.step,
        ema,
        quantization: Quantization::F32,
    };
    Ok(WeightFile::from_model(&model, meta))
}

/// What `trainer export` prints.
pub struct ExportReport {
    pub bytes: usize,
    /// The matrix with the largest relative RMS error, and that error.
    pub worst: Option<(String, quant::QuantError)>,
}

/// Encodes `file` with `quantization` and measures the error of every matrix after a round trip.
pub fn encode(
    mut file: WeightFile,
    quantization: Quantization,
) -> Result<(Vec<u8>, ExportReport), ExportError> {
    file.meta.quantization = quantization;
    let bytes = file.to_bytes()?;
    let back = WeightFile::from_bytes(&bytes)?;
    let worst = file.matrix_errors(&back).into_iter().next();
    let report = ExportReport {
        bytes: bytes.len(),
        worst,
    };
    Ok((bytes, report))
}
