//! The whole pipeline: model + labels + sampler settings -> images.
//!
//! [`Denoiser`] turns a sampler's host batch into network inputs and the network's output back
//! into guided noise; the native [`sample`] loop drives it synchronously, the browser drives the
//! same pieces asynchronously.

use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::diffusion::{guidance, NoiseSchedule, Sampler, SamplerConfig, SamplerKind, StepInfo};
use crate::image::{self, Rgba};
use crate::model::Dit;
use crate::path_error::PathError;
use crate::weights::{WeightError, WeightFile, WeightsMeta};

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("unknown label `{label}`; valid labels: {}", valid.join(", "))]
    UnknownLabel { label: String, valid: Vec<String> },
    #[error("guidance {0} needs a model trained with label dropout (it has no null label); use guidance 1")]
    NoNullLabel(f32),
    #[error("no labels given: nothing to generate")]
    NoLabels,
    #[error("{steps} sampler steps: this model has {max} noisy timesteps, so give 1..={max} steps{hint}")]
    BadSteps {
        steps: usize,
        max: usize,
        /// What 0 would mean, where it means something.
        hint: &'static str,
    },
    #[error("guidance must be a finite number, got {0}")]
    BadGuidance(f32),
    #[error("guidance interval [{0}, {1}]: the first timestep must not be above the last")]
    BadGuidanceInterval(usize, usize),
    #[error("the guiding model does not fit the model it guides: {0}")]
    GuideMismatch(String),
    #[error("autoguidance {0} needs a guiding model (a weaker model of the same images); use autoguidance 1")]
    NoGuide(f32),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("writing {0}")]
    Io(#[from] PathError),
}

/// Resolves labels given by name (`male`, `7`) or by index into label ids.
pub fn resolve_labels<S: AsRef<str>>(
    names: &[String],
    requested: &[S],
) -> Result<Vec<usize>, GenerateError> {
    requested
        .iter()
        .map(|r| {
            let r = r.as_ref().trim();
            names
                .iter()
                .position(|n| n == r)
                .or_else(|| r.parse::<usize>().ok().filter(|&i| i < names.len()))
                .ok_or_else(|| GenerateError::UnknownLabel {
                    label: r.to_string(),
                    valid: names.to_vec(),
                })
        })
        .collect()
}

/// Evaluates the network for a sampler, with two kinds of guidance that can be combined:
/// classifier-free guidance when `guidance` is not 1 (on the steps inside the guidance interval,
/// when one is set), and autoguidance when `autoguidance` is not 1 and a guiding model is given
/// (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself"; every step):
/// `eps = eps(x, y) + (s - 1) (eps(x, y) - eps(x, null)) + (a - 1) (eps(x, y) - eps_guide(x, y))`.
pub struct Denoiser<'a, B: Backend> {
    model: &'a Dit<B>,
    /// The weaker model of autoguidance and its scale; `None`: no autoguidance.
    guide: Option<(&'a Dit<B>, f32)>,
    /// The requested labels.
    labels: Vec<usize>,
    /// The same labels, then as many nulls: the network batch of a guided step.
    doubled: Vec<usize>,
    guidance: Option<f32>,
    /// Timesteps `[lo, hi]` that are guided (all when `None`).
    interval: Option<[usize; 2]>,
}

impl<'a, B: Backend> Denoiser<'a, B> {
    /// Checks the labels and guidance settings against the model.
    pub fn new(
        model: &'a Dit<B>,
        labels: &[usize],
        config: &SamplerConfig,
    ) -> Result<Self, GenerateError> {
        Self::guided_by(model, None, labels, config)
    }

