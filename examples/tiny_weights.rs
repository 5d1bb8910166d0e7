//! Writes a small freshly initialised weight file (8x8x2 images, depth 2), e.g. the fuzzing seed:
//! `cargo run --example tiny_weights -- fuzz/seeds/tiny-int8.safetensors int8`

use dit_web::weights::{Quantization, WeightFile, WeightsMeta};
use dit_web::{DitConfig, Preset};

type B = burn::backend::NdArray<f32>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: tiny_weights OUT.safetensors [f32|f16|int8]")?;
    let quantization: Quantization = args.next().as_deref().unwrap_or("int8").parse()?;
    let mut preset = Preset::mnist();
    preset.model = DitConfig::new(8, 2, 2, 16, 2, 2, 3).with_class_dropout(0.1);
    preset.labels = vec!["a".into(), "b".into(), "c".into()];
    let model = preset.model.init::<B>(&Default::default());
    let meta = WeightsMeta {
        quantization,
        ..WeightsMeta::for_preset(&preset)
    };
    std::fs::write(&out, WeightFile::from_model(&model, meta).to_bytes()?)?;
    println!("wrote {out}");
    Ok(())
}
