//! `cargo bench -p trainer --bench loader`: the CelebA loader alone (JPEG decode + centre crop),
//! images per second with one and two decoding threads, on 178x218 JPEGs of noise.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dit_web::diffusion::NoiseRng;
use trainer::data::celeba::{CelebA, Partition};
use trainer::data::loader::Loader;

fn write_folder(root: &std::path::Path, n: usize) {
    let dir = root.join("img_align_celeba");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = NoiseRng::new(1, 0);
    let (mut attrs, mut parts) = (format!("{n}\nMale\n"), String::new());
    for i in 0..n {
        let name = format!("{:06}.jpg", i + 1);
        // Smooth gradients plus noise: closer to a photo's JPEG size than a flat colour.
        let image = image::RgbImage::from_fn(178, 218, |x, y| {
            let mut v = |base: u32| ((base + rng.below(40) as u32) % 256) as u8;
            image::Rgb([v(x), v(y), v(x + y)])
        });
        image.save(dir.join(&name)).unwrap();
        attrs.push_str(&format!("{name} {}\n", if i % 2 == 0 { 1 } else { -1 }));
        parts.push_str(&format!("{name} 0\n"));
    }
    std::fs::write(root.join("list_attr_celeba.txt"), attrs).unwrap();
    std::fs::write(root.join("list_eval_partition.txt"), parts).unwrap();
}

fn loader(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), 256);
    let data = CelebA::load(root.path(), Partition::Train).unwrap();
    let batch = 32;
    let mut group = c.benchmark_group("celeba_loader");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(batch as u64));
    for workers in [1usize, 2] {
        let mut loader = Loader::new(&data, 0).with_workers(workers);
        group.bench_with_input(
            BenchmarkId::new("batch32", format!("{workers}-threads")),
            &workers,
            |b, _| b.iter(|| loader.next_batch(batch)),
        );
    }
    group.finish();
}

criterion_group!(benches, loader);
criterion_main!(benches);
