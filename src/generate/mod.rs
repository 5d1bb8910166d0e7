//! The whole pipeline: model + labels + sampler settings -> images.
//!
//! [`Denoiser`] turns a sampler's host batch into network inputs and the network's output back
//! into guided noise; [`sampling_loop`] drives it, natively with blocking read-backs ([`sample`]
//! and the batched variants) and in the browser with awaited ones (`web`).

mod checks;
mod denoiser;
mod error;
mod images;
mod sampling;

pub use checks::{check_steps, max_steps, resolve_labels};
pub use denoiser::Denoiser;
pub use error::GenerateError;
pub use images::{draw_images, generate_images, load_guide, to_images, Generated, Models};
pub use sampling::{
    sample, sample_batched, sample_batched_guided, sampling_loop, Batches, StepTimes, DEFAULT_BATCH,
};
