//! Model and schedule configuration, and the named presets.
//!
//! A [`Preset`] bundles everything a run needs to agree on: the network ([`DitConfig`]), the noise
//! schedule ([`ScheduleConfig`]) and the label names. Weight files carry all three, so a file is
//! self-describing and the page and the CLI never need to be told which preset produced it.

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// Which family of details the network follows. Both are the same DiT; they differ in small
/// choices that matter for loading existing checkpoints.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// What the reference PyTorch checkpoints use: 1-D interleaved position table, timestep
    /// features of width d/2 with SELU, (scale, shift, gate) chunk order, exact GELU, separate
    /// q/k/v projections.
    #[default]
    Seed,
    /// The paper's `models.py`: 2-D sin-cos position table, 256 timestep frequencies with SiLU,
    /// (shift, scale, gate) chunk order, tanh GELU, fused qkv.
    Paper,
}

/// How the timestep and label reach the transformer blocks (the paper's four block designs).
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Conditioning {
    /// adaLN with a zero-initialised gate on each residual branch (the paper's best).
    #[default]
    AdalnZero,
    /// adaLN shift and scale only, no gates.
    Adaln,
    /// t and y embeddings as a 2-token sequence read by a cross-attention layer in every block.
    CrossAttn,
    /// t and y embeddings as two extra tokens in the input sequence, dropped before the final layer.
    InContext,
}

impl Conditioning {
    pub const ALL: [Conditioning; 4] = [
        Conditioning::AdalnZero,
        Conditioning::Adaln,
        Conditioning::CrossAttn,
        Conditioning::InContext,
    ];

    /// The name used in weight files, `run.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Conditioning::AdalnZero => "adaln-zero",
            Conditioning::Adaln => "adaln",
            Conditioning::CrossAttn => "cross-attn",
            Conditioning::InContext => "in-context",
        }
    }
}

impl std::str::FromStr for Conditioning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            format!("unknown conditioning `{s}` (expected adaln-zero, adaln, cross-attn or in-context)")
        })
    }
}

impl Flavour {
    /// The name used in weight files, `run.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Seed => "seed",
            Flavour::Paper => "paper",
        }
    }
}

impl std::str::FromStr for Flavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Flavour::Seed, Flavour::Paper]
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown flavour `{s}` (expected seed or paper)"))
    }
}

/// The network's shape. Square images only.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Config, Debug, PartialEq)]
pub struct DitConfig {
    /// Image side in pixels.
    pub input_size: usize,
    /// Image channels (1 for MNIST, 3 for CelebA); the network predicts as many.
    pub in_channels: usize,
    /// Side of a square patch; `input_size` must be a multiple of it.
    pub patch_size: usize,
    /// Token width d.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; must divide `hidden_size`.
    pub num_heads: usize,
    /// MLP hidden width as a multiple of d.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Number of real classes. With `class_dropout > 0` the label table has one more row, the
    /// "null" label used for classifier-free guidance.
    pub num_classes: usize,
    /// Probability of replacing a label by the null label while training.
    #[config(default = 0.0)]
    pub class_dropout: f64,
    #[config(default = "Flavour::Seed")]
    pub flavour: Flavour,
    #[config(default = "Conditioning::AdalnZero")]
    pub conditioning: Conditioning,
}

