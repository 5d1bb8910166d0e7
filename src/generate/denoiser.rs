//! The network as a sampler sees it: host batches in, guided noise out.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use super::error::GenerateError;
use crate::diffusion::{guidance, SamplerConfig};
use crate::model::Dit;

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
    /// The network it runs.
    pub fn model(&self) -> &'a Dit<B> {
        self.model
    }

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
