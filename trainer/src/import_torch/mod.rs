//! `trainer import-torch`: a reference PyTorch DiT checkpoint -> a dit-web weight file.
//!
//! **Input.** What the reference training script saves with `torch.save` (the zip format of
//! PyTorch 1.6 and later): a dict with `model_state`, `ema_state`, `optimizer_state`, `model_args`
//! and `step`. The archive is read with the `zip` crate and its `data.pkl` with a small pickle
//! reader ([`pickle`]) that builds data only and never runs anything; tensors are read from the
//! archive's storages, honouring offsets and strides, as f32 (f16, bf16 and f64 are converted).
//! `ema_state` is converted unless `raw` asks for `model_state`; `optimizer_state` is ignored.
//! Names under `_orig_mod.` (a `torch.compile`d module, as the reference saves it) or `module.`
//! (DDP) are read without the prefix. [`reference`] fetches the reference's published checkpoint
//! through [`remote`] (byte ranges, a resumable cache) and converts it; [`save`] writes this
//! layout, for tests and fixtures.
//!
//! **Why not burn-store's `PytorchReader`.** burn-store 0.21 reads these files too, but its pickle
//! machine copies a value each time the memo is referenced. A checkpoint of under 700 bytes whose pickle
//! nests a tuple of the previous tuple twice, level after level, then costs 2^levels copies: with
//! `PytorchReader::with_top_level_key(path, "ema_state")` 20 levels took 3.3 s and 1.2 GB, 22
//! levels 16 s and 4.8 GB, 24 levels 80 s and 19 GB, and 40 levels aborted out of memory; this
//! reader shares memo values and rejects the same 40-level file in 0.03 s and 7 MB (the test
//! `hostile_pickles_fail_fast_in_little_memory` builds it with 64 levels). That, and nothing else,
//! is why the reader below stays: it is the whole of what a hostile file needs. Its coverage:
//! PyTorch's own save (`tiny_dit.pt`), a protocol-4 save with transposed (strided) views and
//! tensors at offsets in a shared storage, truncated and damaged archives, memo bombs and deep
//! nesting (`trainer/tests/import_torch.rs`, `pickle.rs`'s unit tests).
//!
//! **Network.** The reference network is dit-web's `Flavour::Seed` with adaLN-Zero conditioning,
//! sampled with `Convention::Shifted` (the schedule in the written file says so). Tensors map as
//! (torch Linear weights are `[out, in]`, burn's `[in, out]`: those are transposed; the patch
//! projection is a Conv2d in both, `[d, C, p, p]`, copied as is):
//!
//! | reference (PyTorch)                        | dit-web                                  |
//! | ------------------------------------------ | ---------------------------------------- |
//! | `patch_ops.patch_proj.{weight,bias}`       | `x_embedder.proj.{weight,bias}`          |
//! | `time_embed.mlp.0.{weight,bias}`           | `t_embedder.mlp_in.{weight,bias}`        |
//! | `time_embed.mlp.2.{weight,bias}`           | `t_embedder.mlp_out.{weight,bias}`       |
//! | `label_embed.label_embed.weight`           | `y_embedder.table.weight`                |
//! | `blocks.i.scale_shift_scale.1.*`           | `blocks.i.adaln_modulation.*`            |
//! | `blocks.i.att.{wq,wk,wv,w}.*`              | `blocks.i.attn.{q,k,v,out}.*`            |
//! | `blocks.i.pointwise_ffn.layers.{0,3}.*`    | `blocks.i.mlp.{fc1,fc2}.*`               |
//! | `norm_linear.shift_scale.1.*`              | `final_layer.adaln_modulation.*`         |
//! | `norm_linear.linear.*`                     | `final_layer.linear.*`                   |
//! | `positional_embeddings` `[1, N, d]`        | computed (checked against ours, not copied) |
//!
//! The adaLN chunk orders need no reordering: the reference's (gamma, beta, alpha) per branch is
//! the seed flavour's (scale, shift, gate), and its final (gamma, beta) is (scale, shift).
//!
//! **Model config.** Width, channels, patch, token count (hence image size), depth, MLP ratio and
//! label-table rows are read from the tensor shapes. With a preset they must equal the preset's;
//! without one, the head count, the class count (or `cfg_dropout_rate`, to tell whether the last
//! label row is the null label) and the number of timesteps come from `model_args` (reference
//! names `num_heads`, `num_classes`, `cfg_dropout_rate`, `num_timesteps`), labels are named by
//! index and the dataset is "imported". Any size `model_args` states (`d_model`, `num_layers`,
//! `patch_size`, `in_channels`, `out_channels`, `H`, `W`, `maxlen`, `mlp_ratio`) must agree with
//! the tensors. Every tensor must be present with the shape that config implies, and no other.

mod archive;
mod mapping;
mod pickle;
mod probe;
pub mod reference;
pub mod remote;
pub mod save;

use std::collections::BTreeMap;
use std::path::Path;

use dit_web::config::Preset;
use dit_web::model::position_table;
use dit_web::weights::{Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};
use dit_web::PathError;

use crate::export::ExportError;
pub use archive::{Checkpoint, ReadSeek, StateDict};
pub use mapping::{mapping, Mapped};
pub use pickle::{StorageDtype, TensorRef};
use probe::target;
pub use probe::ModelArgs;

