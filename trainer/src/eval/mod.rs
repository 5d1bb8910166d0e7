//! Sample quality for MNIST: a classifier the trainer trains itself ([`classifier`]) scores
//! generated digits by class-conditional accuracy and by the Fréchet distance between its
//! penultimate-layer features of generated and real test digits ([`fid`]), next to the same
//! figures for real training digits (the ceiling); [`precision_recall`] splits the distance into
//! realism and variety.

pub mod classifier;
pub mod fid;
pub mod precision_recall;

use std::path::{Path, PathBuf};

use burn::tensor::backend::{AutodiffBackend, Backend};
use dit_web::diffusion::{NoiseRng, NoiseSchedule, SamplerConfig};
use dit_web::generate::{sample_batched_guided, Batches, GenerateError, Models};
use dit_web::model::{Dit, OwnKernels};
use dit_web::weights::WeightFile;
use serde::Serialize;

use crate::backend::{run_on, BackendChoice, OnBackend};
use crate::data::mnist::{Mnist, Split};
use crate::data::Dataset;
use crate::Cpu;
use classifier::Classifier;

/// Accuracy and FID of one set of images.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Scores {
    pub images: usize,
    /// Share of images the classifier puts in their intended class.
    pub accuracy: f64,
    /// The same for each class (digit 0 first), so a miss can be traced to the digits it
    /// comes from; `None` for a class with no images.
    pub class_accuracy: Vec<Option<f64>>,
    /// Fréchet distance to the real test set in the classifier's feature space.
    pub fid: f64,
    /// Share of the images inside the manifold of as many real test digits (realism).
    pub precision: f64,
    /// Share of those real digits inside the images' manifold (variety).
    pub recall: f64,
}

/// What images are scored against: the test set's feature statistics (FID) and the manifold of
/// a sample of test digits as large as the scored sets (precision and recall).
pub struct Reference {
    pub gaussian: fid::Gaussian,
    pub sample: precision_recall::Manifold,
}

/// Scores images `[n * 784]` in [-1, 1] meant to be of classes `labels`.
pub fn score<B: Backend>(
    classifier: &Classifier<B>,
    images: &[f32],
    labels: &[usize],
    reference: &Reference,
) -> Scores {
    let (predictions, features) = classifier.predict(images);
    let (accuracy, class_accuracy) = accuracy(&predictions, labels, 10);
    let fid = fid::frechet_distance(&fid::Gaussian::fit(&features), &reference.gaussian);
    let (precision, recall) = precision_recall::precision_recall(&reference.sample, features);
    Scores {
        images: labels.len(),
        accuracy,
        class_accuracy,
        fid,
        precision,
        recall,
    }
}

/// The share of `predictions` equal to `labels`, overall and for each of `classes` classes.
pub fn accuracy(
    predictions: &[usize],
    labels: &[usize],
    classes: usize,
) -> (f64, Vec<Option<f64>>) {
    let mut counts = vec![(0usize, 0usize); classes]; // (correct, all) per class
    for (&p, &l) in predictions.iter().zip(labels) {
        counts[l].0 += usize::from(p == l);
        counts[l].1 += 1;
    }
    let correct: usize = counts.iter().map(|c| c.0).sum();
    let per_class = counts
        .iter()
        .map(|&(right, all)| (all > 0).then(|| right as f64 / all as f64))
        .collect();
    (correct as f64 / labels.len().max(1) as f64, per_class)
}

/// The seed of the test digits precision and recall compare with.
const PR_REFERENCE_SEED: u64 = 1_000_003;

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

/// Generates `per_class` images of every class, split into `batches`, calling
/// `progress(done)` after each batch. Image `i` (class `i / per_class`) uses noise stream `i` of
/// the seed, whatever the batch size.
pub fn generate_per_class<B: Backend>(
    model: &Dit<B>,
    guide: Option<&Dit<B>>,
    schedule: &NoiseSchedule,
    config: &SamplerConfig,
    per_class: usize,
    batches: Batches,
    progress: impl FnMut(usize) + Send,
) -> Result<(Vec<f32>, Vec<usize>), GenerateError> {
    let classes = model.config().num_classes;
    let labels: Vec<usize> = (0..classes)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let images = sample_batched_guided(model, guide, schedule, &labels, config, batches, progress)?;
    Ok((images, labels))
}

/// [`generate_per_class`] for a weight file, as a task for whichever backend the user chose.
pub struct PerClass<'a, F> {
    pub bytes: &'a [u8],
    /// A weaker model's weight file for autoguidance.
    pub guide: Option<&'a [u8]>,
    pub config: &'a SamplerConfig,
    pub per_class: usize,
    pub batches: Batches,
    pub progress: F,
}

impl<F: FnMut(usize) + Send> OnBackend for PerClass<'_, F> {
    type Output = Result<(Vec<f32>, Vec<usize>), GenerateError>;
    fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> Self::Output {
        let models =
            Models::<B::InnerBackend>::load(self.bytes, self.guide, &device)?.with_kernels(kernels);
        let schedule = NoiseSchedule::new(&models.meta.schedule);
        generate_per_class(
            &models.model,
            models.guide.as_ref(),
            &schedule,
            self.config,
            self.per_class,
            self.batches,
            self.progress,
        )
    }
}

/// What `trainer eval` scores.
pub struct EvalRequest<'a> {
    /// Weight files of MNIST models, a row each.
    pub weights: &'a [PathBuf],
    /// The MNIST folder: its test digits are the FID reference.
    pub data: &'a Path,
    /// A classifier from `trainer classifier`.
    pub classifier: &'a Path,
    pub per_class: usize,
    /// A weaker model's weight file for autoguidance (at `sampler.autoguidance`; it combines
    /// with classifier-free guidance).
    pub guide: Option<&'a Path>,
    pub sampler: SamplerConfig,
    /// Images per network call.
    pub batch: usize,
    pub backend: BackendChoice,
}

