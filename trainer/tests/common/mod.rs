#![allow(dead_code)]
//! A tiny MNIST-format dataset written by the tests (no dataset download needed).

use std::io::Write;
use std::path::Path;
use std::process::Output;

use dit_web::diffusion::NoiseRng;
use trainer::train::config::TrainConfig;
use trainer::train::lr::{Decay, LrSchedule};

/// Writes `n` 28x28 images (a bright square whose position encodes the label, plus noise) and
/// their labels as the four gzipped IDX files.
pub fn write_mnist(dir: &Path, n: usize) {
    let mut rng = NoiseRng::new(3, 0);
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 10) as u8;
        labels.push(label);
        for y in 0..28 {
            for x in 0..28 {
                let (cx, cy) = (4 + 2 * label as usize, 10);
                let on = x >= cx && x < cx + 6 && y >= cy && y < cy + 8;
                let v = if on { 230.0 } else { 10.0 } + 20.0 * rng.normal();
                images.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    for (names, rows) in [
        (["train-images-idx3-ubyte", "train-labels-idx1-ubyte"], n),
        (["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], n),
    ] {
        write_idx(
            &dir.join(format!("{}.gz", names[0])),
            0x0803,
            &[rows as u32, 28, 28],
            &images,
        );
        write_idx(
            &dir.join(format!("{}.gz", names[1])),
            0x0801,
            &[rows as u32],
            &labels,
        );
    }
}

pub fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8]) {
    let mut raw = magic.to_be_bytes().to_vec();
    for d in dims {
        raw.extend(d.to_be_bytes());
    }
    raw.extend(data);
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
}

/// Writes a CelebA-format folder: `n` 178x218 JPEGs (red centre on a blue border; even images
/// male), the attribute list with `Male` among other attributes, and the partition list (the
/// last image in the test partition).
pub fn write_celeba(root: &Path, n: usize) {
    let dir = root.join("img_align_celeba");
    std::fs::create_dir_all(&dir).unwrap();
    let mut attrs = format!("{n}\n5_o_Clock_Shadow Arched_Eyebrows Male Smiling\n");
    let mut parts = String::new();
    for i in 0..n {
        let name = format!("{:06}.jpg", i + 1);
        let image = image::RgbImage::from_fn(178, 218, |x, y| {
            let centre = (25..153).contains(&x) && (45..173).contains(&y);
            if centre {
                image::Rgb([220, 20, 20])
            } else {
                image::Rgb([20, 20, 220])
            }
        });
        image.save(dir.join(&name)).unwrap();
        let male = if i % 2 == 0 { " 1" } else { "-1" };
        attrs.push_str(&format!("{name} -1  1 {male}  1\n"));
        parts.push_str(&format!("{name} {}\n", if i + 1 == n { 2 } else { 0 }));
    }
    std::fs::write(root.join("list_attr_celeba.txt"), attrs).unwrap();
    std::fs::write(root.join("list_eval_partition.txt"), parts).unwrap();
}

/// The training settings of the tests' tiny runs: batch 8, peak lr 1e-3 after 2 warm-up steps,
/// EMA 0.99 with warm-up, label dropout 0.1, clipping at 1, a checkpoint every 3 steps.
pub fn tiny_config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        micro_batch: 0,
        lr: LrSchedule {
            max_lr: 1e-3,
            warmup: 2,
            total: steps,
            decay: Decay::Cosine,
        },
        ema_decay: 0.99,
        ema_warmup: true,
        label_dropout: 0.1,
        grad_clip: Some(1.0),
        seed: 4,
        checkpoint_every: 3,
        keep_every: 0,
        sample_every: 0,
        spike_factor: 100.0,
        init_weights: None,
        time_budget: None,
        read_every: 1,
    }
}

/// A finished command's stdout and stderr, in that order.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The text of a command that must have succeeded (the test fails with it otherwise).
pub fn ok(out: Output) -> String {
    let text = output_text(&out);
    assert!(out.status.success(), "the command failed:\n{text}");
    text
}
