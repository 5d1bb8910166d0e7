//! From a run folder to the weight file the page loads.

use std::path::Path;

use crate::path_error::PathError;
use dit_web::weights::{quant, Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};

use crate::run_dir::{RunDir, RunError};
use crate::train::checkpoint::{self, CheckpointError};
use crate::Cpu;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Weights(#[from] dit_web::weights::WeightError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// The latest checkpoint's EMA (or raw) weights as an f32 [`WeightFile`], described by the run's
/// `run.json`.
pub fn from_run(run: &RunDir, ema: bool) -> Result<WeightFile, ExportError> {
    let config = crate::train::config::RunConfig::read(run)?;
    let dir = run.latest_checkpoint()?;
    let state = checkpoint::load_state(&dir)?;
    let device = Default::default();
    let model = checkpoint::load_weights::<Cpu>(
        &dir,
        if ema { "ema" } else { "model" },
        config.model.init(&device),
        &device,
    )?;
    let meta = WeightsMeta {
        format_version: FORMAT_VERSION,
        model: config.model,
        schedule: config.schedule,
        labels: config.labels,
        dataset: config.dataset,
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

/// Encodes `file` with `quantization` and writes it to `out` whole or not at all.
pub fn write(
    file: WeightFile,
    quantization: Quantization,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    let (bytes, report) = encode(file, quantization)?;
    crate::atomic::write(out, &bytes).map_err(PathError::at(out))?;
    Ok(report)
}

/// Writes `card` as `NAME.card.json` beside the weight file `weights` (`NAME.safetensors`), where
/// the page's catalogue (`tools/catalogue.mjs`) reads it, whole or not at all; returns its path.
pub fn write_card(
    weights: &Path,
    card: &serde_json::Value,
) -> Result<std::path::PathBuf, ExportError> {
    let path = weights.with_extension("card.json");
    let json = serde_json::to_vec_pretty(card).expect("a JSON value serialises");
    crate::atomic::write(&path, &json).map_err(PathError::at(&path))?;
    Ok(path)
}

/// The model card `trainer export` writes beside a weight file (`NAME.card.json`, read by the
/// page's catalogue), replacing the card of whatever file was there before: the page's start for
/// this model (guided only where the model has a null label) and how it was trained. Quality and
/// speed lines come from measuring it (`trainer eval`, the bench page) and are added by hand.
pub fn card(meta: &WeightsMeta) -> serde_json::Value {
    let guidance = if meta.model.has_null_label() {
        2.0
    } else {
        1.0
    };
    serde_json::json!({
        "sampler": "dpm++",
        "steps": 20,
        "guidance": guidance,
        "trained": format!(
            "trained {} steps{}",
            meta.step,
            if meta.model.has_null_label() { "" } else { " without label dropout (no guidance)" }
        ),
    })
}