    /// [`Denoiser::new`] with a guiding model for autoguidance (a model of the same images,
    /// labels and noise schedule that is worse, e.g. smaller or less trained); it runs when
    /// `config.autoguidance` is not 1.
    pub fn guided_by(
        model: &'a Dit<B>,
        guide: Option<&'a Dit<B>>,
        labels: &[usize],
        config: &SamplerConfig,
    ) -> Result<Self, GenerateError> {
        let (guidance, autoguidance) = (config.guidance, config.autoguidance);
        if labels.is_empty() {
            return Err(GenerateError::NoLabels);
        }
        for scale in [guidance, autoguidance] {
            if !scale.is_finite() {
                return Err(GenerateError::BadGuidance(scale));
            }
        }
        if let Some([lo, hi]) = config.guidance_interval {
            if lo > hi {
                return Err(GenerateError::BadGuidanceInterval(lo, hi));
            }
        }
        let model_config = model.config();
        if let Some(&bad) = labels.iter().find(|&&l| l >= model_config.num_classes) {
            return Err(GenerateError::UnknownLabel {
                label: bad.to_string(),
                valid: (0..model_config.num_classes)
                    .map(|i| i.to_string())
                    .collect(),
            });
        }
        let guide = match (autoguidance == 1.0, guide) {
            (true, _) => None,
            (false, None) => return Err(GenerateError::NoGuide(autoguidance)),
            (false, Some(guide)) => {
                let g = guide.config();
                let fits = [
                    ("channels", model_config.in_channels, g.in_channels),
                    ("image size", model_config.input_size, g.input_size),
                    ("classes", model_config.num_classes, g.num_classes),
                ];
                if let Some((what, m, g)) = fits.iter().find(|(_, m, g)| m != g) {
                    return Err(GenerateError::GuideMismatch(format!(
                        "{what} {g} against {m}"
                    )));
                }
                Some((guide, autoguidance))
            }
        };
        let (doubled, guidance) = match (guidance == 1.0, model_config.null_label()) {
            (true, _) => (Vec::new(), None),
            (false, Some(null)) => (guidance::doubled_labels(labels, null), Some(guidance)),
            (false, None) => return Err(GenerateError::NoNullLabel(guidance)),
        };
        Ok(Self {
            model,
            guide,
            labels: labels.to_vec(),
            doubled,
            guidance,
            interval: config.guidance_interval,
        })
    }

    /// The classifier-free guidance scale applied at timestep `t`, `None` when the step is not
    /// guided that way.
    pub fn guidance_at(&self, t: usize) -> Option<f32> {
        let inside = self.interval.is_none_or(|[lo, hi]| (lo..=hi).contains(&t));
        self.guidance.filter(|_| inside)
    }

    /// Runs the network on the sampler's batch `x` at timestep `t`; on a step with
    /// classifier-free guidance the result still holds the unconditional half (see
    /// [`Denoiser::eps_from_output`]).
    pub fn forward(&self, x: &[f32], t: usize) -> Tensor<B, 4> {
        let (x, labels) = match self.guidance_at(t) {
            Some(_) => ([x, x].concat(), &self.doubled),
            None => (x.to_vec(), &self.labels),
        };
        Self::run(self.model, x, labels, t)
    }

    /// The guiding model's output on the requested images under autoguidance, `None` without.
    pub fn guide_forward(&self, x: &[f32], t: usize) -> Option<Tensor<B, 4>> {
        let (guide, _) = self.guide?;
        Some(Self::run(guide, x.to_vec(), &self.labels, t))
    }

    fn run(model: &Dit<B>, x: Vec<f32>, labels: &[usize], t: usize) -> Tensor<B, 4> {
        let config = model.config();
        let device = model.device();
        let n = labels.len();
        let (c, s) = (config.in_channels, config.input_size);
        let x = Tensor::<B, 4>::from_data(TensorData::new(x, [n, c, s, s]), &device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(vec![t as f32; n], [n]), &device);
        let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), &device);
        model.forward(x, t, y)
    }

    /// The sampler's noise from the outputs of [`Denoiser::forward`] and (under autoguidance)
    /// [`Denoiser::guide_forward`] at timestep `t`, read back to the host.
    pub fn eps_from_output(&self, output: Vec<f32>, guide: Option<Vec<f32>>, t: usize) -> Vec<f32> {
        let auto = self.guide.map(|(_, scale)| scale).zip(guide);
        match (self.guidance_at(t), auto) {
            (None, None) => output,
            (Some(scale), None) => guidance::combine(&output, scale),
            (None, Some((scale, weak))) => guidance::combine_pair(&output, &weak, scale),
            (Some(scale), Some((auto, weak))) => {
                let mut eps = guidance::combine(&output, scale);
                // The conditional prediction is the first half of the doubled batch.
                guidance::add_autoguidance(&mut eps, &output[..weak.len()], &weak, auto);
                eps
            }
        }
    }

    /// `forward` (and `guide_forward`) + synchronous read-back + guidance (native backends only).
    pub fn eps(&self, x: &[f32], t: usize) -> Vec<f32> {
        let read = |output: Tensor<B, 4>| {
            let data = output.into_data().convert::<f32>();
            data.into_vec::<f32>().expect("f32 output")
        };
        let output = read(self.forward(x, t));
        let guide = self.guide_forward(x, t).map(read);
        self.eps_from_output(output, guide, t)
    }
}

