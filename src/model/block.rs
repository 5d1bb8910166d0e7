use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{backend::Backend, Tensor};

use super::attention::Attention;
use super::flavour::{shift_scale_positions, Activation};
use super::kernels::OwnKernels;
use super::linear::{forward_linear, xavier_linear, zero_linear};
use super::norm::{layer_norm, norm_modulate, per_token};
use crate::config::{Conditioning, DitConfig, Flavour};

/// The pointwise feed-forward network: Linear(d, r d) -> GELU -> Linear(r d, d).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    pub(super) kernels: OwnKernels,
}

impl<B: Backend> Mlp<B> {
    fn new(config: &DitConfig, device: &B::Device) -> Self {
        let (d, h) = (config.hidden_size, config.hidden_size * config.mlp_ratio);
        Self {
            fc1: xavier_linear(d, h, device),
            fc2: xavier_linear(h, d, device),
            activation: Activation::for_mlp(config.flavour),
            kernels: OwnKernels::default(),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let own = self.kernels;
        let h = self
            .activation
            .apply(forward_linear(&self.fc1, x, own), own);
        forward_linear(&self.fc2, h, own)
    }
}

/// One transformer block in any of the paper's four conditioning designs.
#[derive(Module, Debug)]
pub struct DitBlock<B: Backend> {
    pub attn: Attention<B>,
    pub mlp: Mlp<B>,
    /// adaLN modulation: SiLU -> Linear(d, 6d) (adaLN-Zero) or Linear(d, 4d) (adaLN), zero-init.
    pub adaln_modulation: Option<Linear<B>>,
    /// The extra cross-attention layer of the `cross-attn` design.
    pub cross_attn: Option<Attention<B>>,
    /// Whether the adaLN regression has gates (adaLN-Zero) besides shift and scale.
    #[module(skip)]
    gates: bool,
    /// Chunk positions of (shift, scale) within each branch's part of the regression.
    #[module(skip)]
    positions: (usize, usize),
    #[module(skip)]
    pub(super) kernels: OwnKernels,
}

/// Per-sample modulation of one block, each `[B, d]`.
struct Modulation<B: Backend> {
    shift: [Tensor<B, 2>; 2],
    scale: [Tensor<B, 2>; 2],
    gate: Option<[Tensor<B, 2>; 2]>,
}

impl<B: Backend> DitBlock<B> {
    pub fn new(config: &DitConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let fused = config.flavour == Flavour::Paper;
        let adaln_chunks = match config.conditioning {
            Conditioning::AdalnZero => Some(6),
            Conditioning::Adaln => Some(4),
            _ => None,
        };
        Self {
            attn: Attention::new(d, config.num_heads, fused, device),
            mlp: Mlp::new(config, device),
            adaln_modulation: adaln_chunks.map(|k| zero_linear(d, k * d, device)),
            cross_attn: (config.conditioning == Conditioning::CrossAttn)
                .then(|| Attention::new(d, config.num_heads, false, device)),
            gates: config.conditioning == Conditioning::AdalnZero,
            positions: shift_scale_positions(config.flavour),
            kernels: OwnKernels::default(),
        }
    }

    /// `x: [B, N, d]`; `c: [B, d]` is t_emb + y_emb; `cond_tokens: [B, 2, d]` holds t_emb and
    /// y_emb as a sequence (read by the cross-attention design).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        c: Tensor<B, 2>,
        cond_tokens: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let own = self.kernels;
        match &self.adaln_modulation {
            Some(linear) => {
                let m = self.modulation(forward_linear(linear, silu(c), own));
                let branch = self.attn.forward(
                    norm_modulate(x.clone(), m.shift[0].clone(), m.scale[0].clone(), own),
                    None,
                );
                let x = x + gated(branch, m.gate.as_ref().map(|g| g[0].clone()));
                let branch = self.mlp.forward(norm_modulate(
                    x.clone(),
                    m.shift[1].clone(),
                    m.scale[1].clone(),
                    own,
                ));
                x + gated(branch, m.gate.map(|[_, g]| g))
            }
            None => {
                let x = x.clone() + self.attn.forward(layer_norm(x), None);
                let x = match &self.cross_attn {
                    Some(cross) => x.clone() + cross.forward(layer_norm(x), Some(cond_tokens)),
                    None => x,
                };
                x.clone() + self.mlp.forward(layer_norm(x))
            }
        }
    }

    /// Sets whose kernels every layer of the block runs ([`crate::Dit::with_kernels`]).
    pub(super) fn set_kernels(&mut self, own: OwnKernels) {
        self.kernels = own;
        self.mlp.kernels = own;
        self.attn.kernels = own;
        if let Some(cross) = self.cross_attn.as_mut() {
            cross.kernels = own;
        }
    }

    /// Splits the adaLN regression output `[B, k d]` into named parts, in the flavour's order.
    fn modulation(&self, out: Tensor<B, 2>) -> Modulation<B> {
        let per_branch = if self.gates { 3 } else { 2 };
        let parts = out.chunk(2 * per_branch, 1);
        let pick = |branch: usize, i: usize| parts[branch * per_branch + i].clone();
        let (shift_i, scale_i) = self.positions;
        Modulation {
            shift: [pick(0, shift_i), pick(1, shift_i)],
            scale: [pick(0, scale_i), pick(1, scale_i)],
            gate: self.gates.then(|| [pick(0, 2), pick(1, 2)]),
        }
    }
}

/// Multiplies a residual branch by its per-sample gate, if any.
fn gated<B: Backend>(branch: Tensor<B, 3>, gate: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
    match gate {
        Some(g) => {
            let tokens = branch.dims()[1];
            branch * per_token(g, tokens)
        }
        None => branch,
    }
}
