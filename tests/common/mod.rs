//! Helpers shared by the integration tests: a CPU backend, small configs, random weights.
#![allow(dead_code)]

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use dit_web::diffusion::NoiseRng;
use dit_web::weights::{Quantization, WeightsMeta, FORMAT_VERSION};
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
