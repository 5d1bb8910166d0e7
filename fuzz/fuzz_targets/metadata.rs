//! Weight files whose metadata is valid JSON holding absurd numbers: the tensors are a real
//! file's (`fuzz/seeds/tiny-int8.safetensors`), the metadata's sizes, schedule and labels come
//! from the fuzzer, each field replaced or kept. Loading must give a model or a typed error, and
//! nothing may be allocated from a number the file cannot back: `make fuzz-metadata` runs it
//! under libFuzzer's memory limit (and, with `FUZZ_SANITIZER=address`, its per-allocation limit),
//! so an oversized allocation is a crash.
#![no_main]

use dit_web::weights::WeightFile;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

type B = burn::backend::NdArray<f32>;

const SEED: &[u8] = include_bytes!("../seeds/tiny-int8.safetensors");

/// A number of the kind a lying file holds: small, at a boundary, or huge.
#[derive(Arbitrary, Debug)]
enum Number {
    Small(u8),
    Edge(u16),
    Huge(u64),
    Negative(i64),
    Float(f64),
}

impl Number {
    fn json(&self) -> Value {
        match *self {
            Number::Small(v) => json!(v),
            Number::Edge(v) => json!(u64::from(v) << (v % 48)),
            Number::Huge(v) => json!(v),
            Number::Negative(v) => json!(v),
            Number::Float(v) if v.is_finite() => json!(v),
            Number::Float(_) => json!(1e308),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Lies {
    model: Vec<(u8, Number)>,
    schedule: Vec<(u8, Number)>,
    labels: Option<u16>,
    step: Option<Number>,
}

const MODEL_FIELDS: [&str; 9] = [
    "input_size",
    "in_channels",
    "patch_size",
    "hidden_size",
    "depth",
    "num_heads",
    "mlp_ratio",
    "num_classes",
    "class_dropout",
];
const SCHEDULE_FIELDS: [&str; 3] = ["num_timesteps", "beta_start", "beta_end"];

/// The seed file with its metadata edited by `lies`.
fn lying_file(lies: &Lies) -> Option<Vec<u8>> {
    let len = u64::from_le_bytes(SEED[..8].try_into().ok()?) as usize;
    let mut header: Value = serde_json::from_slice(&SEED[8..8 + len]).ok()?;
    let text = header["__metadata__"]["dit-web"].as_str()?.to_string();
    let mut meta: Value = serde_json::from_str(&text).ok()?;
    for (field, number) in &lies.model {
        meta["model"][MODEL_FIELDS[*field as usize % MODEL_FIELDS.len()]] = number.json();
    }
    for (field, number) in &lies.schedule {
        meta["schedule"][SCHEDULE_FIELDS[*field as usize % SCHEDULE_FIELDS.len()]] = number.json();
    }
    if let Some(n) = lies.labels {
        meta["labels"] = json!((0..n).map(|i| i.to_string()).collect::<Vec<_>>());
    }
    if let Some(step) = &lies.step {
        meta["step"] = step.json();
    }
    header["__metadata__"]["dit-web"] = json!(meta.to_string());
    let mut text = header.to_string();
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&SEED[8 + len..]);
    Some(out)
}

fuzz_target!(|lies: Lies| {
    let Some(bytes) = lying_file(&lies) else {
        return;
    };
    if let Ok(file) = WeightFile::from_bytes(&bytes) {
        let _ = file.into_model::<B>(&Default::default());
    }
});
