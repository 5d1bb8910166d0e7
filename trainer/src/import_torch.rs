//! `trainer import-torch`: a reference PyTorch DiT checkpoint -> a dit-web weight file.
//!
//! **Input.** What the reference training script saves with `torch.save` (the zip format of
//! PyTorch 1.6 and later): a dict with `model_state`, `ema_state`, `optimizer_state`, `model_args`
//! and `step`. The archive is read with the `zip` crate and its `data.pkl` with a small pickle
//! reader ([`pickle`]) that builds data only and never runs anything; tensors are read from the
//! archive's storages, honouring offsets and strides, as f32 (f16, bf16 and f64 are converted).
//! `ema_state` is converted unless `raw` asks for `model_state`; `optimizer_state` is ignored.
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

mod pickle;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::Path;

use dit_web::config::{Conditioning, Convention, DitConfig, Flavour, Preset, ScheduleConfig};
use dit_web::model::position_table;
use dit_web::weights::{HostTensor, Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};

use crate::export::ExportError;
use pickle::{Obj, Value};
pub use pickle::{StorageDtype, TensorRef};

/// The largest `data.pkl` read (a state dict's pickle is a few hundred KB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// How far the checkpoint's position table may differ from ours (float32 rounding of the
/// reference's own computation stays far below this).
const POSITION_TOLERANCE: f32 = 1e-3;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
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

/// A state dict: tensor name -> where its data lives.
pub type StateDict = BTreeMap<String, TensorRef>;

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// An opened `torch.save` archive: its top-level entries, and access to tensor data.
pub struct Checkpoint {
    archive: RefCell<zip::ZipArchive<Box<dyn ReadSeek>>>,
    /// The archive's folder (`<name>/`), in front of `data.pkl` and `data/<storage>`.
    prefix: String,
    /// Size of the whole file: no entry can honestly be larger.
    file_len: u64,
    top: Vec<(String, Obj)>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        Self::from_reader(Box::new(std::io::BufReader::new(file)), file_len)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ImportError> {
        let file_len = bytes.len() as u64;
        Self::from_reader(Box::new(std::io::Cursor::new(bytes)), file_len)
    }

