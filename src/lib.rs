//! # dit-web
//!
//! A Diffusion Transformer (Peebles & Xie, 2023) written once on `burn`, generic over the backend,
//! and used by both the native trainer and the browser.
//!
//! - [`config`]: [`DitConfig`], [`ScheduleConfig`] and the named [`Preset`]s.
//! - [`model`]: the network ([`Dit`]): `patchify` -> blocks -> `final_layer` -> `unpatchify`.
//! - [`diffusion`]: the noise schedule, the portable seeded noise, the samplers (DDPM, DDIM,
//!   DPM-Solver++(2M)) and classifier-free guidance.
//! - [`weights`]: the weight file (safetensors + JSON metadata) with f32 / f16 / int8 tensors.
//! - [`image`]: tensors to RGBA and PNG, grids.
//! - [`generate`]: the whole pipeline, from a model and a request to images (in memory: writing
//!   them is the caller's business).
//! - [`request`]: the page's generation request and the limits it is checked against.
//! - `web` (wasm32 only): the wasm-bindgen API the page's worker calls.

pub mod config;
pub mod diffusion;
pub mod generate;
pub mod image;
pub mod model;
pub mod request;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;

pub use config::{Conditioning, Convention, DitConfig, Flavour, Preset, ScheduleConfig};
pub use model::Dit;
