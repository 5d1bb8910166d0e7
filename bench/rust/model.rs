//! `cargo bench`: one forward pass of the MNIST presets and one sampler step on burn-flex (the
//! trainer's CPU backend, with the model's own CPU code) and on burn-ndarray (burn's generic ops),
//! and a request of many digits split into batches on burn-flex; browser figures come from
//! www/bench.html.

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::{Flex, FlexDevice};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dit_web::diffusion::{NoiseRng, NoiseSchedule, Sampler, SamplerConfig};
use dit_web::generate::{sample_batched_guided, Batches, Denoiser};
use dit_web::Preset;

fn forward(c: &mut Criterion) {
    forward_on::<Flex>(c, "flex", &FlexDevice);
    forward_on::<NdArray<f32>>(c, "ndarray", &Default::default());
}

fn forward_on<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for preset in [Preset::mnist(), Preset::mnist_cpu()] {
        let config = &preset.model;
        let model = config.init::<B>(device);
        for batch in [1usize, 16] {
            let s = config.input_size;
            let mut x = vec![0f32; batch * config.image_len()];
            NoiseRng::new(0, 0).fill_normal(&mut x);
            let x = Tensor::<B, 4>::from_data(
                TensorData::new(x, [batch, config.in_channels, s, s]),
                device,
            );
            let t =
                Tensor::<B, 1>::from_data(TensorData::new(vec![200f32; batch], [batch]), device);
            let y =
                Tensor::<B, 1, Int>::from_data(TensorData::new(vec![3i64; batch], [batch]), device);
            group.bench_with_input(
                BenchmarkId::new(preset.name, format!("batch{batch}/{backend}")),
                &batch,
                |b, _| b.iter(|| model.forward(x.clone(), t.clone(), y.clone()).into_data()),
            );
        }
    }
    group.finish();
}

/// One DPM-Solver++ step for a batch of 16 digits: the network call (doubled batch: guidance)
/// plus the host-side update, and the host-side update alone.
fn sampler_step(c: &mut Criterion) {
    sampler_step_on::<Flex>(c, "flex", &FlexDevice);
    sampler_step_on::<NdArray<f32>>(c, "ndarray", &Default::default());
}

fn sampler_step_on<B: Backend>(c: &mut Criterion, backend: &str, device: &B::Device) {
    let preset = Preset::mnist_cpu();
    let model = preset.model.init::<B>(device);
    let schedule = NoiseSchedule::new(&preset.schedule);
    let config = SamplerConfig {
        guidance: 2.0,
        ..Default::default()
    };
    let labels: Vec<usize> = (0..16).map(|i| i % 10).collect();
    let denoiser = Denoiser::new(&model, &labels, &config).unwrap();
    let fresh = Sampler::new(&schedule, &config, labels.len(), preset.model.image_len());

    let mut group = c.benchmark_group("sampler_step");
    group.sample_size(10);
    group.bench_function(
        format!("mnist-cpu/batch16/cfg2/network+update/{backend}"),
        |b| {
            b.iter(|| {
                let mut sampler = fresh.clone();
                let eps = denoiser.eps(sampler.x(), sampler.timestep().unwrap());
                sampler.advance(&eps)
            })
        },
    );
    let eps = denoiser.eps(fresh.x(), fresh.timestep().unwrap());
    group.bench_function(format!("mnist-cpu/batch16/update-only/{backend}"), |b| {
        b.iter(|| fresh.clone().advance(&eps))
    });
    group.finish();
}

/// A request of 64 digits (`mnist-cpu`, DDPM 5 steps, guidance 2) on burn-flex, as `trainer
/// generate` and `trainer eval` run it on the CPU: batches of 8, 16 or 32 images, one after another
/// or side by side on rayon's threads.
fn sample_batched(c: &mut Criterion) {
    let preset = Preset::mnist_cpu();
    let model = preset.model.init::<Flex>(&FlexDevice);
    let schedule = NoiseSchedule::new(&preset.schedule);
    let config = SamplerConfig {
        kind: dit_web::diffusion::SamplerKind::Ddpm,
        steps: 5,
        guidance: 2.0,
        ..Default::default()
    };
    let labels: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut group = c.benchmark_group("sample_batched");
    group.sample_size(10);
    for max in [8, 16, 32] {
        for parallel in [false, true] {
            let how = if parallel { "side-by-side" } else { "in-turn" };
            let batches = Batches { max, parallel };
            group.bench_function(format!("mnist-cpu/64-digits/batch{max}/{how}"), |b| {
                b.iter(|| {
                    sample_batched_guided(
                        &model,
                        None,
                        &schedule,
                        &labels,
                        &config,
                        batches,
                        |_| {},
                    )
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward, sampler_step, sample_batched);
criterion_main!(benches);
