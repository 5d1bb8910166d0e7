//! Embedders: patches (x), timesteps (t) and labels (y), and the fixed position table.

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use super::flavour::Activation;
use super::kernels::OwnKernels;
use super::linear::{forward_linear, linear};
use crate::config::{DitConfig, Flavour};

/// `patchify`: a p x p convolution with stride p turns `[B, C, H, W]` into `[B, N, d]` tokens in
/// raster order.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    pub proj: Conv2d<B>,
}

impl<B: Backend> PatchEmbed<B> {
    pub fn new(config: &DitConfig, device: &B::Device) -> Self {
        let (c, p, d) = (config.in_channels, config.patch_size, config.hidden_size);
        // Xavier-uniform on the weight viewed as a [d, C*p*p] matrix, as the paper does.
        let bound = (6.0 / ((c * p * p + d) as f64)).sqrt();
        let proj = Conv2dConfig::new([c, d], [p, p])
            .with_stride([p, p])
            .with_initializer(Initializer::Uniform {
                min: -bound,
                max: bound,
            })
            .init(device);
        let proj = Conv2d {
            bias: Some(Initializer::Zeros.init([d], device)),
            ..proj
        };
        Self { proj }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        // [B, d, h, w] -> [B, d, N] -> [B, N, d]
        self.proj.forward(x).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}

/// The fixed sin-cos position table, `[num_patches * d]` row-major.
pub fn position_table(config: &DitConfig) -> Vec<f32> {
    let d = config.hidden_size;
    let grid = config.grid_size();
    let mut table = vec![0f32; grid * grid * d];
    for n in 0..grid * grid {
        let row = &mut table[n * d..(n + 1) * d];
        match config.flavour {
            // 1-D over the raster index, interleaved: pe[n, 2j] = sin(n / 10000^(2j/d)),
            // pe[n, 2j+1] = cos(same).
            Flavour::Seed => {
                for j in 0..d / 2 {
                    let angle = n as f64 / 10000f64.powf(2.0 * j as f64 / d as f64);
                    row[2 * j] = angle.sin() as f32;
                    row[2 * j + 1] = angle.cos() as f32;
                }
            }
            // 2-D: the first half encodes the column, the second the row, each as
            // [sin(pos * w_k), cos(pos * w_k)] with w_k = 1 / 10000^(k / (d/4)).
            Flavour::Paper => {
                let (r, c) = (n / grid, n % grid);
                for (half, pos) in [(0, c), (1, r)] {
                    let quarter = d / 4;
                    for k in 0..quarter {
                        let omega = 1.0 / 10000f64.powf(k as f64 / quarter as f64);
                        let angle = pos as f64 * omega;
                        row[half * d / 2 + k] = angle.sin() as f32;
                        row[half * d / 2 + quarter + k] = angle.cos() as f32;
                    }
                }
            }
        }
    }
    table
}

/// Frequencies of the sinusoidal timestep features: `exp(-ln(10^4) k / half)` for `k < half`,
/// where the feature width is `2 * half` (paper: 256; seed: d/2).
pub fn timestep_frequencies(config: &DitConfig) -> Vec<f32> {
    let half = config.timestep_frequency_dim() / 2;
    (0..half)
        .map(|k| (-(10000f64.ln()) * k as f64 / half as f64).exp() as f32)
        .collect()
}

/// `t_embedder`: sinusoidal features `[cos(t w), sin(t w)]` followed by a two-layer MLP
/// (SiLU in the paper, SELU in the seed flavour).
#[derive(Module, Debug)]
pub struct TimestepEmbedder<B: Backend> {
    pub mlp_in: Linear<B>,
    pub mlp_out: Linear<B>,
    /// `[1, half]` frequencies (a constant, not a parameter).
    freqs: Tensor<B, 2>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    pub(super) kernels: OwnKernels,
}

impl<B: Backend> TimestepEmbedder<B> {
    pub fn new(config: &DitConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let freqs = timestep_frequencies(config);
        let half = freqs.len();
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Self {
            mlp_in: linear(2 * half, d, &init, device),
            mlp_out: linear(d, d, &init, device),
            freqs: Tensor::from_data(TensorData::new(freqs, [1, half]), device),
            activation: Activation::for_conditioning(config.flavour),
            kernels: OwnKernels::default(),
        }
    }

    /// `t: [B]` (integer timesteps as floats) -> `[B, d]`.
    pub fn forward(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let args = t.unsqueeze_dim::<2>(1) * self.freqs.clone();
        let features = Tensor::cat(vec![args.clone().cos(), args.sin()], 1);
        let own = self.kernels;
        let h = forward_linear(&self.mlp_in, features, own);
        forward_linear(&self.mlp_out, self.activation.apply(h, own), own)
    }
}

/// `y_embedder`: a table of class vectors, with one extra "null" row when the model is trained
/// with label dropout. Label dropout itself is applied by the trainer (host RNG, exact resume).
#[derive(Module, Debug)]
pub struct LabelEmbedder<B: Backend> {
    pub table: Embedding<B>,
}

impl<B: Backend> LabelEmbedder<B> {
    pub fn new(config: &DitConfig, device: &B::Device) -> Self {
        let rows = config.num_classes + usize::from(config.has_null_label());
        Self {
            table: EmbeddingConfig::new(rows, config.hidden_size)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
        }
    }

    /// `y: [B]` -> `[B, d]`.
    pub fn forward(&self, y: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        self.table
            .forward(y.unsqueeze_dim::<2>(1))
            .squeeze_dim::<2>(1)
    }
}
