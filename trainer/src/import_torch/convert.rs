//! A checkpoint's state dict to dit-web's weights: every tensor checked for presence, shape and
//! finite values, the position table checked against ours, names and layouts mapped.

use std::collections::BTreeMap;
use std::path::Path;

use dit_web::model::position_table;
use dit_web::weights::{Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};

use super::archive::{Checkpoint, StateDict};
use super::error::{ImportError, POSITION_TOLERANCE};
use super::mapping::mapping;
use super::model_args::ModelArgs;
use super::options::ImportOptions;
use super::probe::target;

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