/// Images per network call for `trainer generate` and `trainer eval` unless told otherwise:
/// larger requests run as several batches. On a 2-core CPU, batches side by side, 8 or 16 images
/// drew fastest and 32 took 7 % (`mnist-cpu`, `cargo bench --bench model -- sample_batched`) to
/// 20 % (`mnist`) longer, as activations outgrow the CPU's caches.
pub const DEFAULT_BATCH: usize = 16;

/// How [`sample_batched_guided`] splits a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batches {
    /// Images per network call, at most.
    pub max: usize,
    /// Run the batches side by side on rayon's threads rather than one after another: for the
    /// CPU backends natively, where one batch keeps little more than one core busy (their
    /// element-wise passes run on one thread; only large matrix products split). In the browser
    /// rayon has one thread and the batches run in turn. GPU backends want `false`: one queue
    /// does the work.
    pub parallel: bool,
}

impl Batches {
    /// Batches of at most `max` images, one after another.
    pub fn in_turn(max: usize) -> Self {
        Self {
            max,
            parallel: false,
        }
    }
}

/// The most sampler steps `schedule` can give: one per noisy timestep (t = 0 is the clean image
/// under the shifted convention).
pub fn max_steps(schedule: &NoiseSchedule) -> usize {
    schedule.num_timesteps() - schedule.first_noisy_timestep()
}

/// Refuses a number of sampler steps the model's schedule cannot give: 0 (but for DDPM, where 0
/// means every timestep) or more than [`max_steps`]. Without this a sampler would quietly take
/// one step, or every timestep, instead of what was asked.
pub fn check_steps(schedule: &NoiseSchedule, config: &SamplerConfig) -> Result<(), GenerateError> {
    let max = max_steps(schedule);
    if config.kind.allows_steps(config.steps, max) {
        return Ok(());
    }
    Err(GenerateError::BadSteps {
        steps: config.steps,
        max,
        hint: if config.kind == SamplerKind::Ddpm {
            " (or 0: every timestep)"
        } else {
            ""
        },
    })
}

/// Samples a batch, one image per label, calling `on_step` after every step.
/// Returns `[labels.len() * C * H * W]` values in roughly [-1, 1].
pub fn sample<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    labels: &[usize],
    config: &SamplerConfig,
    on_step: impl FnMut(&StepInfo),
) -> Result<Vec<f32>, GenerateError> {
    let denoiser = Denoiser::new(model, labels, config)?;
    check_steps(schedule, config)?;
    Ok(sample_streams(
        &denoiser,
        schedule,
        0,
        labels.len(),
        config,
        on_step,
    ))
}

/// [`sample`] for a request of any size, run as batches of at most `max_batch` images. Image `i`
/// keeps noise stream `i`, so the result is the one-batch result (up to float rounding in the
/// network). `on_batch(done)` is called after each batch with the images finished so far.
pub fn sample_batched<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    labels: &[usize],
    config: &SamplerConfig,
    max_batch: usize,
    on_batch: impl FnMut(usize) + Send,
) -> Result<Vec<f32>, GenerateError> {
    let batches = Batches::in_turn(max_batch);
    sample_batched_guided(model, None, schedule, labels, config, batches, on_batch)
}