    fn from_reader(reader: Box<dyn ReadSeek>, file_len: u64) -> Result<Self, ImportError> {
        let not = |m: String| ImportError::NotACheckpoint(m);
        let mut archive =
            zip::ZipArchive::new(reader).map_err(|e| not(format!("not a zip archive ({e})")))?;
        let pickles: Vec<String> = archive
            .file_names()
            .filter(|n| {
                *n == "data.pkl" || (n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            })
            .map(String::from)
            .collect();
        let [pkl] = &pickles[..] else {
            return Err(not(format!(
                "expected one <name>/data.pkl in the archive, found {}",
                pickles.len()
            )));
        };
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        if let Ok(mut f) = archive.by_name(&format!("{prefix}byteorder")) {
            let mut order = String::new();
            f.by_ref()
                .take(16)
                .read_to_string(&mut order)
                .map_err(|e| not(format!("byteorder: {e}")))?;
            if order.trim() != "little" {
                return Err(not(format!(
                    "byte order `{}`; only little-endian checkpoints are read",
                    order.trim()
                )));
            }
        }
        let bytes = {
            let mut f = archive
                .by_name(pkl)
                .map_err(|e| not(format!("{pkl}: {e}")))?;
            if f.size() > MAX_PICKLE_BYTES {
                return Err(not(format!("{pkl} is {} bytes, too large", f.size())));
            }
            let mut bytes = Vec::with_capacity(f.size() as usize);
            f.read_to_end(&mut bytes)
                .map_err(|e| not(format!("{pkl}: {e}")))?;
            bytes
        };
        let value = pickle::parse(&bytes).map_err(ImportError::Pickle)?;
        let top = value
            .as_str_dict()
            .ok_or_else(|| {
                not(format!(
                    "it holds a {}, expected a dict (model_state, ema_state, ...)",
                    value.kind()
                ))
            })?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Ok(Self {
            archive: RefCell::new(archive),
            prefix,
            file_len,
            top,
        })
    }

    /// The top-level keys, in file order.
    pub fn keys(&self) -> Vec<String> {
        self.top.iter().map(|(k, _)| k.clone()).collect()
    }

    fn get(&self, key: &str) -> Option<&Obj> {
        // A repeated key: the last one wins, as in Python.
        self.top
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The state dict under `key` (`ema_state`, `model_state`).
    pub fn state_dict(&self, key: &str) -> Result<StateDict, ImportError> {
        let value = self.get(key).ok_or_else(|| ImportError::MissingEntry {
            key: key.into(),
            found: self.keys(),
        })?;
        let bad = |reason: String| ImportError::NotAStateDict {
            key: key.into(),
            reason,
        };
        let entries = value
            .as_str_dict()
            .ok_or_else(|| bad(format!("it is a {}", value.kind())))?;
        entries
            .into_iter()
            .map(|(name, v)| match &**v {
                Value::Tensor(t) => Ok((name.to_string(), t.clone())),
                other => Err(bad(format!("`{name}` is a {}, not a tensor", other.kind()))),
            })
            .collect()
    }

    /// `model_args` as a dict (a pickled config object contributes its attributes).
    pub fn model_args(&self) -> Result<Option<ModelArgs>, ImportError> {
        let Some(value) = self.get("model_args") else {
            return Ok(None);
        };
        let dict = match &**value {
            Value::Object {
                state: Some(state), ..
            } => state.clone(),
            _ => value.clone(),
        };
        let entries = dict.as_str_dict().ok_or_else(|| {
            ImportError::ModelArgs(format!("expected a dict, found a {}", value.kind()))
        })?;
        Ok(Some(ModelArgs(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )))
    }

    /// The `step` entry, if it is a non-negative integer.
    pub fn step(&self) -> Option<u64> {
        match self.get("step").map(|v| &**v) {
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// A tensor's values as f32, row-major.
    pub fn read_f32(&self, name: &str, t: &TensorRef) -> Result<Vec<f32>, ImportError> {
        let bad = |reason: String| ImportError::BadTensor {
            name: name.into(),
            reason,
        };
        let size = t
            .dtype
            .size()
            .ok_or_else(|| bad(format!("dtype {:?} is not a float type", t.dtype)))?;
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("size overflows".into()))?;
        if numel > t.storage_len {
            return Err(bad(format!(
                "its {numel} elements overlap in a storage of {}",
                t.storage_len
            )));
        }
        if numel > 0 {
            let last = t
                .shape
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&n, &s)| {
                    a.checked_add((n - 1).checked_mul(s)?)
                })
                .ok_or_else(|| bad("strides overflow".into()))?;
            if last >= t.storage_len {
                return Err(bad(format!(
                    "its view reaches element {last} of a storage of {} elements",
                    t.storage_len
                )));
            }
        }
        let entry = format!("{}data/{}", self.prefix, t.storage_key);
        let needed = t
            .storage_len
            .checked_mul(size)
            .ok_or_else(|| bad("storage size overflows".into()))?;
        let mut archive = self.archive.borrow_mut();
        let mut f = archive
            .by_name(&entry)
            .map_err(|e| bad(format!("storage `{entry}` cannot be read: {e}")))?;
        if f.size() != needed as u64 || f.size() > self.file_len {
            return Err(bad(format!(
                "storage `{entry}` holds {} bytes, the pickle says {} elements of {size} bytes",
                f.size(),
                t.storage_len
            )));
        }
        // Read to the end so that the zip reader verifies the entry's CRC.
        let mut bytes = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut bytes)
            .map_err(|e| bad(format!("storage `{entry}`: {e}")))?;
        if bytes.len() < needed {
            return Err(bad(format!("storage `{entry}` ends early")));
        }
        let element = |i: usize| -> f32 {
            let b = &bytes[i * size..(i + 1) * size];
            match t.dtype {
                StorageDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                StorageDtype::F64 => {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                StorageDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageDtype::Other(_) => unreachable!("checked above"),
            }
        };
        // Walk the view in row-major order (contiguous tensors are the common case).
        let rank = t.shape.len();
        let mut out = Vec::with_capacity(numel);
        let mut index = vec![0usize; rank];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            out.push(element(at));
            for axis in (0..rank).rev() {
                index[axis] += 1;
                if index[axis] < t.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(out)
    }
}

/// The checkpoint's `model_args`.
#[derive(Clone, Debug)]
pub struct ModelArgs(Vec<(String, Obj)>);

impl ModelArgs {
    fn find(&self, aliases: &[&str]) -> Option<(String, &Obj)> {
        aliases.iter().find_map(|a| {
            self.0
                .iter()
                .rev()
                .find(|(k, _)| k == a)
                .map(|(k, v)| (k.clone(), v))
        })
    }

    /// A non-negative integer under one of `aliases` (the first present wins).
    fn usize(&self, aliases: &[&str]) -> Result<Option<(String, usize)>, ImportError> {
        let Some((key, v)) = self.find(aliases) else {
            return Ok(None);
        };
        let n = match &**v {
            Value::Int(i) => usize::try_from(*i).ok(),
            Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1e15 => Some(*f as usize),
            _ => None,
        };
        n.map(|n| Some((key.clone(), n))).ok_or_else(|| {
            ImportError::ModelArgs(format!(
                "`{key}` is a {}, expected a non-negative integer",
                v.kind()
            ))
        })
    }

    fn f64(&self, aliases: &[&str]) -> Result<Option<f64>, ImportError> {
        let Some((key, v)) = self.find(aliases) else {
            return Ok(None);
        };
        match &**v {
            Value::Int(i) => Ok(Some(*i as f64)),
            Value::Float(f) => Ok(Some(*f)),
            other => Err(ImportError::ModelArgs(format!(
                "`{key}` is a {}, expected a number",
                other.kind()
            ))),
        }
    }
}

const HEADS: &[&str] = &["num_heads", "n_heads", "heads"];
const CLASSES: &[&str] = &["num_classes", "n_classes"];
const CFG_DROPOUT: &[&str] = &["cfg_dropout_rate", "class_dropout", "class_dropout_prob"];
const TIMESTEPS: &[&str] = &["num_timesteps", "timesteps"];

/// One reference tensor and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub torch: String,
    pub ours: String,
    /// The reference's shape.
    pub shape: Vec<usize>,
    /// A Linear weight: `[out, in]` -> `[in, out]`.
    pub transpose: bool,
}

/// Every trainable reference tensor of a seed-flavour, adaLN-Zero `config`, mapped to ours
/// (`positional_embeddings` is not trainable and not listed).
pub fn mapping(config: &DitConfig) -> Vec<Mapped> {
    let (c, p, d) = (config.in_channels, config.patch_size, config.hidden_size);
    let hidden = d * config.mlp_ratio;
    let rows = config.num_classes + usize::from(config.has_null_label());
    let mut out = Vec::new();
    let mut copy = |torch: &str, ours: &str, shape: Vec<usize>| {
        out.push(Mapped {
            torch: torch.into(),
            ours: ours.into(),
            shape,
            transpose: false,
        })
    };
    copy(
        "patch_ops.patch_proj.weight",
        "x_embedder.proj.weight",
        vec![d, c, p, p],
    );
    copy("patch_ops.patch_proj.bias", "x_embedder.proj.bias", vec![d]);
    copy(
        "label_embed.label_embed.weight",
        "y_embedder.table.weight",
        vec![rows, d],
    );
    let mut linear = |torch: &str, ours: &str, d_in: usize, d_out: usize| {
        out.push(Mapped {
            torch: format!("{torch}.weight"),
            ours: format!("{ours}.weight"),
            shape: vec![d_out, d_in],
            transpose: true,
        });
        out.push(Mapped {
            torch: format!("{torch}.bias"),
            ours: format!("{ours}.bias"),
            shape: vec![d_out],
            transpose: false,
        });
    };
    let freq = config.timestep_frequency_dim();
    linear("time_embed.mlp.0", "t_embedder.mlp_in", freq, d);
    linear("time_embed.mlp.2", "t_embedder.mlp_out", d, d);
    for i in 0..config.depth {
        let (t, o) = (format!("blocks.{i}"), format!("blocks.{i}"));
        linear(
            &format!("{t}.scale_shift_scale.1"),
            &format!("{o}.adaln_modulation"),
            d,
            6 * d,
        );
        for (theirs, ours) in [("wq", "q"), ("wk", "k"), ("wv", "v"), ("w", "out")] {
            linear(
                &format!("{t}.att.{theirs}"),
                &format!("{o}.attn.{ours}"),
                d,
                d,
            );
        }
        linear(
            &format!("{t}.pointwise_ffn.layers.0"),
            &format!("{o}.mlp.fc1"),
            d,
            hidden,
        );
        linear(
            &format!("{t}.pointwise_ffn.layers.3"),
            &format!("{o}.mlp.fc2"),
            hidden,
            d,
        );
    }
    linear(
        "norm_linear.shift_scale.1",
        "final_layer.adaln_modulation",
        d,
        2 * d,
    );
    linear("norm_linear.linear", "final_layer.linear", d, p * p * c);
    out
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
        let tensor = if m.transpose {
            let (rows, cols) = (m.shape[0], m.shape[1]);
            let mut t = vec![0f32; data.len()];
            for r in 0..rows {
                for c in 0..cols {
                    t[c * rows + r] = data[r * cols + c];
                }
            }
            HostTensor {
                shape: vec![cols, rows],
                data: t,
            }
        } else {
            HostTensor {
                shape: m.shape.clone(),
                data,
            }
        };
        tensors.insert(m.ours.clone(), tensor);
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

/// What the weight file will describe.
struct Target {
    model: DitConfig,
    schedule: ScheduleConfig,
    labels: Vec<String>,
    dataset: String,
}

/// The sizes the tensors themselves give.
struct Probe {
    input_size: usize,
    in_channels: usize,
    patch_size: usize,
    hidden_size: usize,
    depth: usize,
    mlp_ratio: usize,
    tokens: usize,
    label_rows: usize,
}

fn probe(state: &StateDict, state_name: &str) -> Result<Probe, ImportError> {
    let shape = |name: &str| {
        state
            .get(name)
            .map(|t| t.shape.as_slice())
            .ok_or_else(|| ImportError::MissingTensor {
                state: state_name.into(),
                name: name.into(),
            })
    };
    let odd = |name: &str, shape: &[usize], want: &str| {
        ImportError::Config(format!("`{name}` has shape {shape:?}, expected {want}"))
    };
    let patch = "patch_ops.patch_proj.weight";
    let (hidden_size, in_channels, patch_size) = match shape(patch)? {
        &[d, c, p, q] if p == q && p > 0 => (d, c, p),
        s => return Err(odd(patch, s, "[d, C, p, p] (a Conv2d with square patches)")),
    };
    let pos = "positional_embeddings";
    let tokens = match shape(pos)? {
        &[1, n, _] => n,
        s => return Err(odd(pos, s, "[1, N, d]")),
    };
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid * grid != tokens || tokens == 0 {
        return Err(ImportError::Config(format!(
            "{tokens} tokens do not make a square grid"
        )));
    }
    let labels = "label_embed.label_embed.weight";
    let label_rows = match shape(labels)? {
        &[rows, _] => rows,
        s => return Err(odd(labels, s, "[rows, d]")),
    };
    let depth = state
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |i| i + 1);
    if depth > 1024 {
        return Err(ImportError::Config(format!(
            "{depth} blocks is implausible"
        )));
    }
    let fc1 = "blocks.0.pointwise_ffn.layers.0.weight";
    let mlp_ratio = match (depth, state.get(fc1).map(|t| t.shape.as_slice())) {
        (0, _) => 4,
        (_, Some(&[h, _])) if hidden_size > 0 && h % hidden_size == 0 => h / hidden_size,
        (_, Some(s)) => return Err(odd(fc1, s, "[r d, d] for an integer MLP ratio r")),
        (_, None) => shape(fc1).map(|_| 4)?,
    };
    Ok(Probe {
        input_size: grid * patch_size,
        in_channels,
        patch_size,
        hidden_size,
        depth,
        mlp_ratio,
        tokens,
        label_rows,
    })
}

fn target(
    state: &StateDict,
    state_name: &str,
    args: Option<&ModelArgs>,
    options: &ImportOptions,
) -> Result<Target, ImportError> {
    let probe = probe(state, state_name)?;
    let no_args = ModelArgs(Vec::new());
    let args = args.unwrap_or(&no_args);

    // Sizes model_args states must agree with the tensors.
    let checks: [(&[&str], usize, &str); 10] = [
        (&["d_model", "hidden_size"], probe.hidden_size, "width"),
        (&["num_layers", "depth"], probe.depth, "depth"),
        (&["patch_size"], probe.patch_size, "patch size"),
        (&["in_channels"], probe.in_channels, "input channels"),
        (
            &["out_channels"],
            probe.in_channels,
            "input channels (dit-web predicts as many)",
        ),
        (&["H"], probe.input_size, "image height"),
        (&["W"], probe.input_size, "image width"),
        (
            &["input_size", "image_size"],
            probe.input_size,
            "image size",
        ),
        (&["maxlen"], probe.tokens, "tokens"),
        (&["mlp_ratio"], probe.mlp_ratio, "MLP ratio"),
    ];
    for (aliases, found, what) in checks {
        if let Some((key, said)) = args.usize(aliases)? {
            if said != found {
                return Err(ImportError::ModelArgs(format!(
                    "`{key}` = {said}, but the tensors give {what} {found}"
                )));
            }
        }
    }
    let heads = args.usize(HEADS)?.map(|(_, h)| h);
    let classes = args.usize(CLASSES)?.map(|(_, c)| c);
    let cfg = args.f64(CFG_DROPOUT)?;
    let args_timesteps = args.usize(TIMESTEPS)?.map(|(_, t)| t);

    // Real classes and whether the last label row is the null label.
    let rows = probe.label_rows;
    let (num_classes, null) = match (classes, cfg) {
        (Some(c), _) if rows == c => (c, false),
        (Some(c), _) if rows == c + 1 => (c, true),
        (Some(c), _) => {
            return Err(ImportError::ModelArgs(format!(
                "num_classes = {c}, but the label table has {rows} rows (expected {c} or {})",
                c + 1
            )))
        }
        (None, Some(p)) => (rows.saturating_sub(usize::from(p > 0.0)), p > 0.0),
        (None, None) if options.preset.is_some() => (0, false), // the preset decides below
        (None, None) => {
            return Err(ImportError::Config(format!(
                "the label table has {rows} rows, and model_args has neither num_classes nor \
                 cfg_dropout_rate to tell whether one is the null label (or pass a preset)"
            )))
        }
    };
    if let (Some(p), true) = (cfg, classes.is_some()) {
        if (p > 0.0) != null {
            return Err(ImportError::ModelArgs(format!(
                "cfg_dropout_rate = {p} but the label table has {rows} rows for {num_classes} classes"
            )));
        }
    }

    if let Some(preset) = &options.preset {
        let m = &preset.model;
        let mut diffs = Vec::new();
        let mut cmp = |what: &str, ckpt: usize, want: usize| {
            if ckpt != want {
                diffs.push(format!("{what}: checkpoint {ckpt}, preset {want}"));
            }
        };
        cmp("image size", probe.input_size, m.input_size);
        cmp("channels", probe.in_channels, m.in_channels);
        cmp("patch size", probe.patch_size, m.patch_size);
        cmp("width", probe.hidden_size, m.hidden_size);
        cmp("depth", probe.depth, m.depth);
        cmp("MLP ratio", probe.mlp_ratio, m.mlp_ratio);
        let preset_rows = m.num_classes + usize::from(m.has_null_label());
        cmp("label rows (classes + null)", rows, preset_rows);
        if let Some(h) = heads {
            cmp("heads", h, m.num_heads);
        }
        if classes.is_some() || cfg.is_some() {
            cmp("classes", num_classes, m.num_classes);
        }
        if let (Some(t), None) = (args_timesteps, options.num_timesteps) {
            cmp("timesteps", t, preset.schedule.num_timesteps);
        }
        if m.flavour != Flavour::Seed || m.conditioning != Conditioning::AdalnZero {
            diffs.push("the preset is not the seed flavour with adaLN-Zero".into());
        }
        if !diffs.is_empty() {
            return Err(ImportError::PresetMismatch {
                preset: preset.name.into(),
                diffs,
            });
        }
        let t = options
            .num_timesteps
            .unwrap_or(preset.schedule.num_timesteps);
        return Ok(Target {
            model: m.clone(),
            schedule: ScheduleConfig {
                num_timesteps: t,
                convention: Convention::Shifted,
                ..preset.schedule.clone()
            },
            labels: preset.labels.clone(),
            dataset: preset.dataset.into(),
        });
    }

    let heads = heads.ok_or_else(|| {
        ImportError::Config(
            "the head count is not in the tensors and model_args has no num_heads (or pass a preset)"
                .into(),
        )
    })?;
    let timesteps = options.num_timesteps.or(args_timesteps).ok_or_else(|| {
        ImportError::Config(
            "model_args has no num_timesteps: give the number of diffusion timesteps (or a preset)"
                .into(),
        )
    })?;
    if timesteps == 0 || timesteps > 100_000 {
        return Err(ImportError::Config(format!(
            "{timesteps} timesteps is out of range"
        )));
    }
    let class_dropout = match (null, cfg) {
        (false, _) => 0.0,
        (true, Some(p)) if p > 0.0 && p < 1.0 => p,
        (true, _) => 0.1,
    };
    let model = DitConfig::new(
        probe.input_size,
        probe.in_channels,
        probe.patch_size,
        probe.hidden_size,
        probe.depth,
        heads,
        num_classes,
    )
    .with_mlp_ratio(probe.mlp_ratio)
    .with_class_dropout(class_dropout);
    model.validate().map_err(ImportError::Config)?;
    let mut schedule = ScheduleConfig::new(timesteps).with_convention(Convention::Shifted);
    if let Some(b) = args.f64(&["beta_start"])? {
        schedule.beta_start = b;
    }
    if let Some(b) = args.f64(&["beta_end"])? {
        schedule.beta_end = b;
    }
    Ok(Target {
        schedule,
        labels: (0..num_classes).map(|i| i.to_string()).collect(),
        dataset: "imported".into(),
        model,
    })
}
