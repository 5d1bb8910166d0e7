//! `cargo bench --bench train_step`: forward + epsilon-MSE + backward for MNIST-sized models on
//! burn's ndarray CPU backend: the measurement behind the `mnist-cpu` preset's size.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dit_web::diffusion::NoiseRng;
use dit_web::{DitConfig, Preset};

type B = Autodiff<NdArray<f32>>;

fn candidates() -> Vec<(&'static str, DitConfig)> {
    vec![
        ("mnist(p2,d288,L6)", Preset::mnist().model),
        ("mnist-cpu(p4,d192,L6)", Preset::mnist_cpu().model),
        (
            "p2,d128,L4",
            DitConfig::new(28, 1, 2, 128, 4, 4, 10).with_class_dropout(0.1),
        ),
        (
            "p4,d256,L8",
            DitConfig::new(28, 1, 4, 256, 8, 8, 10).with_class_dropout(0.1),
        ),
    ]
}

fn train_step(c: &mut Criterion) {
    let device = Default::default();
    let batch = 64;
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(batch as u64));
    for (name, config) in candidates() {
        let model = config.init::<B>(&device);
        let s = config.input_size;
        let mut x = vec![0f32; batch * config.image_len()];
        NoiseRng::new(0, 0).fill_normal(&mut x);
        let x = Tensor::<B, 4>::from_data(TensorData::new(x.clone(), [batch, 1, s, s]), &device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(vec![100f32; batch], [batch]), &device);
        let y =
            Tensor::<B, 1, Int>::from_data(TensorData::new(vec![1i64; batch], [batch]), &device);
        group.bench_with_input(BenchmarkId::new(name, "batch64"), &batch, |b, _| {
            b.iter(|| {
                let eps = model.forward(x.clone(), t.clone(), y.clone());
                let loss = (eps - x.clone()).powf_scalar(2.0).mean();
                loss.backward()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
