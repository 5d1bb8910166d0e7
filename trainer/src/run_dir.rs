//! A run folder: the one place that knows where a training run keeps each of its files.
//!
//! ```text
//! <run>/run.json              RunConfig: the whole network, schedule, labels and training settings
//! <run>/metrics.jsonl         one MetricsRow per optimizer step
//! <run>/checkpoints/latest    the name of the newest checkpoint folder
//! <run>/checkpoints/step-N/   model, ema, optimizer (burn records), state.json
//! <run>/samples/step-N.png    fixed-noise sample grids
//! <run>/loss.png              the loss curve, redrawn from metrics.jsonl
//! <run>/progress.gif          the sample grids in step order
//! ```

use std::path::{Path, PathBuf};

use dit_web::{DitConfig, Preset, ScheduleConfig};
use serde::{Deserialize, Serialize};

use crate::train::TrainConfig;

/// `run.json`: what a run trains, in full (so export, generate and a resume need no preset
/// table, and a run of a modified network exports that network), and how.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The preset the run started from: a name for people, the fields below are what counts.
    pub preset: String,
    pub dataset: String,
    /// The network; its `class_dropout` is the training's label dropout.
    pub model: DitConfig,
    pub schedule: ScheduleConfig,
    pub labels: Vec<String>,
    #[serde(flatten)]
    pub train: TrainConfig,
}

impl RunConfig {
    /// `preset`'s network, schedule and labels trained with `train` (its label dropout decides
    /// the network's null label).
    pub fn new(preset: &Preset, train: TrainConfig) -> Self {
        Self {
            preset: preset.name.into(),
            dataset: preset.dataset.into(),
            model: preset.model.clone().with_class_dropout(train.label_dropout),
            schedule: preset.schedule.clone(),
            labels: preset.labels.clone(),
            train,
        }
    }

    /// Reads `run.json`. Files written before it held the network (only a preset name beside
    /// the training settings) get that preset's network, schedule and labels.
    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if value.get("model").is_some() {
            return serde_json::from_value(value).map_err(|e| e.to_string());
        }
        let name = value
            .get("preset")
            .and_then(|p| p.as_str())
            .ok_or("neither a network (`model`) nor a preset name")?;
        let preset = Preset::by_name(name).ok_or_else(|| format!("unknown preset `{name}`"))?;
        let train: TrainConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        Ok(Self::new(&preset, train))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("no checkpoint in {0} (expected checkpoints/latest, written by `trainer train`)")]
    NoCheckpoint(PathBuf),
}

/// A run folder (it need not exist yet).
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("run.json")
    }

    pub fn metrics_file(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The folder of the checkpoint after `step` optimizer steps.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(format!("step-{step:08}"))
    }

    /// The step of a checkpoint folder named by [`RunDir::checkpoint`].
    pub fn checkpoint_step(folder: &Path) -> Option<u64> {
        folder
            .file_name()?
            .to_str()?
            .strip_prefix("step-")?
            .parse()
            .ok()
    }

    /// The file naming the newest checkpoint.
    pub fn latest_file(&self) -> PathBuf {
        self.checkpoints().join("latest")
    }

    /// The newest checkpoint's folder.
    pub fn latest_checkpoint(&self) -> Result<PathBuf, RunError> {
        let name = std::fs::read_to_string(self.latest_file())
            .map_err(|_| RunError::NoCheckpoint(self.root.clone()))?;
        Ok(self.checkpoints().join(name.trim()))
    }

    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The sample grid drawn after `step` optimizer steps.
    pub fn sample_grid(&self, step: u64) -> PathBuf {
        self.samples().join(format!("step-{step:08}.png"))
    }

    pub fn loss_plot(&self) -> PathBuf {
        self.root.join("loss.png")
    }

    pub fn progress_gif(&self) -> PathBuf {
        self.root.join("progress.gif")
    }

    pub fn read_config(&self) -> Result<RunConfig, RunError> {
        let path = self.config_file();
        let bytes = std::fs::read(&path).map_err(|e| RunError::Config {
            reason: format!("{e} (is {} a run folder?)", self.root.display()),
            path: path.clone(),
        })?;
        RunConfig::from_json(&bytes).map_err(|reason| RunError::Config { path, reason })
    }

    /// Creates the folder and writes `run.json`.
    pub fn write_config(&self, config: &RunConfig) -> Result<(), RunError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RunError::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let json = serde_json::to_vec_pretty(config).expect("the run config serializes");
        let path = self.config_file();
        dit_web::atomic::write(&path, &json).map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::lr::{Decay, LrSchedule};

    fn train_config() -> TrainConfig {
        TrainConfig {
            steps: 10,
            batch_size: 8,
            micro_batch: 0,
            lr: LrSchedule {
                max_lr: 1e-3,
                warmup: 2,
                total: 10,
                decay: Decay::Cosine,
            },
            ema_decay: 0.999,
            ema_warmup: true,
            label_dropout: 0.0,
            grad_clip: None,
            seed: 3,
            checkpoint_every: 5,
            keep_every: 0,
            sample_every: 0,
            spike_factor: 10.0,
            init_weights: None,
            time_budget: None,
            read_every: 1,
        }
    }

    #[test]
    fn run_json_holds_the_whole_network() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let mut preset = Preset::mnist_cpu();
        preset.model.depth = 2; // not the preset's: the file must say so itself
        let config = RunConfig::new(&preset, train_config());
        assert_eq!(config.model.class_dropout, 0.0);
        run.write_config(&config).unwrap();
        assert_eq!(run.read_config().unwrap(), config);
    }

    #[test]
    fn run_json_from_before_it_held_the_network_reads_as_its_preset() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        // The shape of run.json up to November 2026 (for example ../shared/runs/mnist-h200).
        let mut legacy = serde_json::to_value(train_config()).unwrap();
        legacy["preset"] = "mnist".into();
        legacy["label_dropout"] = 0.1.into();
        std::fs::write(run.config_file(), legacy.to_string()).unwrap();
        let config = run.read_config().unwrap();
        assert_eq!(config.model, Preset::mnist().model.with_class_dropout(0.1));
        assert_eq!(config.train.label_dropout, 0.1);
        assert_eq!(config.labels.len(), 10);

        legacy["preset"] = "mnist-huge".into();
        std::fs::write(run.config_file(), legacy.to_string()).unwrap();
        let err = run.read_config().unwrap_err().to_string();
        assert!(err.contains("unknown preset `mnist-huge`"), "{err}");
    }

    #[test]
    fn checkpoint_folders_name_their_step() {
        let run = RunDir::new("r");
        assert_eq!(RunDir::checkpoint_step(&run.checkpoint(1234)), Some(1234));
        assert_eq!(
            RunDir::checkpoint_step(Path::new("r/checkpoints/latest")),
            None
        );
        assert_eq!(
            RunDir::checkpoint_step(&dit_web::atomic::temporary_path(&run.checkpoint(5))),
            None
        );
        assert!(matches!(
            run.latest_checkpoint(),
            Err(RunError::NoCheckpoint(_))
        ));
    }
}
