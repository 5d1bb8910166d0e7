use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::{selu, silu};
use burn::tensor::{backend::Backend, Tensor};

use super::embed::zero_linear;
use super::norm::{layer_norm, modulate};
use crate::config::{DitConfig, Flavour};

/// `final_layer`: adaLN (shift, scale from c) -> Linear(d, p*p*C), both zero-initialised so an
/// untrained DiT predicts exactly zero noise.
#[derive(Module, Debug)]
pub struct FinalLayer<B: Backend> {
    pub adaln_modulation: Linear<B>,
    pub linear: Linear<B>,
    #[module(skip)]
    flavour: Flavour,
}

impl<B: Backend> FinalLayer<B> {
    pub fn new(config: &DitConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let out = config.patch_size * config.patch_size * config.in_channels;
        Self {
            adaln_modulation: zero_linear(d, 2 * d, device),
            linear: zero_linear(d, out, device),
            flavour: config.flavour,
        }
    }

    /// `x: [B, N, d]`, `c: [B, d]` -> `[B, N, p*p*C]`.
    pub fn forward(&self, x: Tensor<B, 3>, c: Tensor<B, 2>) -> Tensor<B, 3> {
        let c = match self.flavour {
            Flavour::Paper => silu(c),
            Flavour::Seed => selu(c),
        };
        let mut parts = self.adaln_modulation.forward(c).chunk(2, 1);
        let second = parts.pop().expect("two chunks");
        let first = parts.pop().expect("two chunks");
        // Paper: (shift, scale); seed: (scale, shift).
        let (shift, scale) = match self.flavour {
            Flavour::Paper => (first, second),
            Flavour::Seed => (second, first),
        };
        self.linear.forward(modulate(layer_norm(x), shift, scale))
    }
}
