//! Training: a [`Job`] (settings, data, run folder, devices) run by the loop in [`run`]; one
//! optimizer step in [`step`]; where a run starts, how it is monitored, its sample grids and its
//! checkpoints each in a file of their own; the data-parallel runtime in [`parallel`].

pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod ema;
mod error;
pub mod grads;
mod grids;
mod job;
pub mod lr;
pub mod lr_find;
mod monitor;
pub mod optim;
pub mod parallel;
mod plan;
mod run;
pub mod signal;
mod start;
pub mod step;

pub use error::TrainError;
pub use job::Job;
pub use run::TrainOutcome;
