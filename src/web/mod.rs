//! The browser face (wasm32 only): what `wasm-pack build` exports to JavaScript.
//!
//! - [`device`]: WebGPU through burn-wgpu when the page found an adapter, else burn's CPU backend.
//! - [`api`]: [`api::DitSession`]: load a weight file from bytes, `generate` asynchronously with a
//!   progress callback, RGBA out. Every failure is a JS exception carrying a message.
//!
//! The sampler is the same host-side state machine as natively, so the same weights, labels, seed
//! and sampler settings give the same image here and from `trainer generate`.

pub mod api;
pub mod device;
