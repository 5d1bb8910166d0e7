//! When a run ends, reads its metrics back, draws a sample grid and checkpoints: the schedule's
//! length (the run's, or shorter under a time budget) and the cadence of the rest.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::budget::TimeBudget;
use super::config::{RunConfig, TrainConfig};
use super::error::TrainError;
use super::lr::LrSchedule;
use super::parallel::Replicas;
use crate::run_dir::RunDir;

/// The schedule a call trains to: the run's, or shorter under a time budget.
pub(super) struct Plan {
    pub total: u64,
    pub lr: LrSchedule,
    budget: Option<TimeBudget>,
    /// `--steps`: the most a budget may fit.
    most: u64,
}

impl Plan {
    pub fn new(config: &TrainConfig, first_step: u64) -> Self {
        Self {
            total: config.steps,
            lr: config.lr,
            budget: config
                .time_budget
                .map(|seconds| TimeBudget::new(seconds, Instant::now(), first_step)),
            most: config.steps,
        }
    }

    /// At a read-back after `step`: fits the schedule to the time budget and, with several
    /// devices, agrees with them on it and on stopping. Returns (stop, whether the total moved).
    pub fn at_read<B: AutodiffBackend>(
        &mut self,
        step: u64,
        now: Instant,
        stop: bool,
        replicas: &mut Replicas<'_, B>,
    ) -> Result<(bool, bool), TrainError> {
        let fitted = self
            .budget
            .as_mut()
            .and_then(|b| b.before_step(step, now, self.most));
        let (stop, total) = replicas.agree(stop, fitted.unwrap_or(self.total))?;
        let moved = total != self.total;
        if moved {
            self.total = total;
            self.lr.total = total;
        }
        Ok((stop, moved))
    }
}

/// Writes the steps a time budget chose into `run.json`, so that a resume keeps that schedule.
pub(super) fn record_budgeted_steps(
    run: &RunDir,
    run_config: &RunConfig,
    total: u64,
) -> Result<(), TrainError> {
    let mut recorded = run_config.clone();
    recorded.train.steps = total;
    recorded.train.lr.total = total;
    recorded.write(run)?;
    eprintln!(
        "time budget {} s: training to step {total}",
        run_config.train.time_budget.unwrap_or_default()
    );
    Ok(())
}

/// When a run reads its metrics back from the device, draws a sample grid and checkpoints.
pub(super) struct Cadence {
    read_every: u64,
    sample_every: u64,
    checkpoint_every: u64,
}

impl Cadence {
    pub fn new(config: &TrainConfig) -> Self {
        Self {
            read_every: config.read_every.max(1),
            sample_every: config.sample_every,
            checkpoint_every: config.checkpoint_every,
        }
    }

    /// Whether `step` is a multiple of `every` (0: never).
    fn due(every: u64, step: u64) -> bool {
        every > 0 && step.is_multiple_of(every)
    }

    /// After `step`, with `unread` steps not read back yet: every `read_every` steps, and always
    /// before a sample grid, a checkpoint or the end (which must see the latest numbers).
    pub fn read(&self, step: u64, unread: usize, at_end: bool) -> bool {
        unread as u64 >= self.read_every
            || at_end
            || Self::due(self.sample_every, step)
            || Self::due(self.checkpoint_every, step)
    }

    pub fn sample(&self, step: u64, at_end: bool) -> bool {
        self.sample_every > 0 && (Self::due(self.sample_every, step) || at_end)
    }

    pub fn checkpoint(&self, step: u64, at_end: bool, stopping: bool) -> bool {
        Self::due(self.checkpoint_every, step) || at_end || stopping
    }
}