/// The scores of real test and training digits (the ceiling), then of each model.
#[derive(Serialize, Clone, Debug)]
pub struct EvalReport {
    pub per_class: usize,
    pub sampler: SamplerConfig,
    /// The guiding model's file, when autoguidance had one.
    pub guide: Option<PathBuf>,
    /// Test digits the FID is measured against.
    pub reference_images: usize,
    /// (what was scored, its scores)
    pub rows: Vec<(String, Scores)>,
}

impl EvalReport {
    /// The table `trainer eval` prints.
    pub fn table(&self) -> String {
        let c = &self.sampler;
        let guide = match &self.guide {
            Some(path) => format!(", autoguidance {} by {}", c.autoguidance, path.display()),
            None => String::new(),
        };
        let mut out = format!(
            "{} per class, {} {} steps, guidance {}{guide}, seed {}; FID against the {} test digits\n",
            self.per_class, c.kind, c.steps, c.guidance, c.seed, self.reference_images
        );
        out += &format!(
            "{:<60} {:>9} {:>9} {:>9} {:>7}  {}\n",
            "images", "accuracy", "FID", "precision", "recall", "least accurate digit"
        );
        for (name, s) in &self.rows {
            let worst = s
                .class_accuracy
                .iter()
                .enumerate()
                .filter_map(|(digit, a)| a.map(|a| (digit, a)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(String::new(), |(digit, a)| {
                    format!("{digit}: {:.1}%", 100.0 * a)
                });
            out += &format!(
                "{name:<60} {:>8.2}% {:>9.3} {:>9.3} {:>7.3}  {worst}\n",
                100.0 * s.accuracy,
                s.fid,
                s.precision,
                s.recall
            );
        }
        out
    }

    /// One object per row: `{"images", "scores", "sampler"}`, and `"guide"` (the weaker model's
    /// file) under autoguidance.
    pub fn to_json(&self) -> serde_json::Value {
        self.rows
            .iter()
            .map(|(name, s)| {
                let mut row =
                    serde_json::json!({ "images": name, "scores": s, "sampler": self.sampler });
                if let Some(guide) = &self.guide {
                    row["guide"] = guide.display().to_string().into();
                }
                row
            })
            .collect()
    }
}

/// Scores real digits and then each model of `request`. `progress(model, done, total)` follows
/// each model's generation (`model` indexes `request.weights`).
pub fn evaluate(
    request: &EvalRequest,
    mut progress: impl FnMut(usize, usize, usize) + Send,
) -> Result<EvalReport, Box<dyn std::error::Error>> {
    let device = Default::default();
    let classifier = Classifier::<Cpu>::load(request.classifier, &device)?;
    let test = Mnist::load(request.data, Split::Test)?;
    let mut test_images = vec![0f32; test.len() * test.image_len()];
    for (i, out) in test_images.chunks_mut(test.image_len()).enumerate() {
        test.image_into(i, out)?;
    }
    let guide = request
        .guide
        .map(|path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())))
        .transpose()?;
    let (_, test_features) = classifier.predict(&test_images);
    // The precision/recall sample has a seed of its own, so every eval seed meets the same one.
    let (sample, _) = real_images(&test, request.per_class, PR_REFERENCE_SEED);
    let reference = Reference {
        gaussian: fid::Gaussian::fit(&test_features),
        sample: precision_recall::Manifold::new(classifier.predict(&sample).1),
    };

    // The ceiling: real digits through the same scoring. Test digits were never seen by the
    // classifier (a fair accuracy) but are part of the FID reference (an optimistic FID);
    // training digits are the other way round.
    let mut rows: Vec<(String, Scores)> = Vec::new();
    let train = Mnist::load(request.data, Split::Train)?;
    for (name, split) in [
        ("real test digits", &test),
        ("real training digits", &train),
    ] {
        let (real, real_labels) = real_images(split, request.per_class, request.sampler.seed);
        rows.push((
            name.into(),
            score(&classifier, &real, &real_labels, &reference),
        ));
    }
    for (index, path) in request.weights.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta = WeightFile::from_bytes(&bytes)?.meta;
        if meta.dataset != "mnist" {
            return Err(format!(
                "{}: eval scores MNIST models, this one is {}",
                path.display(),
                meta.dataset
            )
            .into());
        }
        let total = request.per_class * meta.model.num_classes;
        let task = PerClass {
            bytes: &bytes,
            guide: guide.as_deref(),
            config: &request.sampler,
            per_class: request.per_class,
            batches: request.backend.batches(request.batch),
            progress: |done| progress(index, done, total),
        };
        let (images, labels) = run_on(request.backend, task)??;
        let name = format!(
            "{} ({:?}{}, step {})",
            path.display(),
            meta.quantization,
            if meta.ema { " EMA" } else { " raw" },
            meta.step
        );
        rows.push((name, score(&classifier, &images, &labels, &reference)));
    }
    Ok(EvalReport {
        per_class: request.per_class,
        sampler: request.sampler.clone(),
        guide: request.guide.map(Path::to_path_buf),
        reference_images: test.len(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::accuracy;

    #[test]
    fn accuracy_counts_overall_and_per_class() {
        // Class 0: 2 of 2 right; class 1: 1 of 3; class 2: no images.
        let labels = [0, 0, 1, 1, 1];
        let predictions = [0, 0, 1, 2, 0];
        let (all, per_class) = accuracy(&predictions, &labels, 3);
        assert_eq!(all, 3.0 / 5.0);
        assert_eq!(per_class, [Some(1.0), Some(1.0 / 3.0), None]);
    }
}
