//! The Diffusion Transformer: one definition for training and inference.
//!
//! Data flow of [`Dit::forward`]: `patchify` (x_embedder) + position table -> N blocks conditioned
//! on c = t_embedder(t) + y_embedder(y) -> final_layer -> `unpatchify`, predicting the noise.

mod attention;
mod block;
mod dit;
mod embed;
mod final_layer;
mod flavour;
mod kernels;
mod linear;
mod norm;

pub use attention::Attention;
pub use block::DitBlock;
pub use dit::Dit;
pub use embed::{
    position_table, timestep_frequencies, LabelEmbedder, PatchEmbed, TimestepEmbedder,
};
pub use final_layer::FinalLayer;
pub use kernels::OwnKernels;
