use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

use super::flavour::{shift_scale_positions, Activation};
use super::kernels::OwnKernels;
use super::linear::{forward_linear, zero_linear};
use super::norm::norm_modulate;
use crate::config::DitConfig;

/// `final_layer`: adaLN (shift, scale from c) -> Linear(d, p*p*C), both zero-initialised so an
/// untrained DiT predicts exactly zero noise.
#[derive(Module, Debug)]
pub struct FinalLayer<B: Backend> {
    pub adaln_modulation: Linear<B>,
    pub linear: Linear<B>,
    #[module(skip)]
    activation: Activation,
    /// Chunk positions of (shift, scale) in the regression's output.
    #[module(skip)]
    positions: (usize, usize),
    #[module(skip)]
    pub(super) kernels: OwnKernels,
}

impl<B: Backend> FinalLayer<B> {
    pub fn new(config: &DitConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let out = config.patch_size * config.patch_size * config.in_channels;
        Self {
            adaln_modulation: zero_linear(d, 2 * d, device),
            linear: zero_linear(d, out, device),
            activation: Activation::for_conditioning(config.flavour),
            positions: shift_scale_positions(config.flavour),
            kernels: OwnKernels::default(),
        }
    }

    /// `x: [B, N, d]`, `c: [B, d]` -> `[B, N, p*p*C]`.
    pub fn forward(&self, x: Tensor<B, 3>, c: Tensor<B, 2>) -> Tensor<B, 3> {
        let own = self.kernels;
        let c = self.activation.apply(c, own);
        let parts = forward_linear(&self.adaln_modulation, c, own).chunk(2, 1);
        let (shift, scale) = (
            parts[self.positions.0].clone(),
            parts[self.positions.1].clone(),
        );
        forward_linear(&self.linear, norm_modulate(x, shift, scale, own), own)
    }
}
