//! The steps run but not yet read back, and the read-backs: the divergence check, `metrics.jsonl`
//! and the caller's progress callback.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use crate::path_error::PathError;
use burn::tensor::backend::Backend;

use super::config::TrainConfig;
use super::error::TrainError;
use super::step::StepStats;
use crate::report::metrics::{Metrics, MetricsRow};
use crate::run_dir::RunDir;

/// The steps run but not yet read back, and what the read-backs have seen: each step's loss
/// goes through the divergence check (not finite, or over `spike_factor` times the running
/// average) into `metrics.jsonl` and to the caller's `on_step`.
pub(super) struct Monitor<B: Backend> {
    unread: Vec<(u64, f64, StepStats<B>)>,
    /// The running average of the loss (0.98), carried across resumes.
    pub average: Option<f64>,
    spike_factor: f64,
    batch: usize,
    /// When the last read-back ended.
    pub read_at: Instant,
    /// The checkpoint a divergence points the user back to.
    pub last_good: String,
    metrics: Option<Metrics>,
    metrics_file: PathBuf,
    /// (step, loss) of every step read back.
    pub losses: Vec<(u64, f64)>,
}

impl<B: Backend> Monitor<B> {
    /// `average`: the running average of the loss where the run resumes (none for a new run).
    /// `writes`: whether this machine keeps `metrics.jsonl` (the others of a multi-node run
    /// read the same numbers and keep nothing).
    pub fn open(
        run: &RunDir,
        config: &TrainConfig,
        average: Option<f64>,
        writes: bool,
    ) -> Result<Self, TrainError> {
        let metrics_file = run.metrics_file();
        let metrics = match writes {
            true => Some(Metrics::open(&metrics_file).map_err(PathError::at(&metrics_file))?),
            false => None,
        };
        let last_good = run
            .latest_checkpoint()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "none (no checkpoint yet)".into());
        Ok(Self {
            unread: Vec::new(),
            average,
            spike_factor: config.spike_factor,
            batch: config.batch_size,
            read_at: Instant::now(),
            last_good,
            metrics,
            metrics_file,
            losses: Vec::new(),
        })
    }

    pub fn push(&mut self, step: u64, lr: f64, stats: StepStats<B>) {
        self.unread.push((step, lr, stats));
    }

    pub fn unread(&self) -> usize {
        self.unread.len()
    }

    /// Reads every unread step back with one wait for the device. Returns whether `on_step`
    /// asked to stop; a diverged loss is an error naming the last good checkpoint.
    pub fn read(
        &mut self,
        on_step: &mut impl FnMut(&MetricsRow) -> ControlFlow<()>,
    ) -> Result<bool, TrainError> {
        let (rows, stats): (Vec<(u64, f64)>, Vec<_>) = self
            .unread
            .drain(..)
            .map(|(step, lr, stats)| ((step, lr), stats))
            .unzip();
        let values = StepStats::read_all(stats);
        let now = Instant::now();
        // The device's time for these steps, shared out evenly.
        let seconds = now.duration_since(self.read_at).as_secs_f64();
        let images_per_sec = (self.batch * rows.len()) as f64 / seconds;
        self.read_at = now;
        let mut stop = false;
        for ((step, lr), (loss, grad_norm)) in rows.into_iter().zip(values) {
            let spike = self
                .average
                .is_some_and(|avg| loss > self.spike_factor * avg.max(1e-3));
            if !loss.is_finite() || spike {
                return Err(TrainError::Diverged {
                    step: step - 1,
                    loss,
                    last_good: self.last_good.clone(),
                });
            }
            self.average = Some(self.average.map_or(loss, |a| 0.98 * a + 0.02 * loss));
            self.losses.push((step - 1, loss));
            let row = MetricsRow {
                step,
                loss,
                lr,
                grad_norm,
                images_per_sec,
            };
            if let Some(metrics) = self.metrics.as_mut() {
                metrics
                    .append(&row)
                    .map_err(PathError::at(&self.metrics_file))?;
            }
            stop |= on_step(&row).is_break();
        }
        Ok(stop)
    }
}
