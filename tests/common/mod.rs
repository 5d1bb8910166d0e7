//! Helpers shared by the integration tests: a CPU backend, small configs, random weights.
#![allow(dead_code)]

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dit_web::diffusion::NoiseRng;
use dit_web::weights::{Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};
use dit_web::{Conditioning, Dit, DitConfig, Flavour, ScheduleConfig};

pub type B = burn::backend::NdArray<f32>;

pub fn device() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

/// An 8x8 two-channel model small enough to run hundreds of times in a test.
pub fn tiny_config(flavour: Flavour, conditioning: Conditioning) -> DitConfig {
    DitConfig::new(8, 2, 2, 16, 2, 2, 3)
        .with_class_dropout(0.1)
        .with_flavour(flavour)
        .with_conditioning(conditioning)
}

/// Every (flavour, conditioning) pair.
pub fn all_variants() -> Vec<(Flavour, Conditioning)> {
    [Flavour::Seed, Flavour::Paper]
        .into_iter()
        .flat_map(|f| Conditioning::ALL.into_iter().map(move |c| (f, c)))
        .collect()
}

/// Replaces every parameter by N(0, std^2) noise from a seeded host RNG, so a test model has
/// non-trivial, reproducible weights (a fresh DiT outputs exactly zero).
pub fn randomize(model: Dit<B>, seed: u64, std: f32) -> Dit<B> {
    struct Randomizer {
        rng: NoiseRng,
        std: f32,
    }
    impl ModuleMapper<B> for Randomizer {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let shape = tensor.dims();
            let n: usize = shape.iter().product();
            let mut values = vec![0f32; n];
            self.rng.fill_normal(&mut values);
            values.iter_mut().for_each(|v| *v *= self.std);
            let tensor = Tensor::from_data(TensorData::new(values, shape), &tensor.device());
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    model.map(&mut Randomizer {
        rng: NoiseRng::new(seed, 99),
        std,
    })
}

/// A random model of `config`.
pub fn random_model(config: &DitConfig, seed: u64) -> Dit<B> {
    randomize(config.init::<B>(&device()), seed, 0.2)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

/// Weight-file metadata for a test model of `config`: labels `class0..`, 50 diffusion steps.
pub fn meta(config: &DitConfig, quantization: Quantization) -> WeightsMeta {
    WeightsMeta {
        format_version: FORMAT_VERSION,
        model: config.clone(),
        schedule: ScheduleConfig::new(50),
        labels: (0..config.num_classes)
            .map(|i| format!("class{i}"))
            .collect(),
        dataset: "test".into(),
        step: 123,
        ema: true,
        quantization,
    }
}

/// Asserts that `model`'s weights on backend `O` give `model`'s output on burn-ndarray for
/// `batch` images, within 1e-4 of the output's scale: how the model's own kernels for burn-flex
/// and burn-wgpu (`src/model/kernels/`) are checked against burn's generic path.
pub fn assert_matches_ndarray<O: Backend>(
    config: &DitConfig,
    model: &Dit<B>,
    batch: usize,
    what: &str,
    other: &O::Device,
) {
    let (other_model, _) = WeightFile::from_model(model, meta(config, Quantization::F32))
        .into_model::<O>(other)
        .expect("the same weights load on the other backend");
    let s = config.input_size;
    let mut x = vec![0f32; batch * config.image_len()];
    NoiseRng::new(batch as u64, 0).fill_normal(&mut x);
    let t: Vec<f32> = (0..batch).map(|i| 7.0 + 40.0 * i as f32).collect();
    let y: Vec<i64> = (0..batch)
        .map(|i| (i % config.num_classes) as i64)
        .collect();
    let shape = [batch, config.in_channels, s, s];
    let expected = to_vec(model.forward(
        Tensor::from_data(TensorData::new(x.clone(), shape), &device()),
        Tensor::from_data(TensorData::new(t.clone(), [batch]), &device()),
        Tensor::<B, 1, Int>::from_data(TensorData::new(y.clone(), [batch]), &device()),
    ));
    let got = other_model
        .forward(
            Tensor::from_data(TensorData::new(x, shape), other),
            Tensor::from_data(TensorData::new(t, [batch]), other),
            Tensor::<O, 1, Int>::from_data(TensorData::new(y, [batch]), other),
        )
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&expected, &got);
    assert!(
        scale > 1e-2,
        "{what}: a random model's output is not ~0 ({scale})"
    );
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{what}, batch {batch}: {} differs from burn-ndarray by {diff} (output up to {scale})",
        O::name(other)
    );
}
