//! The weight file: safetensors with a JSON metadata entry that makes it self-describing.
//!
//! Layout: one tensor per parameter, named by its module path (`blocks.3.attn.q.weight`), in
//! burn's orientation (Linear weights are `[in, out]`). Quantized matrices are stored as `I8`
//! plus a `<name>.qscale` F32 tensor of the same rank whose only non-1 axis is the output channel,
//! so `value = q * scale` broadcasts. Everything is dequantized to f32 at load.

mod error;
mod file;
mod format;
mod params;
pub mod quant;

pub use error::WeightError;
pub use file::{Quantization, WeightFile, WeightsMeta};
pub use format::{FORMAT_VERSION, METADATA_KEY};
pub use params::HostTensor;
