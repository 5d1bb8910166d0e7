#![allow(dead_code)]
//! A tiny MNIST-format dataset written by the tests (no ../shared needed).

use std::io::Write;
use std::path::Path;

use dit_web::diffusion::NoiseRng;

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