impl DitConfig {
    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.input_size / self.patch_size
    }

    /// Tokens per image.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Whether the label table has a null row (needed for classifier-free guidance).
    pub fn has_null_label(&self) -> bool {
        self.class_dropout > 0.0
    }

    /// Index of the null label, if there is one.
    pub fn null_label(&self) -> Option<usize> {
        self.has_null_label().then_some(self.num_classes)
    }

    /// Width of the sinusoidal timestep features (paper: 256; seed: d/2).
    pub fn timestep_frequency_dim(&self) -> usize {
        match self.flavour {
            Flavour::Paper => 256,
            Flavour::Seed => self.hidden_size / 2,
        }
    }

    /// Values per image (C x H x W).
    pub fn image_len(&self) -> usize {
        self.in_channels * self.input_size * self.input_size
    }

    /// Trainable parameters, from the shapes alone (the position table is fixed, not counted).
    /// Computed without building the model, so a weight file's claims can be checked before
    /// anything is allocated; a test holds it equal to burn's count for every variant.
    pub fn num_params(&self) -> u128 {
        let [c, p, d, depth, r, classes] = [
            self.in_channels,
            self.patch_size,
            self.hidden_size,
            self.depth,
            self.mlp_ratio,
            self.num_classes,
        ]
        .map(|v| v as u128);
        let linear = |i: u128, o: u128| i * o + o;
        let freq = self.timestep_frequency_dim() as u128;
        let rows = classes + u128::from(self.has_null_label());
        let attention = 4 * linear(d, d); // q, k, v, out (fused qkv has the same count)
        let conditioning = match self.conditioning {
            Conditioning::AdalnZero => linear(d, 6 * d),
            Conditioning::Adaln => linear(d, 4 * d),
            Conditioning::CrossAttn => 4 * linear(d, d),
            Conditioning::InContext => 0,
        };
        let block = attention + linear(d, r * d) + linear(r * d, d) + conditioning;
        let patch = c * p * p * d + d;
        let t_embedder = linear(freq, d) + linear(d, d);
        let final_layer = linear(d, 2 * d) + linear(d, p * p * c);
        patch + t_embedder + rows * d + depth * block + final_layer
    }

    /// Checks the shape constraints that `init` relies on, and every size against [`limits`]
    /// (the message names the field).
    pub fn validate(&self) -> Result<(), String> {
        let bounded = [
            ("input_size", self.input_size, limits::IMAGE_SIDE),
            ("in_channels", self.in_channels, limits::CHANNELS),
            ("patch_size", self.patch_size, limits::IMAGE_SIDE),
            ("hidden_size", self.hidden_size, limits::WIDTH),
            ("depth", self.depth, limits::DEPTH),
            ("num_heads", self.num_heads, limits::HEADS),
            ("mlp_ratio", self.mlp_ratio, limits::MLP_RATIO),
            ("num_classes", self.num_classes, limits::CLASSES),
        ];
        if let Some((name, _, _)) = bounded.iter().find(|(_, v, _)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if let Some((name, v, max)) = bounded.iter().find(|(_, v, max)| v > max) {
            return Err(format!("{name} = {v} is more than dit-web accepts ({max})"));
        }
        if !self.input_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "input_size {} is not a multiple of patch_size {}",
                self.input_size, self.patch_size
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        // Sin-cos tables split d into halves (seed: sin/cos pairs and d/4 frequencies; paper: two
        // axes, each with sin and cos halves).
        if !self.hidden_size.is_multiple_of(4) {
            return Err(format!(
                "hidden_size {} must be a multiple of 4",
                self.hidden_size
            ));
        }
        if self.num_patches() > limits::TOKENS {
            return Err(format!(
                "input_size {} in patches of {} is {} tokens, more than dit-web accepts ({})",
                self.input_size,
                self.patch_size,
                self.num_patches(),
                limits::TOKENS
            ));
        }
        if self.num_params() > limits::PARAMS {
            return Err(format!(
                "{} parameters is more than dit-web accepts ({})",
                self.num_params(),
                limits::PARAMS
            ));
        }
        if !(0.0..1.0).contains(&self.class_dropout) {
            return Err(format!(
                "class_dropout {} must be in [0, 1)",
                self.class_dropout
            ));
        }
        Ok(())
    }
}

/// How alpha-bar is indexed by the integer timestep.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Convention {
    /// DDPM's: `alpha_bar[t] = prod_{i <= t} alpha_i`, every timestep is noisy.
    #[default]
    Standard,
    /// The reference code's: `alpha_bar[t] = prod_{i < t} alpha_i`, so `alpha_bar[0] = 1` and
    /// t = 0 is the clean image. Imported checkpoints were trained with it.
    Shifted,
}

/// A linear-beta noise schedule (the only kind the reference and the paper use).
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Config, Debug, PartialEq)]
pub struct ScheduleConfig {
    /// T, the number of discrete timesteps.
    pub num_timesteps: usize,
    #[config(default = 1e-4)]
    pub beta_start: f64,
    #[config(default = 2e-2)]
    pub beta_end: f64,
    #[config(default = "Convention::Standard")]
    pub convention: Convention,
}

