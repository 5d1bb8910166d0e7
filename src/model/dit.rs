use burn::module::Module;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use super::block::DitBlock;
use super::embed::{position_table, LabelEmbedder, PatchEmbed, TimestepEmbedder};
use super::final_layer::FinalLayer;
use super::kernels::OwnKernels;
use crate::config::{Conditioning, DitConfig};

/// A class-conditional Diffusion Transformer that predicts the noise epsilon.
#[derive(Module, Debug)]
pub struct Dit<B: Backend> {
    pub x_embedder: PatchEmbed<B>,
    pub t_embedder: TimestepEmbedder<B>,
    pub y_embedder: LabelEmbedder<B>,
    pub blocks: Vec<DitBlock<B>>,
    pub final_layer: FinalLayer<B>,
    /// Fixed sin-cos position table `[1, N, d]` (a constant, not trained).
    pos_embed: Tensor<B, 3>,
    #[module(skip)]
    config: DitConfig,
}

impl DitConfig {
    /// Builds a freshly initialised DiT (the paper's init: Xavier linears, N(0, 0.02) label and
    /// timestep embedders, zero adaLN modulation and zero final layer).
    ///
    /// # Panics
    /// If the config is inconsistent; call [`DitConfig::validate`] first on untrusted configs.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Dit<B> {
        if let Err(e) = self.validate() {
            panic!("invalid DitConfig: {e}");
        }
        let n = self.num_patches();
        Dit {
            x_embedder: PatchEmbed::new(self, device),
            t_embedder: TimestepEmbedder::new(self, device),
            y_embedder: LabelEmbedder::new(self, device),
            blocks: (0..self.depth)
                .map(|_| DitBlock::new(self, device))
                .collect(),
            final_layer: FinalLayer::new(self, device),
            pos_embed: Tensor::from_data(
                TensorData::new(position_table(self), [1, n, self.hidden_size]),
                device,
            ),
            config: self.clone(),
        }
    }
}

impl<B: Backend> Dit<B> {
    pub fn config(&self) -> &DitConfig {
        &self.config
    }

    /// The same model with dit-web's own kernels taken or left as `own` says, in every layer
    /// (a new model takes them wherever its backend has some).
    pub fn with_kernels(mut self, own: OwnKernels) -> Self {
        self.t_embedder.kernels = own;
        for block in &mut self.blocks {
            block.set_kernels(own);
        }
        self.final_layer.kernels = own;
        self
    }

    /// Whose kernels the model's layers take ([`Dit::with_kernels`]).
    pub fn kernels(&self) -> OwnKernels {
        self.final_layer.kernels
    }

    /// The device the model's tensors live on.
    pub fn device(&self) -> B::Device {
        self.pos_embed.device()
    }

    /// `x: [B, C, H, W]` noisy images, `t: [B]` integer timesteps (as floats), `y: [B]` labels
    /// (the null label where there is one) -> predicted noise `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>, y: Tensor<B, 1, Int>) -> Tensor<B, 4> {
        let mut tokens = self.x_embedder.forward(x) + self.pos_embed.clone();
        let t_emb = self.t_embedder.forward(t);
        let y_emb = self.y_embedder.forward(y);
        let c = t_emb.clone() + y_emb.clone();
        let cond_tokens = Tensor::stack::<3>(vec![t_emb, y_emb], 1);

        let in_context = self.config.conditioning == Conditioning::InContext;
        if in_context {
            tokens = Tensor::cat(vec![cond_tokens.clone(), tokens], 1);
        }
        for block in &self.blocks {
            tokens = block.forward(tokens, c.clone(), cond_tokens.clone());
        }
        if in_context {
            let [b, n, d] = tokens.dims();
            tokens = tokens.slice([0..b, 2..n, 0..d]);
        }
        self.unpatchify(self.final_layer.forward(tokens, c))
    }

    /// `[B, N, p*p*C]` -> `[B, C, H, W]`: token (i, j) holds a p x p x C patch in (p, q, c) order.
    pub fn unpatchify(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let (p, c, h) = (
            self.config.patch_size,
            self.config.in_channels,
            self.config.grid_size(),
        );
        let b = x.dims()[0];
        x.reshape([b, h, h, p, p, c])
            .permute([0, 5, 1, 3, 2, 4]) // b h w p q c -> b c h p w q
            .reshape([b, c, h * p, h * p])
    }
}
