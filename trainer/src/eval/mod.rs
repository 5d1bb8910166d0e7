//! Sample quality for MNIST: a classifier the trainer trains itself ([`classifier`]) scores
//! generated digits by class-conditional accuracy and by the Fréchet distance between its
//! penultimate-layer features of generated and real test digits ([`fid`]), next to the same
//! figures for real training digits (the ceiling).

pub mod classifier;
pub mod fid;

use burn::tensor::backend::{AutodiffBackend, Backend};
use dit_web::diffusion::{NoiseRng, NoiseSchedule, SamplerConfig};
use dit_web::generate::{sample_batched, GenerateError};
use dit_web::model::Dit;
use dit_web::weights::WeightFile;
use serde::Serialize;

use crate::backend::OnBackend;
use crate::data::mnist::Mnist;
use crate::data::Dataset;
use classifier::Classifier;

/// Accuracy and FID of one set of images.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Scores {
    pub images: usize,
    /// Share of images the classifier puts in their intended class.
    pub accuracy: f64,
    /// Fréchet distance to the real test set in the classifier's feature space.
    pub fid: f64,
}

/// Scores images `[n * 784]` in [-1, 1] meant to be of classes `labels`, against the test set's
/// feature statistics.
pub fn score<B: Backend>(
    classifier: &Classifier<B>,
    images: &[f32],
    labels: &[usize],
    reference: &fid::Gaussian,
) -> Scores {
    let (predictions, features) = classifier.predict(images);
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Scores {
        images: labels.len(),
        accuracy: correct as f64 / labels.len() as f64,
        fid: fid::frechet_distance(&fid::Gaussian::fit(&features), reference),
    }
}

/// `per_class` real images of each digit, drawn from `data` with a fixed seed.
pub fn real_images(data: &Mnist, per_class: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = NoiseRng::new(seed, 0);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut counts = [0usize; 10];
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut buffer = vec![0f32; data.image_len()];
    for index in order {
        let label = data.labels[index] as usize;
        if counts[label] < per_class {
            data.image_into(index, &mut buffer)
                .expect("MNIST images in memory always decode");
            images.extend_from_slice(&buffer);
            labels.push(label);
            counts[label] += 1;
        }
    }
    (images, labels)
}

/// Generates `per_class` images of every class, `batch` per network call, calling
/// `progress(done)` after each batch. Image `i` (class `i / per_class`) uses noise stream `i` of
/// the seed, whatever the batch size.
pub fn generate_per_class<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    config: &SamplerConfig,
    per_class: usize,
    batch: usize,
    progress: impl FnMut(usize),
) -> Result<(Vec<f32>, Vec<usize>), GenerateError> {
    let classes = model.config().num_classes;
    let labels: Vec<usize> = (0..classes)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let images = sample_batched(model, schedule, &labels, config, batch, progress)?;
    Ok((images, labels))
}

/// [`generate_per_class`] for a weight file, as a task for whichever backend the user chose.
pub struct PerClass<'a, F> {
    pub bytes: &'a [u8],
    pub config: &'a SamplerConfig,
    pub per_class: usize,
    pub batch: usize,
    pub progress: F,
}

impl<F: FnMut(usize)> OnBackend for PerClass<'_, F> {
    type Output = Result<(Vec<f32>, Vec<usize>), GenerateError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let (model, meta) =
            WeightFile::from_bytes(self.bytes)?.into_model::<B::InnerBackend>(&device)?;
        let schedule = NoiseSchedule::new(&meta.schedule);
        generate_per_class(
            &model,
            &schedule,
            self.config,
            self.per_class,
            self.batch,
            self.progress,
        )
    }
}
