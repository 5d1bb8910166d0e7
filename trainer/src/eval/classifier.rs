//! The MNIST classifier that `trainer classifier` trains and `trainer eval` scores with, a small
//! CNN: Conv(1->32, 3x3) -> ReLU -> MaxPool 2 -> Conv(32->64, 3x3) -> ReLU -> MaxPool 2 ->
//! Linear(3136, 128) -> ReLU (the 128 features FID uses) -> Linear(128, 10). Trained on digits
//! shifted by up to 2 pixels, so a generated digit a little off-centre is still read for what it
//! is. (A 784-512-128-10 perceptron, the first version, reached 97.8 % test accuracy: too close
//! to the 98 % a model is asked to reach to tell a bad digit from a misread one.)

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::data::loader::Loader;
use crate::data::mnist::Mnist;
use crate::data::Dataset;
use dit_web::diffusion::NoiseRng;

pub const FEATURES: usize = 128;
const SIDE: usize = 28;

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    pool: MaxPool2d,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> Classifier<B> {
    pub fn new(device: &B::Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Self {
            conv1: conv(1, 32),
            conv2: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(64 * (SIDE / 4) * (SIDE / 4), FEATURES).init(device),
            fc2: LinearConfig::new(FEATURES, 10).init(device),
        }
    }

    /// `[N, 1, 28, 28]` in [-1, 1] -> (logits `[N, 10]`, features `[N, 128]`).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let h = self.pool.forward(relu(self.conv1.forward(x)));
        let h = self.pool.forward(relu(self.conv2.forward(h)));
        let features = relu(self.fc1.forward(h.flatten::<2>(1, 3)));
        (self.fc2.forward(features.clone()), features)
    }

    /// Predicted classes and features of images `[n * 784]`, 500 at a time.
    pub fn predict(&self, images: &[f32]) -> (Vec<usize>, Vec<Vec<f32>>) {
        let device = self.fc2.weight.device();
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

    /// Saves to `path` with the extension `.mpk` (as the recorder names it), whole or not at all.
    pub fn save(self, path: &Path) -> Result<(), String> {
        let path = path.with_extension("mpk");
        crate::atomic::create(&path, |tmp| -> Result<(), Box<dyn std::error::Error>> {
            let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
            Ok(self.save_file(tmp.to_path_buf(), &recorder)?)
        })
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

/// Trains the classifier with Adam (lr 1e-3, batch 128) for `epochs` passes over `train`, each
/// digit shifted by a random -2..=2 pixels on each axis, calling `progress(step, loss)`. Returns
/// the trained network without autodiff.
pub fn train<B: AutodiffBackend>(
    train: &Mnist,
    epochs: usize,
    seed: u64,
    device: &B::Device,
    mut progress: impl FnMut(usize, f32),
) -> Classifier<B::InnerBackend> {
    const BATCH: usize = 128;
    let mut model = crate::backend::seeded::<B, _>(device, seed, || Classifier::<B>::new(device));
    let mut optim = AdamConfig::new().init::<B, Classifier<B>>();
    let mut loader = Loader::new(train, seed);
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let steps = epochs * train.len() / BATCH;
    let mut rng = NoiseRng::new(seed, 1);
    for step in 0..steps {
        let (mut images, labels) = loader.next_batch(BATCH);
        for image in images.chunks_mut(SIDE * SIDE) {
            let dx = rng.below(5) as isize - 2;
            let dy = rng.below(5) as isize - 2;
            shift(image, dx, dy);
        }
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

/// Moves a 28x28 image in [-1, 1] by (dx, dy) pixels, filling with background (-1).
fn shift(image: &mut [f32], dx: isize, dy: isize) {
    let source = image.to_vec();
    let side = SIDE as isize;
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (x - dx, y - dy);
            image[(y * side + x) as usize] = if (0..side).contains(&sx) && (0..side).contains(&sy) {
                source[(sy * side + sx) as usize]
            } else {
                -1.0
            };
        }
    }
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

/// `trainer classifier`: trains on the MNIST training digits in `data`, saves the network to
/// `out` and returns its accuracy on the test digits and their number. `progress(step, steps,
/// loss)` follows training.
pub fn train_and_save(
    data: &std::path::Path,
    out: &std::path::Path,
    epochs: usize,
    seed: u64,
    mut progress: impl FnMut(usize, usize, f32),
) -> Result<(f64, usize), Box<dyn std::error::Error>> {
    use crate::data::mnist::Split;
    let train_set = Mnist::load(data, Split::Train)?;
    let test = Mnist::load(data, Split::Test)?;
    let steps = epochs * train_set.len() / 128;
    let model = train::<burn::backend::Autodiff<crate::Cpu>>(
        &train_set,
        epochs,
        seed,
        &Default::default(),
        |step, loss| progress(step, steps, loss),
    );
    let accuracy = accuracy(&model, &test);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    model.save(out)?;
    Ok((accuracy, test.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_pixels_and_fills_with_background() {
        let mut image = vec![-1.0; SIDE * SIDE];
        image[10 * SIDE + 10] = 1.0;
        shift(&mut image, 2, -1);
        assert_eq!(image[9 * SIDE + 12], 1.0);
        assert_eq!(image.iter().filter(|&&v| v == 1.0).count(), 1);
        let mut edge = vec![1.0; SIDE * SIDE];
        shift(&mut edge, -2, 0);
        assert_eq!(edge[SIDE - 1], -1.0);
        assert_eq!(edge[SIDE - 3], 1.0);
    }
}