/// How far the checkpoint's position table may differ from ours (float32 rounding of the
/// reference's own computation stays far below this).
const POSITION_TOLERANCE: f32 = 1e-3;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("not a PyTorch checkpoint written by torch.save (PyTorch 1.6+ zip format): {0}")]
    NotACheckpoint(String),
    #[error("cannot read the checkpoint's data.pkl: {0}")]
    Pickle(String),
    #[error("the checkpoint has no `{key}` entry (it has: {})", found.join(", "))]
    MissingEntry { key: String, found: Vec<String> },
    #[error("`{key}` is not a state dict: {reason}")]
    NotAStateDict { key: String, reason: String },
    #[error("model_args: {0}")]
    ModelArgs(String),
    #[error("cannot tell the model's configuration from the checkpoint: {0}")]
    Config(String),
    #[error("the checkpoint does not match preset `{preset}`: {}", diffs.join("; "))]
    PresetMismatch { preset: String, diffs: Vec<String> },
    #[error("tensor `{name}` is missing from `{state}`")]
    MissingTensor { state: String, name: String },
    #[error("`{state}` holds tensor `{name}`, which the reference DiT does not have")]
    UnexpectedTensor { state: String, name: String },
    #[error("tensor `{name}` has shape {found:?}, the model needs {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("positional_embeddings differ from dit-web's fixed sin-cos table by up to {max_diff:.3e} (tolerance {POSITION_TOLERANCE:e}): the checkpoint does not use the reference's position encoding")]
    PositionTable { max_diff: f32 },
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// What to convert and how to describe it.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The preset the checkpoint must match (its labels, dataset and schedule length are used).
    /// Without one, everything comes from the tensors and `model_args`.
    pub preset: Option<Preset>,
    /// Convert `model_state` instead of `ema_state`.
    pub raw: bool,
    /// Overrides the number of diffusion timesteps (otherwise `model_args`, then the preset).
    pub num_timesteps: Option<usize>,
}

/// A converted checkpoint.
#[derive(Debug)]
pub struct Imported {
    /// f32 weights in dit-web's names and layout.
    pub file: WeightFile,
    /// Which state dict was converted (`ema_state` or `model_state`).
    pub state: &'static str,
    /// Largest difference between the checkpoint's position table and dit-web's.
    pub position_table_diff: f32,
}

/// Opens `path` and converts it.
pub fn import(path: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    convert(&Checkpoint::open(path)?, options)
}

/// Converts the checkpoint's `ema_state` (or `model_state` with `options.raw`).
pub fn convert(ckpt: &Checkpoint, options: &ImportOptions) -> Result<Imported, ImportError> {
    let state_name = if options.raw {
        "model_state"
    } else {
        "ema_state"
    };
    let state = ckpt.state_dict(state_name)?;
    convert_state(
        ckpt,
        state_name,
        &state,
        ckpt.model_args()?.as_ref(),
        options,
    )
}

/// Converts one state dict whose tensors live in `ckpt` (tests use this to feed altered dicts).
pub fn convert_state(
    ckpt: &Checkpoint,
    state_name: &'static str,
    state: &StateDict,
    args: Option<&ModelArgs>,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let target = target(state, state_name, args, options)?;
    let config = &target.model;

    // Every tensor present with its shape, and nothing else.
    let mapped = mapping(config);
    let positions = "positional_embeddings";
    let position_shape = vec![1, config.num_patches(), config.hidden_size];
    let expected = mapped
        .iter()
        .map(|m| (m.torch.as_str(), &m.shape))
        .chain([(positions, &position_shape)]);
    for (name, shape) in expected.clone() {
        let t = state.get(name).ok_or_else(|| ImportError::MissingTensor {
            state: state_name.into(),
            name: name.into(),
        })?;
        if t.shape != *shape {
            return Err(ImportError::ShapeMismatch {
                name: name.into(),
                expected: shape.clone(),
                found: t.shape.clone(),
            });
        }
    }
    let known: std::collections::HashSet<&str> = expected.map(|(n, _)| n).collect();
    if let Some(name) = state.keys().find(|n| !known.contains(n.as_str())) {
        return Err(ImportError::UnexpectedTensor {
            state: state_name.into(),
            name: name.clone(),
        });
    }

    // Read first: the storage bounds the size before the table is computed.
    let theirs = ckpt.read_f32(positions, &state[positions])?;
    let ours = position_table(config);
    let position_table_diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .map(|d| if d.is_nan() { f32::INFINITY } else { d })
        .fold(0f32, f32::max);
    if position_table_diff > POSITION_TOLERANCE {
        return Err(ImportError::PositionTable {
            max_diff: position_table_diff,
        });
    }

    let mut tensors = BTreeMap::new();
    for m in &mapped {
        let data = ckpt.read_f32(&m.torch, &state[&m.torch])?;
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ImportError::BadTensor {
                name: m.torch.clone(),
                reason: "contains NaN or infinite values".into(),
            });
        }
        tensors.insert(m.ours.clone(), m.to_ours(data));
    }
    let stored: u128 = tensors.values().map(|t| t.data.len() as u128).sum();
    debug_assert_eq!(
        stored,
        config.num_params(),
        "mapping covers every parameter"
    );

    let meta = WeightsMeta {
        format_version: FORMAT_VERSION,
        model: target.model,
        schedule: target.schedule,
        labels: target.labels,
        dataset: target.dataset,
        step: ckpt.step().unwrap_or(0),
        ema: state_name == "ema_state",
        quantization: Quantization::F32,
    };
    Ok(Imported {
        file: WeightFile { meta, tensors },
        state: state_name,
        position_table_diff,
    })
}
