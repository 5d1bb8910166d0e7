//! From weight files to images in memory: the models loaded (a guiding model checked against the
//! one it guides), the labels resolved, the batch sampled and split into RGBA images.

use burn::tensor::backend::Backend;

use super::checks::resolve_labels;
use super::error::GenerateError;
use super::sampling::{sample_batched_guided, Batches};
use crate::diffusion::{NoiseSchedule, SamplerConfig};
use crate::image::{self, Rgba};
use crate::model::{Dit, OwnKernels};
use crate::weights::{WeightFile, WeightsMeta};

/// Splits a sampled batch into RGBA images.
pub fn to_images(batch: &[f32], channels: usize, size: usize) -> Vec<Rgba> {
    batch
        .chunks(channels * size * size)
        .map(|chw| image::to_rgba(chw, channels, size))
        .collect()
}

/// Loads the guiding model of autoguidance from a weight file and checks that it draws the same
/// images as the model `meta` describes: same labels and noise schedule (the shapes are checked
/// by [`Denoiser::guided_by`]).
pub fn load_guide<B: Backend>(
    meta: &WeightsMeta,
    bytes: &[u8],
    device: &B::Device,
) -> Result<Dit<B>, GenerateError> {
    let (guide, guide_meta): (Dit<B>, WeightsMeta) =
        WeightFile::from_bytes(bytes)?.into_model(device)?;
    if guide_meta.labels != meta.labels {
        return Err(GenerateError::GuideMismatch(format!(
            "labels {:?} against {:?}",
            guide_meta.labels, meta.labels
        )));
    }
    if guide_meta.schedule != meta.schedule {
        return Err(GenerateError::GuideMismatch(format!(
            "noise schedule {:?} against {:?}",
            guide_meta.schedule, meta.schedule
        )));
    }
    Ok(guide)
}

/// What [`generate_images`] drew: one image per requested label, and each image's label name.
pub struct Generated {
    pub images: Vec<Rgba>,
    pub labels: Vec<String>,
}

/// Loads a weight file (and a guiding model's, for autoguidance) and generates one image per
/// label, split into network calls as `batches` says. Writing them is the caller's business
/// ([`image::encode_png`], [`image::grid`]).
pub fn generate_images<B: Backend, S: AsRef<str>>(
    weights: &[u8],
    guide: Option<&[u8]>,
    labels: &[S],
    config: &SamplerConfig,
    batches: Batches,
    device: &B::Device,
) -> Result<Generated, GenerateError> {
    let models = Models::<B>::load(weights, guide, device)?;
    let guide = models.guide.as_ref();
    draw_images(&models.model, guide, &models.meta, labels, config, batches)
}

/// A weight file's model and metadata, with the guiding model of autoguidance when there is one.
pub struct Models<B: Backend> {
    pub model: Dit<B>,
    pub guide: Option<Dit<B>>,
    pub meta: WeightsMeta,
}

impl<B: Backend> Models<B> {
    /// Loads `weights` (and `guide`'s file, checked by [`load_guide`]) onto `device`.
    pub fn load(
        weights: &[u8],
        guide: Option<&[u8]>,
        device: &B::Device,
    ) -> Result<Self, GenerateError> {
        let (model, meta): (Dit<B>, WeightsMeta) =
            WeightFile::from_bytes(weights)?.into_model(device)?;
        let guide = guide
            .map(|bytes| load_guide::<B>(&meta, bytes, device))
            .transpose()?;
        Ok(Self { model, guide, meta })
    }

    /// Both models on `own`'s kernels ([`Dit::with_kernels`]).
    pub fn with_kernels(self, own: OwnKernels) -> Self {
        Self {
            model: self.model.with_kernels(own),
            guide: self.guide.map(|guide| guide.with_kernels(own)),
            meta: self.meta,
        }
    }
}

/// [`generate_images`] with the models already loaded (`meta`: the model's file's metadata).
pub fn draw_images<B: Backend, S: AsRef<str>>(
    model: &Dit<B>,
    guide: Option<&Dit<B>>,
    meta: &WeightsMeta,
    labels: &[S],
    config: &SamplerConfig,
    batches: Batches,
) -> Result<Generated, GenerateError> {
    let ids = resolve_labels(&meta.labels, labels)?;
    let schedule = NoiseSchedule::new(&meta.schedule);
    let batch = sample_batched_guided(model, guide, &schedule, &ids, config, batches, |_| {})?;
    let (c, s) = (meta.model.in_channels, meta.model.input_size);
    Ok(Generated {
        images: to_images(&batch, c, s),
        labels: ids.iter().map(|&id| meta.labels[id].clone()).collect(),
    })
}
