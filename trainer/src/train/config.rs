//! A run's settings: what it trains (network, schedule, labels) and how (steps, batch, learning
//! rate, EMA, cadence), and `run.json`, the file that holds both, with the migration of older
//! files. Where the file lives is [`crate::run_dir`]'s business.

use std::path::PathBuf;

use dit_web::{DitConfig, Preset, ScheduleConfig};

use crate::path_error::PathError;
use serde::{Deserialize, Serialize};

use super::lr::{self, LrSchedule};
use crate::run_dir::{RunDir, RunError};

/// How a run trains (what it trains is the rest of [`RunConfig`], saved with it as `run.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    /// Images per forward/backward pass; gradients of the passes add up to the whole batch's
    /// (0: the whole batch in one pass). Older run.json files have none.
    #[serde(default)]
    pub micro_batch: usize,
    pub lr: LrSchedule,
    pub ema_decay: f64,
    pub ema_warmup: bool,
    pub label_dropout: f64,
    /// Global gradient-norm clipping (as PyTorch's clip_grad_norm_), if set.
    pub grad_clip: Option<f64>,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub keep_every: u64,
    pub sample_every: u64,
    /// Stop when a loss exceeds this factor times the running average (NaN/inf always stop).
    pub spike_factor: f64,
    /// A weight file (`trainer export`) whose weights a new run starts from, model and EMA
    /// alike, instead of a random draw: training continued with a fresh optimizer and schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<PathBuf>,
    /// Seconds this call may train: once its speed is measured the schedule's total is cut to
    /// the steps that fit the rest (`steps` stays the most), so the cosine ends inside the
    /// budget ([`budget`]). run.json then records the steps chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget: Option<f64>,
    /// Steps between read-backs of the loss and gradient norm (at least 1). Each read waits for
    /// the device, so on a GPU reading every step keeps the host from queueing work ahead; the
    /// steps' metrics, progress and divergence check then come in groups. Sample grids,
    /// checkpoints and the end of the run always read first. Older run.json files have none.
    #[serde(default = "every_step")]
    pub read_every: u64,
}

fn every_step() -> u64 {
    1
}

impl TrainConfig {
    /// The settings a run of `preset` starts from: the reference's for its dataset (MNIST: 20,000
    /// steps of 64 at 1e-3 after 100 warmup steps; CelebA: 100,000 of 112 at 1e-4 after 200),
    /// cosine decay, EMA 0.9999, the preset's label dropout, checkpoints every 500 steps (kept
    /// every 5,000), sample grids every 1,000.
    pub fn defaults(preset: &Preset) -> Self {
        let mnist = preset.dataset == "mnist";
        let steps = if mnist { 20_000 } else { 100_000 };
        Self {
            steps,
            batch_size: if mnist { 64 } else { 112 },
            micro_batch: 0,
            lr: LrSchedule {
                max_lr: if mnist { 1e-3 } else { 1e-4 },
                warmup: if mnist { 100 } else { 200 },
                total: steps,
                decay: lr::Decay::Cosine,
            },
            ema_decay: 0.9999,
            ema_warmup: false,
            // A model for the page must be guidable: it trains the null label unless asked not
            // to (`--label-dropout 0` is the reference's MNIST recipe, which cannot be guided).
            label_dropout: if preset.model.has_null_label() {
                preset.model.class_dropout
            } else {
                DEFAULT_LABEL_DROPOUT
            },
            grad_clip: None,
            seed: 0,
            checkpoint_every: 500,
            keep_every: 5000,
            sample_every: 1000,
            spike_factor: 10.0,
            init_weights: None,
            time_budget: None,
            read_every: 1,
        }
    }
}

/// The label dropout of a preset without one (the reference's and the paper's 10 %).
pub const DEFAULT_LABEL_DROPOUT: f64 = 0.1;

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

    /// The same run on another dataset: its labels (one label-table row each) and, when given,
    /// its image side and channels; the network is checked.
    pub fn on_dataset(
        mut self,
        dataset: &str,
        labels: Vec<String>,
        side: Option<usize>,
        channels: Option<usize>,
    ) -> Result<Self, String> {
        self.dataset = dataset.into();
        self.model.num_classes = labels.len();
        self.labels = labels;
        self.model.input_size = side.unwrap_or(self.model.input_size);
        self.model.in_channels = channels.unwrap_or(self.model.in_channels);
        self.model
            .validate()
            .map_err(|e| format!("the network for these images is not valid: {e}"))?;
        Ok(self)
    }

    /// Reads the run folder's `run.json`.
    pub fn read(run: &RunDir) -> Result<Self, RunError> {
        let path = run.config_file();
        let bytes = std::fs::read(&path).map_err(|e| RunError::Config {
            reason: format!("{e} (is {} a run folder?)", run.root().display()),
            path: path.clone(),
        })?;
        Self::from_json(&bytes).map_err(|reason| RunError::Config { path, reason })
    }

    /// Creates the run folder and writes `run.json`, whole or not at all.
    pub fn write(&self, run: &RunDir) -> Result<(), RunError> {
        std::fs::create_dir_all(run.root()).map_err(PathError::at(run.root()))?;
        let json = serde_json::to_vec_pretty(self).expect("the run config serializes");
        let path = run.config_file();
        crate::atomic::write(&path, &json).map_err(PathError::at(&path))?;
        Ok(())
    }

    /// Parses `run.json`. Files written before it held the network (only a preset name beside
    /// the training settings) get that preset's network, schedule and labels.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if value.get("model").is_some() {
            let config: Self = serde_json::from_value(value).map_err(|e| e.to_string())?;
            config.model.validate().map_err(|e| format!("model: {e}"))?;
            config
                .schedule
                .validate()
                .map_err(|e| format!("schedule: {e}"))?;
            return Ok(config);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::lr::Decay;

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
    fn every_preset_trains_a_guidable_model_by_default() {
        for name in Preset::NAMES {
            let preset = Preset::by_name(name).unwrap();
            let run = RunConfig::new(&preset, TrainConfig::defaults(&preset));
            assert!(run.model.has_null_label(), "{name}");
        }
        // The reference's MNIST recipe has none; asked for, it trains one.
        assert!(!Preset::mnist().model.has_null_label());
        assert_eq!(TrainConfig::defaults(&Preset::mnist()).label_dropout, 0.1);
    }

    #[test]
    fn run_json_holds_the_whole_network() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let mut preset = Preset::mnist_cpu();
        preset.model.depth = 2; // not the preset's: the file must say so itself
        let config = RunConfig::new(&preset, train_config());
        assert_eq!(config.model.class_dropout, 0.0);
        config.write(&run).unwrap();
        assert_eq!(RunConfig::read(&run).unwrap(), config);
    }

    #[test]
    fn run_json_from_before_it_held_the_network_reads_as_its_preset() {
        // The shape of run.json before it held the network: training settings and a preset name.
        let mut legacy = serde_json::to_value(train_config()).unwrap();
        legacy["preset"] = "mnist".into();
        legacy["label_dropout"] = 0.1.into();
        let config = RunConfig::from_json(legacy.to_string().as_bytes()).unwrap();
        assert_eq!(config.model, Preset::mnist().model.with_class_dropout(0.1));
        assert_eq!(config.train.label_dropout, 0.1);
        assert_eq!(config.labels.len(), 10);

        legacy["preset"] = "mnist-huge".into();
        let err = RunConfig::from_json(legacy.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("unknown preset `mnist-huge`"), "{err}");
    }
}
