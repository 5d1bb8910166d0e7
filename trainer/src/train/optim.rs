//! The optimizer: one constructor for every command and benchmark that steps the network, so
//! `trainer bench` and `cargo bench` time the optimizer `trainer train` runs.

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;
use dit_web::Dit;

/// AdamW over a DiT's parameters.
pub type Adam<B> = OptimizerAdaptor<AdamW, Dit<B>, B>;

/// AdamW as the reference trains: betas 0.9 and 0.999, epsilon 1e-8 and no weight decay (its
/// `torch.optim.AdamW(..., weight_decay=0)`). The learning rate comes with each step
/// ([`super::lr::LrSchedule`]).
pub fn adamw<B: AutodiffBackend>() -> Adam<B> {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, Dit<B>>()
}
