//! The MNIST classifier that `trainer classifier` trains and `trainer eval` scores with:
//! Linear(784, 512) -> ReLU -> Linear(512, 128) -> ReLU (the 128 features FID uses) ->
//! Linear(128, 10). A multilayer perceptron rather than a CNN: burn-ndarray's convolutions made a
//! two-epoch CNN take most of an hour on two cores, this trains in minutes to ~98 % test accuracy.

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::data::loader::Loader;
use crate::data::mnist::Mnist;
use crate::data::Dataset;

pub const FEATURES: usize = 128;
const SIDE: usize = 28;

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    fc3: Linear<B>,
}

impl<B: Backend> Classifier<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            fc1: LinearConfig::new(SIDE * SIDE, 512).init(device),
            fc2: LinearConfig::new(512, FEATURES).init(device),
            fc3: LinearConfig::new(FEATURES, 10).init(device),
        }
    }

    /// `[N, 1, 28, 28]` in [-1, 1] -> (logits `[N, 10]`, features `[N, 128]`).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let h = relu(self.fc1.forward(x.flatten::<2>(1, 3)));
        let features = relu(self.fc2.forward(h));
        (self.fc3.forward(features.clone()), features)
    }

    /// Predicted classes and features of images `[n * 784]`, 500 at a time.
    pub fn predict(&self, images: &[f32]) -> (Vec<usize>, Vec<Vec<f32>>) {
        let device = self.fc1.weight.device();
        let (mut classes, mut features) = (Vec::new(), Vec::new());
        for chunk in images.chunks(500 * SIDE * SIDE) {
            let n = chunk.len() / (SIDE * SIDE);
            let x = Tensor::<B, 4>::from_data(
                TensorData::new(chunk.to_vec(), [n, 1, SIDE, SIDE]),
                &device,
            );
            let (logits, f) = self.forward(x);
            let argmax = logits.argmax(1).into_data().convert::<i64>();
            classes.extend(argmax.iter::<i64>().map(|c| c as usize));
            let f = f
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("f32 features");
            features.extend(f.chunks(FEATURES).map(<[f32]>::to_vec));
        }
        (classes, features)
    }

    pub fn save(self, path: &Path) -> Result<(), String> {
        self.save_file(
            path.to_path_buf(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
        )
        .map_err(|e| format!("saving the classifier to {}: {e}", path.display()))
    }

    pub fn load(path: &Path, device: &B::Device) -> Result<Self, String> {
        Self::new(device)
            .load_file(
                path.to_path_buf(),
                &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
                device,
            )
            .map_err(|e| {
                format!(
                    "loading the classifier {}: {e} (train one with `trainer classifier`)",
                    path.display()
                )
            })
    }
}

/// Trains the classifier with Adam (lr 1e-3, batch 128) for `epochs` passes over `train`,
/// calling `progress(step, loss)`. Returns the trained network without autodiff.
pub fn train<B: AutodiffBackend>(
    train: &Mnist,
    epochs: usize,
    seed: u64,
    device: &B::Device,
    mut progress: impl FnMut(usize, f32),
) -> Classifier<B::InnerBackend> {
    const BATCH: usize = 128;
    B::seed(device, seed);
    let mut model = Classifier::<B>::new(device);
    let mut optim = AdamConfig::new().init::<B, Classifier<B>>();
    let mut loader = Loader::new(train, seed);
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let steps = epochs * train.len() / BATCH;
    for step in 0..steps {
        let (images, labels) = loader.next_batch(BATCH);
        let x = Tensor::<B, 4>::from_data(TensorData::new(images, [BATCH, 1, SIDE, SIDE]), device);
        let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), device);
        let (logits, _) = model.forward(x);
        let loss = loss_fn.forward(logits, y);
        let value: f32 = loss.clone().into_scalar().elem();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        progress(step + 1, value);
    }
    model.valid()
}

/// Accuracy on a whole split.
pub fn accuracy<B: Backend>(classifier: &Classifier<B>, data: &Mnist) -> f64 {
    let mut images = vec![0f32; data.len() * data.image_len()];
    for (i, out) in images.chunks_mut(data.image_len()).enumerate() {
        data.image_into(i, out)
            .expect("MNIST images in memory always decode");
    }
    let (predictions, _) = classifier.predict(&images);
    let correct = predictions
        .iter()
        .zip(&data.labels)
        .filter(|(p, &l)| **p == l as usize)
        .count();
    correct as f64 / data.len() as f64
}
