//! The native trainer: data -> train -> checkpoint -> export. `main.rs` holds only the CLI:
//! every command is one call into this library.

pub mod allocator;
pub mod atomic;
pub mod backend;
pub mod bench;
pub mod data;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import_torch;
pub mod path_error;
pub mod report;
pub mod run_dir;
pub mod train;

pub use path_error::PathError;

/// The CPU backend used for training without a GPU, and for export, generation and eval:
/// burn-flex, the fastest of burn's CPU backends at a training step here (`cargo bench -p trainer
/// --features candle --bench step`: flex 1.26 s, ndarray 1.42 s, candle 2.60 s per mnist-cpu step
/// of batch 64). Without the default `flex` feature, burn-ndarray.
#[cfg(feature = "flex")]
pub type Cpu = burn::backend::Flex<f32>;
/// The CPU backend (burn-ndarray: this build has no `flex` feature).
#[cfg(not(feature = "flex"))]
pub type Cpu = burn::backend::NdArray<f32>;
/// burn-ndarray, `--backend ndarray`.
pub type NdArray = burn::backend::NdArray<f32>;
