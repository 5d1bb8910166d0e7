use std::collections::{BTreeMap, HashMap};

use burn::module::Module;
use burn::tensor::backend::Backend;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::error::WeightError;
use super::format::{FORMAT_VERSION, METADATA_KEY, SCALE_SUFFIX};
use super::params::{Collector, HostTensor, Loader, NameCollector};
use super::quant;
use crate::config::{DitConfig, Preset, ScheduleConfig};
use crate::model::Dit;

/// How the tensors of a file are stored.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Quantization {
    #[default]
    F32,
    F16,
    /// Matrices and filters as int8 with one f32 scale per output channel; vectors stay f32.
    Int8,
    /// Linear weights as group-wise int4 (two per byte, one f32 scale per 32 inputs of each
    /// output); matrices that do not split into such groups as int8; vectors stay f32.
    Int4,
}

impl std::str::FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "int8" => Ok(Self::Int8),
            "int4" => Ok(Self::Int4),
            other => Err(format!(
                "unknown quantization `{other}` (expected f32, f16, int8 or int4)"
            )),
        }
    }
}

/// Everything needed to use a weight file besides the tensors.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WeightsMeta {
    pub format_version: u32,
    pub model: DitConfig,
    pub schedule: ScheduleConfig,
    /// Class names, index = label id.
    pub labels: Vec<String>,
    pub dataset: String,
    /// Optimizer steps the weights were trained for.
    pub step: u64,
    /// Whether these are the EMA weights.
    pub ema: bool,
    pub quantization: Quantization,
}

impl WeightsMeta {
    /// Metadata for a model of a preset, f32, step 0.
    pub fn for_preset(preset: &Preset) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            model: preset.model.clone(),
            schedule: preset.schedule.clone(),
            labels: preset.labels.clone(),
            dataset: preset.dataset.into(),
            step: 0,
            ema: false,
            quantization: Quantization::F32,
        }
    }
}

/// A decoded weight file: metadata and every parameter as f32, by module path.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightFile {
    pub meta: WeightsMeta,
    pub tensors: BTreeMap<String, HostTensor>,
}

