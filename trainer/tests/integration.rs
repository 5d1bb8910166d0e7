//! Tests of the trainer: data, training, checkpoints, the step checker, import, the CLI.
//!
//! One test crate (one link) rather than one per file: each crate links burn again, and on a
//! two-core CI machine that was most of `make test`. Run one file's tests with
//! `cargo test --test integration <file>::`.

mod common;

mod celeba;
mod check;
mod cli;
mod download;
mod folder;
mod generate;
mod import_torch;
// Several machines under `mpirun` (a build with MPI).
#[cfg(feature = "mpi")]
mod machines;
mod parallel;
mod reference;
mod train;
