//! The diffusion process on the host: schedule, seeded noise, samplers and guidance.
//!
//! Samplers run on plain `f32` slices, not on backend tensors: the network is the only part that
//! needs a device, so one sampler implementation serves native and wasm, sync and async, and
//! gives the same numbers everywhere.

pub mod guidance;
pub mod noise;
pub mod sampler;
pub mod schedule;

pub use noise::{NoiseRng, NoiseState};
pub use sampler::{DdpmVariance, Sampler, SamplerConfig, SamplerKind, StepInfo};
pub use schedule::NoiseSchedule;