impl WeightFile {
    /// Parses and dequantizes a file held in memory (no filesystem needed: the browser's path).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightError> {
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| WeightError::Malformed(e.to_string()))?;
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| WeightError::Malformed(e.to_string()))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or(WeightError::MissingMetadata)?;
        let meta = parse_meta(json)?;

        let views: HashMap<&str, safetensors::tensor::TensorView<'_>> = file.iter().collect();
        let mut tensors = BTreeMap::new();
        for (&name, view) in &views {
            if let Some(base) = name.strip_suffix(SCALE_SUFFIX) {
                if !views.contains_key(base) {
                    return Err(WeightError::UnexpectedTensor(name.into()));
                }
                continue;
            }
            let shape = view.shape().to_vec();
            let data = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::I8 | Dtype::U8 => {
                    let bad = |reason: String| WeightError::BadTensor {
                        name: name.into(),
                        reason,
                    };
                    let scale_name = format!("{name}{SCALE_SUFFIX}");
                    let scale = views
                        .get(scale_name.as_str())
                        .ok_or_else(|| bad(format!("quantized tensor without `{scale_name}`")))?;
                    if scale.dtype() != Dtype::F32 {
                        return Err(bad(format!("`{scale_name}` must be F32")));
                    }
                    let scales: Vec<f32> = scale
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    if view.dtype() == Dtype::I8 {
                        let values: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
                        quant::dequantize_int8(&values, &shape, &scales, scale.shape())
                            .map_err(bad)?
                    } else {
                        // int4: two values per byte along the last axis.
                        let Some((last, rest)) = shape.split_last() else {
                            return Err(bad("an int4 tensor needs a shape".into()));
                        };
                        let logical: Vec<usize> = rest.iter().copied().chain([2 * last]).collect();
                        let data =
                            quant::dequantize_int4(view.data(), &logical, &scales, scale.shape())
                                .map_err(bad)?;
                        tensors.insert(
                            name.to_string(),
                            HostTensor {
                                shape: logical,
                                data,
                            },
                        );
                        continue;
                    }
                }
                other => {
                    return Err(WeightError::UnsupportedDtype {
                        name: name.into(),
                        dtype: format!("{other:?}"),
                    });
                }
            };
            tensors.insert(name.to_string(), HostTensor { shape, data });
        }
        Ok(Self { meta, tensors })
    }

    /// Encodes with `self.meta.quantization`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WeightError> {
        let malformed = |e: safetensors::SafeTensorError| WeightError::Malformed(e.to_string());
        // (name, dtype, shape, bytes)
        let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in &self.tensors {
            let f32_bytes = |data: &[f32]| {
                data.iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>()
            };
            match self.meta.quantization {
                Quantization::Int4 if quant::int4_fits(&t.shape) => {
                    let q = quant::quantize_int4(&t.data, &t.shape);
                    entries.push((
                        name.clone(),
                        Dtype::U8,
                        vec![t.shape[0], t.shape[1] / 2],
                        q.packed,
                    ));
                    entries.push((
                        format!("{name}{SCALE_SUFFIX}"),
                        Dtype::F32,
                        q.scale_shape,
                        f32_bytes(&q.scales),
                    ));
                }
                Quantization::Int8 | Quantization::Int4 if t.shape.len() >= 2 => {
                    let q = quant::quantize_int8(&t.data, &t.shape);
                    entries.push((
                        name.clone(),
                        Dtype::I8,
                        t.shape.clone(),
                        q.values.iter().map(|&v| v as u8).collect(),
                    ));
                    entries.push((
                        format!("{name}{SCALE_SUFFIX}"),
                        Dtype::F32,
                        q.scale_shape,
                        f32_bytes(&q.scales),
                    ));
                }
                Quantization::F16 => {
                    let bytes = t
                        .data
                        .iter()
                        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                        .collect();
                    entries.push((name.clone(), Dtype::F16, t.shape.clone(), bytes));
                }
                _ => entries.push((
                    name.clone(),
                    Dtype::F32,
                    t.shape.clone(),
                    f32_bytes(&t.data),
                )),
            }
        }
        let views = entries
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed)?;
        let json = serde_json::to_string(&self.meta)
            .map_err(|e| WeightError::BadMetadata(e.to_string()))?;
        let metadata = HashMap::from([(METADATA_KEY.to_string(), json)]);
        safetensors::serialize(views, Some(metadata)).map_err(malformed)
    }

    /// The error of every matrix (rank >= 2) of `other` against the same tensor here, largest
    /// first: how much a quantized copy lost.
    pub fn matrix_errors(&self, other: &WeightFile) -> Vec<(String, quant::QuantError)> {
        let mut errors: Vec<_> = self
            .tensors
            .iter()
            .filter(|(_, t)| t.shape.len() >= 2)
            .filter_map(|(name, t)| {
                other
                    .tensors
                    .get(name)
                    .map(|o| (name.clone(), quant::error(&t.data, &o.data)))
            })
            .collect();
        errors.sort_by(|a, b| b.1.relative_rms.total_cmp(&a.1.relative_rms));
        errors
    }

    /// Reads every parameter of a model (a synchronous read-back: native only).
    pub fn from_model<B: Backend>(model: &Dit<B>, meta: WeightsMeta) -> Self {
        let mut collector = Collector {
            path: Vec::new(),
            tensors: BTreeMap::new(),
        };
        model.visit(&mut collector);
        Self {
            meta,
            tensors: collector.tensors,
        }
    }

    /// Builds the model the metadata describes and fills it with these tensors, checking that
    /// every parameter is present with the right shape and nothing else is in the file.
    pub fn into_model<B: Backend>(
        self,
        device: &B::Device,
    ) -> Result<(Dit<B>, WeightsMeta), WeightError> {
        let config = &self.meta.model;
        // Names first, then the total size, all before the real model is allocated: a file
        // whose metadata claims a huge model fails here rather than exhausting memory.
        let expected = Self::expected_names::<B>(config, device);
        if let Some(name) = expected.iter().find(|n| !self.tensors.contains_key(*n)) {
            return Err(WeightError::MissingTensor(name.clone()));
        }
        if let Some(name) = self.tensors.keys().find(|n| !expected.contains(n)) {
            return Err(WeightError::UnexpectedTensor(name.clone()));
        }
        let stored: u128 = self.tensors.values().map(|t| t.data.len() as u128).sum();
        if stored != config.num_params() {
            return Err(WeightError::BadTensor {
                name: "(all)".into(),
                reason: format!(
                    "the file holds {stored} values, the model in its metadata needs {}",
                    config.num_params()
                ),
            });
        }
        let mut loader = Loader {
            path: Vec::new(),
            tensors: self.tensors,
            error: None,
        };
        let model = config.init::<B>(device).map(&mut loader);
        if let Some(e) = loader.error {
            return Err(e);
        }
        if let Some(name) = loader.tensors.into_keys().next() {
            return Err(WeightError::UnexpectedTensor(name));
        }
        Ok((model, self.meta))
    }

    /// Parameter names of a small model of the same structure (depth 1, tiny width), mapped to
    /// the real depth: enough to name the first missing tensor without building the real model.
    fn expected_names<B: Backend>(config: &DitConfig, device: &B::Device) -> Vec<String> {
        let mut small = config.clone();
        small.depth = config.depth.min(1);
        small.hidden_size = 4 * small.num_heads;
        small.input_size = small.patch_size;
        let mut collector = NameCollector {
            path: Vec::new(),
            names: Vec::new(),
        };
        small.init::<B>(device).visit(&mut collector);
        let (block, rest): (Vec<String>, Vec<String>) = collector
            .names
            .into_iter()
            .partition(|n| n.starts_with("blocks.0."));
        let per_block = (0..config.depth).flat_map(|i| {
            block
                .iter()
                .map(move |n| n.replacen("blocks.0.", &format!("blocks.{i}."), 1))
        });
        rest.into_iter().chain(per_block).collect()
    }
}

/// Parses the JSON metadata, checking the version first so a newer file gets the version error
/// rather than a confusing field error.
fn parse_meta(json: &str) -> Result<WeightsMeta, WeightError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| WeightError::BadMetadata(e.to_string()))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| WeightError::BadMetadata("missing `format_version`".into()))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(WeightError::NewerVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let meta: WeightsMeta =
        serde_json::from_value(value).map_err(|e| WeightError::BadMetadata(e.to_string()))?;
    meta.model.validate().map_err(WeightError::InvalidConfig)?;
    if meta.labels.len() != meta.model.num_classes {
        return Err(WeightError::LabelCount {
            found: meta.labels.len(),
            expected: meta.model.num_classes,
        });
    }
    meta.schedule
        .validate()
        .map_err(|e| WeightError::BadMetadata(format!("schedule: {e}")))?;
    Ok(meta)
}
