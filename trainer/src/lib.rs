//! The native trainer: data -> train -> checkpoint -> export. `main.rs` holds only the CLI.

pub mod data;
pub mod eval;
pub mod export;
pub mod import_torch;
pub mod report;
pub mod train;

/// The CPU backend used for training without a GPU, and for export and generation.
pub type Cpu = burn::backend::NdArray<f32>;