/// [`sample_batched`] with a guiding model for autoguidance (see [`Denoiser`]), and batches side
/// by side where `batches.parallel` asks: the images are the same either way, each batch's
/// network work being the same.
pub fn sample_batched_guided<B: Backend>(
    model: &Dit<B>,
    guide: Option<&Dit<B>>,
    schedule: &NoiseSchedule,
    labels: &[usize],
    config: &SamplerConfig,
    batches: Batches,
    on_batch: impl FnMut(usize) + Send,
) -> Result<Vec<f32>, GenerateError> {
    use rayon::prelude::*;
    // Every label, the guidance and the steps are checked before the first batch runs.
    Denoiser::guided_by(model, guide, labels, config)?;
    check_steps(schedule, config)?;
    let max = batches.max.max(1);
    // (images finished so far, the caller's callback), shared by the batches.
    let progress = std::sync::Mutex::new((0, on_batch));
    let run = |(k, chunk): (usize, &[usize])| -> Result<Vec<f32>, GenerateError> {
        let denoiser = Denoiser::guided_by(model, guide, chunk, config)?;
        let images = sample_streams(&denoiser, schedule, k * max, chunk.len(), config, |_| {});
        let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.0 += chunk.len();
        let done = progress.0;
        (progress.1)(done);
        Ok(images)
    };
    let outputs: Result<Vec<Vec<f32>>, _> = if batches.parallel {
        labels.par_chunks(max).enumerate().map(run).collect()
    } else {
        labels.chunks(max).enumerate().map(run).collect()
    };
    Ok(outputs?.concat())
}

/// The sampling loop for images `first..first + count` of a request.
fn sample_streams<B: Backend>(
    denoiser: &Denoiser<'_, B>,
    schedule: &NoiseSchedule,
    first: usize,
    count: usize,
    config: &SamplerConfig,
    mut on_step: impl FnMut(&StepInfo),
) -> Vec<f32> {
    let image_len = denoiser.model.config().image_len();
    let mut sampler = Sampler::new_at(schedule, config, first..first + count, image_len);
    while let Some(t) = sampler.timestep() {
        let eps = denoiser.eps(sampler.x(), t);
        let x0 = sampler.advance(&eps);
        on_step(&StepInfo {
            step: sampler.steps_done(),
            total: sampler.num_steps(),
            t,
            x0: &x0,
        });
    }
    sampler.into_output()
}

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

/// Loads a weight file (and a guiding model's, for autoguidance), generates one image per label
/// (split as `batches` says) and writes `NNNN_label-<name>.png` for each plus
/// `grid.png` into `out_dir`. Returns the paths written, grid last.
pub fn generate_pngs<B: Backend, S: AsRef<str>>(
    weights: &[u8],
    guide: Option<&[u8]>,
    labels: &[S],
    config: &SamplerConfig,
    batches: Batches,
    out_dir: &Path,
    device: &B::Device,
) -> Result<Vec<PathBuf>, GenerateError> {
    let (model, meta): (Dit<B>, WeightsMeta) =
        WeightFile::from_bytes(weights)?.into_model(device)?;
    let guide = guide
        .map(|bytes| load_guide::<B>(&meta, bytes, device))
        .transpose()?;
    let ids = resolve_labels(&meta.labels, labels)?;
    let schedule = NoiseSchedule::new(&meta.schedule);
    let batch = sample_batched_guided(
        &model,
        guide.as_ref(),
        &schedule,
        &ids,
        config,
        batches,
        |_| {},
    )?;
    let (c, s) = (meta.model.in_channels, meta.model.input_size);
    let images = to_images(&batch, c, s);

    std::fs::create_dir_all(out_dir).map_err(PathError::at(out_dir))?;
    let mut written = Vec::new();
    for (k, (image, &id)) in images.iter().zip(&ids).enumerate() {
        let path = out_dir.join(format!("{k:04}_label-{}.png", meta.labels[id]));
        image::write_png(&path, image).map_err(PathError::at(&path))?;
        written.push(path);
    }
    let path = out_dir.join("grid.png");
    image::write_png(&path, &image::grid(&images, images.len().min(10), 2))
        .map_err(PathError::at(&path))?;
    written.push(path);
    Ok(written)
}
