//! The README's library example: digits from a shipped weight file, as PNGs.
//! `cargo run --release --example generate` writes out/0000_label-3.png, 0001_label-7.png and
//! grid.png.

use dit_web::diffusion::SamplerConfig;
use dit_web::generate::{generate_images, Batches};
use dit_web::image::{encode_png, grid};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    type B = burn_flex::Flex<f32>; // the CPU backend; any burn backend works
    let bytes = std::fs::read("www/weights/mnist.safetensors")?;
    let config = SamplerConfig {
        steps: 20,
        guidance: 2.0,
        seed: 42,
        ..Default::default()
    };
    // No guiding model; at most 16 images per network call (larger requests run as batches).
    let out = generate_images::<B, _>(
        &bytes,
        None,
        &["3", "7"],
        &config,
        Batches::in_turn(16),
        &Default::default(),
    )?;
    std::fs::create_dir_all("out")?;
    for (k, (image, label)) in out.images.iter().zip(&out.labels).enumerate() {
        std::fs::write(format!("out/{k:04}_label-{label}.png"), encode_png(image))?;
    }
    std::fs::write("out/grid.png", encode_png(&grid(&out.images, 10, 2)))?;
    Ok(())
}
