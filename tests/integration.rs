//! Tests of the whole: model, sampler maths, weight files, generation and requests.
//!
//! One test crate (one link) rather than one per file: each crate links burn again, and on a
//! two-core CI machine that was most of `make test`. Run one file's tests with
//! `cargo test --test integration <file>::`.

mod common;

mod flex_kernels;
mod generate;
mod model;
mod readme;
mod request;
mod sampler_maths;
mod weights;
