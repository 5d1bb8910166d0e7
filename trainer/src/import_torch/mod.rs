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
mod cache;
mod convert;
mod error;
mod http;
mod mapping;
mod model_args;
mod options;
mod pickle;
mod probe;
pub mod reference;
pub mod remote;
pub mod save;

pub use archive::{Checkpoint, ReadSeek, StateDict};
pub use convert::{convert, convert_state, import, Imported};
pub use error::ImportError;
pub use mapping::{mapping, Mapped};
pub use model_args::ModelArgs;
pub use options::ImportOptions;
pub use pickle::{StorageDtype, TensorRef};