impl ScheduleConfig {
    /// Checks that the schedule is one the maths can use: 1..=[`limits::TIMESTEPS`] steps, betas
    /// in (0, 1) (so every alpha = 1 - beta is positive) that do not fall with t.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=limits::TIMESTEPS).contains(&self.num_timesteps) {
            return Err(format!(
                "num_timesteps = {} must be in 1..={}",
                self.num_timesteps,
                limits::TIMESTEPS
            ));
        }
        for (name, beta) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
            if !(beta > 0.0 && beta < 1.0) {
                return Err(format!(
                    "{name} = {beta} must be in (0, 1): alpha = 1 - beta must stay positive"
                ));
            }
        }
        if self.beta_start > self.beta_end {
            return Err(format!(
                "beta_start = {} is larger than beta_end = {}: the noise must not fall with t",
                self.beta_start, self.beta_end
            ));
        }
        Ok(())
    }
}

/// The largest network and schedule dit-web accepts from a file (a weight file's metadata,
/// `run.json`, `import-torch`'s `model_args`): every number is checked against these before
/// anything is allocated from it. Far beyond anything trained here (celeba: 128 pixels, 1,024
/// tokens, width 512, depth 8, 38.8M parameters).
pub mod limits {
    /// Image side, and patch side, in pixels.
    pub const IMAGE_SIDE: usize = 1024;
    pub const CHANNELS: usize = 16;
    /// Tokens per image: activations, attention scores (tokens² x heads) and the position table
    /// grow with them.
    pub const TOKENS: usize = 4096;
    pub const WIDTH: usize = 4096;
    pub const DEPTH: usize = 128;
    pub const HEADS: usize = 64;
    pub const MLP_RATIO: usize = 16;
    pub const CLASSES: usize = 100_000;
    /// Parameters (16 GiB of f32).
    pub const PARAMS: u128 = 1 << 32;
    pub const TIMESTEPS: usize = 100_000;
}

/// A named bundle of network, schedule and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub model: DitConfig,
    pub schedule: ScheduleConfig,
    pub labels: Vec<String>,
    pub dataset: &'static str,
}

impl Preset {
    /// Names accepted by [`Preset::by_name`].
    pub const NAMES: [&'static str; 3] = ["mnist", "mnist-cpu", "celeba"];

    /// The reference MNIST model: 28x28x1, patch 2, width 288, depth 6, 6 heads, T = 400.
    pub fn mnist() -> Self {
        Self {
            name: "mnist",
            model: DitConfig::new(28, 1, 2, 288, 6, 6, 10),
            schedule: ScheduleConfig::new(400),
            labels: digit_labels(),
            dataset: "mnist",
        }
    }

    /// A smaller MNIST model sized for training on two CPU cores: 7x7 tokens of width 192,
    /// depth 6, with a null label so guidance works (docs/architecture.md has the measurements).
    pub fn mnist_cpu() -> Self {
        Self {
            name: "mnist-cpu",
            model: DitConfig::new(28, 1, 4, 192, 6, 6, 10).with_class_dropout(0.1),
            schedule: ScheduleConfig::new(400),
            labels: digit_labels(),
            dataset: "mnist",
        }
    }

    /// The reference CelebA model: 128x128x3 centre crops, patch 4, width 512, depth 8, 8 heads,
    /// labels female/male with 10 % label dropout, T = 1000.
    pub fn celeba() -> Self {
        Self {
            name: "celeba",
            model: DitConfig::new(128, 3, 4, 512, 8, 8, 2).with_class_dropout(0.1),
            schedule: ScheduleConfig::new(1000),
            labels: vec!["female".into(), "male".into()],
            dataset: "celeba",
        }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "mnist" => Some(Self::mnist()),
            "mnist-cpu" => Some(Self::mnist_cpu()),
            "celeba" => Some(Self::celeba()),
            _ => None,
        }
    }

    /// The same preset with the paper's flavour instead of the seed flavour.
    pub fn with_flavour(mut self, flavour: Flavour) -> Self {
        self.model.flavour = flavour;
        self
    }
}

fn digit_labels() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}
