//! One full optimizer step of the `mnist-cpu` preset on the CPU backend, batch 64: the host-side
//! batch (noise, timesteps, x_t), forward, epsilon-MSE, backward, AdamW. The same work as
//! `bench/torch/torch_reference.py`'s training step (no clipping there, none here); `bench/compare.py`
//! runs both and prints the ratio.

use burn::tensor::backend::AutodiffBackend;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::model::Dit;
use dit_web::Preset;
use trainer::data::loader::Loader;
use trainer::data::Dataset;
use trainer::train::step::{optimizer_step, HostBatch};

/// Random digits-shaped images in memory: the step's cost does not depend on their content.
struct Noise(usize);

impl Dataset for Noise {
    fn len(&self) -> usize {
        self.0
    }
    fn image_len(&self) -> usize {
        28 * 28
    }
    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
        NoiseRng::new(index as u64, 0).fill_normal(out);
        Ok(index % 10)
    }
}

/// `cargo bench -p trainer --bench step` measures burn-ndarray and burn-flex (the default
/// feature); with `--features candle` burn-candle as well, in the same run.
fn full_step(c: &mut Criterion) {
    step_on::<burn::backend::Autodiff<trainer::NdArray>>(c, "ndarray");
    #[cfg(feature = "flex")]
    step_on::<burn::backend::Autodiff<burn::backend::Flex>>(c, "flex");
    #[cfg(feature = "candle")]
    #[allow(deprecated)]
    step_on::<burn::backend::Autodiff<burn::backend::Candle>>(c, "candle");
}

fn step_on<B: AutodiffBackend>(c: &mut Criterion, backend: &str) {
    // As `trainer` runs (src/main.rs).
    trainer::allocator::keep_freed_memory();
    let device = Default::default();
    let preset = Preset::mnist_cpu();
    let schedule = NoiseSchedule::new(&preset.schedule);
    let data = Noise(4096);
    let mut loader = Loader::new(&data, 0);
    let mut rng = NoiseRng::new(0, 1);
    let mut model: Option<Dit<B>> = Some(preset.model.init(&device));
    let mut optim = trainer::train::optim::adamw::<B>();

    let mut group = c.benchmark_group("optimizer_step");
    group.sample_size(10).throughput(Throughput::Elements(64));
    group.bench_function(format!("mnist-cpu/batch64/{backend}"), |b| {
        b.iter(|| {
            let batch = HostBatch::draw(
                &mut loader,
                &mut rng,
                &schedule,
                &preset.model,
                64,
                preset.model.class_dropout,
            )
            .upload::<B>(&device);
            let (next, stats) = optimizer_step(
                model.take().expect("model"),
                &mut optim,
                batch,
                0,
                1e-4,
                None,
            );
            model = Some(next);
            // Read back, as training on the CPU does every step: the clock sees finished work.
            stats.read().0
        })
    });
    group.finish();
}

criterion_group!(benches, full_step);
criterion_main!(benches);
