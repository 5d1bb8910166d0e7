//! A training job: its settings, its data, its run folder, whether it resumes, and its devices,
//! made once; [`super::run`] runs it on the backend the user chose.

use std::path::Path;

use super::config::RunConfig;
use super::error::TrainError;
use super::parallel::{Fault, Topology};
use crate::data::{Dataset, Source};
use crate::run_dir::RunDir;

/// Everything a training run needs. [`Job::open`] reads the dataset the settings name;
/// [`Job::new`] takes a dataset already open (tests, a library user's own).
pub struct Job<D> {
    /// What the run trains and how (`run.json`).
    pub config: RunConfig,
    pub data: D,
    /// Where checkpoints, metrics and sample grids go (machine 0 of a multi-machine run writes).
    pub run_dir: RunDir,
    /// Continue from the run folder's latest checkpoint (its `run.json` must describe the same
    /// network).
    pub resume: bool,
    /// This machine's devices and the machines taking part.
    pub topology: Topology,
    /// A device made to fail (tests of the failure path); none in a real run.
    pub fault: Option<Fault>,
}

impl Job<Source> {
    /// A job on the dataset `config` names, read from `data` (MNIST: the four IDX files; CelebA:
    /// the official layout; images: one sub-folder per label). It opens before any backend
    /// starts, so a wrong folder fails fast.
    pub fn open(config: RunConfig, data: &Path, run_dir: RunDir) -> Result<Self, TrainError> {
        let (model, labels) = (&config.model, &config.labels);
        let source = crate::data::open(data, &config.dataset, model, labels)?;
        Ok(Self::new(config, source, run_dir))
    }
}

impl<D: Dataset> Job<D> {
    /// A new run (not resumed) of `config` on `data` into `run_dir`, on one device.
    pub fn new(config: RunConfig, data: D, run_dir: RunDir) -> Self {
        Self {
            config,
            data,
            run_dir,
            resume: false,
            topology: Topology::default(),
            fault: None,
        }
    }

    /// The same job, resumed from its latest checkpoint when `resume` is set.
    pub fn resuming(self, resume: bool) -> Self {
        Self { resume, ..self }
    }

    /// The same job on `topology`'s devices and machines.
    pub fn on(self, topology: Topology) -> Self {
        Self { topology, ..self }
    }
}
