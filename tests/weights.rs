//! The weight file: round trips, quantization error, and a clear error for every malformed file.

use crate::common;

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use dit_web::diffusion::NoiseRng;
use dit_web::weights::{
    quant, Quantization, WeightError, WeightFile, WeightsMeta, FORMAT_VERSION, METADATA_KEY,
};
use dit_web::{Conditioning, Dit, DitConfig, Flavour, Preset};

fn tiny() -> (DitConfig, Dit<B>) {
    let config = tiny_config(Flavour::Seed, Conditioning::AdalnZero);
    let model = random_model(&config, 21);
    (config, model)
}

fn encode(model: &Dit<B>, meta: WeightsMeta) -> Vec<u8> {
    WeightFile::from_model(model, meta).to_bytes().unwrap()
}

fn load(bytes: &[u8]) -> Result<Dit<B>, WeightError> {
    WeightFile::from_bytes(bytes)?
        .into_model::<B>(&device())
        .map(|(m, _)| m)
}

/// The model's output on a fixed input: 4 images of seeded noise at t = T/2, labels 0..3.
fn fixed_output(model: &Dit<B>, t: f32) -> Vec<f32> {
    let config = model.config();
    let (n, s) = (4, config.input_size);
    let mut x = vec![0f32; n * config.image_len()];
    NoiseRng::new(2024, 0).fill_normal(&mut x);
    let labels: Vec<i64> = (0..n as i64)
        .map(|i| i % config.num_classes as i64)
        .collect();
    to_vec(model.forward(
        Tensor::from_data(TensorData::new(x, [n, config.in_channels, s, s]), &device()),
        Tensor::from_data(TensorData::new(vec![t; n], [n]), &device()),
        Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), &device()),
    ))
}

fn relative_error(reference: &[f32], other: &[f32]) -> f64 {
    quant::error(reference, other).relative_rms
}

#[test]
fn f32_round_trip_is_exact_for_every_variant() {
    for (flavour, conditioning) in all_variants() {
        let config = tiny_config(flavour, conditioning);
        let model = random_model(&config, 5);
        let bytes = encode(&model, meta(&config, Quantization::F32));
        let file = WeightFile::from_bytes(&bytes).unwrap();
        assert_eq!(file.meta, meta(&config, Quantization::F32));
        let (loaded, _) = file.into_model::<B>(&device()).unwrap();
        assert_eq!(
            fixed_output(&model, 20.0),
            fixed_output(&loaded, 20.0),
            "{flavour:?} {conditioning:?}"
        );
    }
}

#[test]
fn f16_and_int8_stay_close_to_f32() {
    let (config, model) = tiny();
    let reference = fixed_output(&model, 20.0);
    let original = WeightFile::from_model(&model, meta(&config, Quantization::F32));
    for (quantization, matrix_bound, output_bound) in [
        (Quantization::F16, 1e-3, 1e-3),
        (Quantization::Int8, 0.02, 0.05),
        // 15 levels per group of 32: about 10 % per matrix on Gaussian weights.
        (Quantization::Int4, 0.15, 0.2),
    ] {
        let bytes = encode(&model, meta(&config, quantization));
        let file = WeightFile::from_bytes(&bytes).unwrap();
        for (name, t) in &file.tensors {
            let err = quant::error(&original.tensors[name].data, &t.data);
            assert!(
                err.relative_rms < matrix_bound,
                "{quantization:?} {name}: {err:?}"
            );
        }
        let out = fixed_output(&load(&bytes).unwrap(), 20.0);
        let err = relative_error(&reference, &out);
        assert!(err < output_bound, "{quantization:?}: output error {err}");
    }
}

/// The figures for the issue note: per-matrix and output error of int8 and f16 on the MNIST
/// preset with random weights of a trained model's scale (trained weights: docs/models.md).
#[test]
fn quantization_report_for_the_mnist_preset() {
    let config = Preset::mnist().model;
    let model = randomize(config.init::<B>(&device()), 8, 0.05);
    let reference = fixed_output(&model, 200.0);
    let f32_bytes = encode(&model, meta(&config, Quantization::F32));
    let original = WeightFile::from_bytes(&f32_bytes).unwrap();
    println!("f32 file: {} bytes", f32_bytes.len());
    for (quantization, matrix_bound, output_bound) in [
        (Quantization::F16, 0.02, 0.05),
        (Quantization::Int8, 0.02, 0.05),
        (Quantization::Int4, 0.15, 0.25),
    ] {
        let bytes = encode(&model, meta(&config, quantization));
        let file = WeightFile::from_bytes(&bytes).unwrap();
        let worst = original.matrix_errors(&file).into_iter().next().unwrap();
        let out = fixed_output(&load(&bytes).unwrap(), 200.0);
        let out_err = relative_error(&reference, &out);
        println!(
            "{quantization:?}: {} bytes ({:.1}% of f32); worst matrix {} rel-rms {:.3e} max-abs {:.3e}; output rel-rms {out_err:.3e}",
            bytes.len(),
            100.0 * bytes.len() as f64 / f32_bytes.len() as f64,
            worst.0,
            worst.1.relative_rms,
            worst.1.max_abs
        );
        assert!(worst.1.relative_rms < matrix_bound && out_err < output_bound);
    }
}

#[test]
fn int4_quantization_is_group_wise_and_packs_two_per_byte() {
    // [64, 2]: two groups of 32 rows per column. Column 0 ramps from -1 to 1 in the first
    // group and is tiny in the second; column 1 is constant.
    let (rows, cols) = (64, 2);
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            match (c, r < 32) {
                (0, true) => -1.0 + 2.0 * r as f32 / 31.0,
                (0, false) => 0.001 * (r as f32 - 48.0),
                _ => -0.5,
            }
        })
        .collect();
    assert!(quant::int4_fits(&[rows, cols]));
    assert!(!quant::int4_fits(&[48, 2]) && !quant::int4_fits(&[64, 3]) && !quant::int4_fits(&[64]));
    let q = quant::quantize_int4(&data, &[rows, cols]);
    assert_eq!(q.packed.len(), rows * cols / 2);
    assert_eq!(q.scale_shape, vec![2, 2]);
    assert!((q.scales[0] - 1.0 / 7.0).abs() < 1e-7, "{:?}", q.scales);
    assert!((q.scales[2] - 0.016 / 7.0).abs() < 1e-7, "{:?}", q.scales);
    let back = quant::dequantize_int4(&q.packed, &[rows, cols], &q.scales, &q.scale_shape).unwrap();
    for (i, (a, b)) in data.iter().zip(&back).enumerate() {
        let step = q.scales[(i / cols / 32) * cols + i % cols];
        assert!((a - b).abs() <= step / 2.0 + 1e-7, "{i}: {a} vs {b}");
    }
    // The extremes come back (negative nibbles sign-extend).
    assert!(
        (back[0] + 1.0).abs() < 1e-6 && (back[1] + 0.5).abs() < 1e-6,
        "{:?}",
        &back[..2]
    );
    // Shapes that do not agree are errors, not panics.
    assert!(quant::dequantize_int4(&q.packed, &[rows, cols], &q.scales, &[3, 2]).is_err());
    assert!(
        quant::dequantize_int4(&q.packed[1..], &[rows, cols], &q.scales, &q.scale_shape).is_err()
    );
    assert!(quant::dequantize_int4(&q.packed, &[rows * cols], &q.scales, &q.scale_shape).is_err());
}

#[test]
fn int8_quantization_is_per_output_channel() {
    // Two output columns with very different ranges: each gets its own scale.
    let data = vec![1.0, 0.001, -0.5, 0.002, 0.25, -0.003];
    let q = quant::quantize_int8(&data, &[3, 2]);
    assert_eq!(q.scale_shape, vec![1, 2]);
    assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9 && (q.scales[1] - 0.003 / 127.0).abs() < 1e-9);
    let back = quant::dequantize_int8(&q.values, &[3, 2], &q.scales, &q.scale_shape).unwrap();
    for (a, b) in data.iter().zip(&back) {
        assert!((a - b).abs() <= a.abs() / 127.0 + 1e-9, "{a} vs {b}");
    }
    // Convolution filters [out, in, kh, kw] are scaled per filter.
    assert_eq!(
        quant::quantize_int8(&[0.0; 16], &[2, 2, 2, 2]).scale_shape,
        vec![2, 1, 1, 1]
    );
}

#[test]
fn int4_file_is_about_a_sixth_of_f32() {
    let config = Preset::mnist().model;
    let model = randomize(config.init::<B>(&device()), 3, 0.05);
    let f32_len = encode(&model, meta(&config, Quantization::F32)).len() as f64;
    let int4_len = encode(&model, meta(&config, Quantization::Int4)).len() as f64;
    // 4 bits + a 32-bit scale per 32 weights = 5 bits for the matrices that fit (nearly all).
    assert!(
        (0.15..0.19).contains(&(int4_len / f32_len)),
        "{}",
        int4_len / f32_len
    );
}

#[test]
fn an_int4_tensor_with_mismatched_scales_is_a_bad_tensor() {
    let (config, model) = tiny();
    let bytes = encode(&model, meta(&config, Quantization::Int4));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let name = "blocks.0.mlp.fc2.weight";
    assert_eq!(file.tensor(name).unwrap().dtype(), safetensors::Dtype::U8);
    // Rebuild the file with that tensor's scales cut to one group too few.
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json = header.metadata().as_ref().unwrap()[METADATA_KEY].clone();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = file
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                v.dtype(),
                v.shape().to_vec(),
                v.data().to_vec(),
            )
        })
        .collect();
    let scale = tensors
        .iter_mut()
        .find(|t| t.0 == format!("{name}.qscale"))
        .unwrap();
    scale.2[0] += 1;
    scale.3.extend([0; 64]);
    let bytes = raw(
        tensors
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
            .collect(),
        Some(json),
    );
    match load(&bytes).unwrap_err() {
        WeightError::BadTensor { name: bad, reason } => {
            assert_eq!(bad, name);
            assert!(reason.contains("does not group"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn int8_file_is_about_a_quarter_of_f32() {
    let config = Preset::mnist().model;
    let model = randomize(config.init::<B>(&device()), 3, 0.05);
    let f32_len = encode(&model, meta(&config, Quantization::F32)).len() as f64;
    let int8_len = encode(&model, meta(&config, Quantization::Int8)).len() as f64;
    assert!(
        (0.24..0.27).contains(&(int8_len / f32_len)),
        "{}",
        int8_len / f32_len
    );
}

// ---- malformed files: each a typed error, never a panic ----

fn valid_bytes() -> Vec<u8> {
    let (config, model) = tiny();
    encode(&model, meta(&config, Quantization::Int8))
}

/// Re-encodes a decoded file after `edit` changes it (tensors or metadata).
fn edited(edit: impl FnOnce(&mut WeightFile)) -> Vec<u8> {
    let (config, model) = tiny();
    let mut file = WeightFile::from_model(&model, meta(&config, Quantization::F32));
    edit(&mut file);
    file.to_bytes().unwrap()
}

/// Writes raw safetensors with arbitrary tensors and metadata.
fn raw(
    tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    metadata: Option<String>,
) -> Vec<u8> {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(
        views,
        metadata.map(|m| HashMap::from([(METADATA_KEY.to_string(), m)])),
    )
    .unwrap()
}

fn meta_json(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let (config, _) = tiny();
    let mut v = serde_json::to_value(meta(&config, Quantization::F32)).unwrap();
    edit(&mut v);
    v.to_string()
}

#[test]
fn truncated_files_are_malformed() {
    let bytes = valid_bytes();
    for len in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(load(&bytes[..len]), Err(WeightError::Malformed(_))),
            "truncated to {len}"
        );
    }
}

#[test]
fn a_lying_header_length_is_malformed() {
    let mut bytes = valid_bytes();
    for lie in [u64::MAX, 1 << 40, 3] {
        bytes[..8].copy_from_slice(&lie.to_le_bytes());
        assert!(
            matches!(load(&bytes), Err(WeightError::Malformed(_))),
            "header length {lie}"
        );
    }
}

#[test]
fn foreign_safetensors_without_metadata_are_named_as_such() {
    let bytes = raw(
        vec![("w", safetensors::Dtype::F32, vec![1], vec![0; 4])],
        None,
    );
    let err = load(&bytes).unwrap_err();
    assert_eq!(err, WeightError::MissingMetadata);
    assert!(err.to_string().contains("not written by dit-web"));
}

#[test]
fn bad_metadata_json_is_reported() {
    let bytes = raw(vec![], Some("{not json".into()));
    assert!(matches!(load(&bytes), Err(WeightError::BadMetadata(_))));
    let bytes = raw(
        vec![],
        Some(meta_json(|v| v["model"]["depth"] = "six".into())),
    );
    assert!(matches!(load(&bytes), Err(WeightError::BadMetadata(_))));
}

#[test]
fn a_newer_format_version_asks_for_an_update() {
    let bytes = raw(
        vec![],
        Some(meta_json(|v| {
            v["format_version"] = (FORMAT_VERSION + 1).into();
            v["some_future_field"] = 1.into();
        })),
    );
    let err = load(&bytes).unwrap_err();
    assert!(
        matches!(err, WeightError::NewerVersion { found, .. } if found == u64::from(FORMAT_VERSION) + 1)
    );
    assert!(err.to_string().contains("update dit-web"));
}

#[test]
fn a_missing_tensor_is_named() {
    let bytes = edited(|f| {
        f.tensors.remove("blocks.1.attn.k.weight");
    });
    assert_eq!(
        load(&bytes).unwrap_err(),
        WeightError::MissingTensor("blocks.1.attn.k.weight".into())
    );
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let bytes = edited(|f| {
        let t = f.tensors.get_mut("blocks.0.mlp.fc1.weight").unwrap();
        t.shape.reverse(); // same count, transposed: a PyTorch-orientation mistake
    });
    match load(&bytes).unwrap_err() {
        WeightError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "blocks.0.mlp.fc1.weight");
            assert_eq!((expected, found), (vec![16, 64], vec![64, 16]));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_extra_tensor_is_named() {
    let bytes = edited(|f| {
        let t = f.tensors["final_layer.linear.bias"].clone();
        f.tensors.insert("final_layer.extra".into(), t);
    });
    assert_eq!(
        load(&bytes).unwrap_err(),
        WeightError::UnexpectedTensor("final_layer.extra".into())
    );
}

#[test]
fn an_unknown_dtype_is_named() {
    let bytes = raw(
        vec![(
            "x_embedder.proj.bias",
            safetensors::Dtype::I32,
            vec![16],
            vec![0; 64],
        )],
        Some(meta_json(|_| {})),
    );
    assert!(
        matches!(load(&bytes), Err(WeightError::UnsupportedDtype { name, dtype }) if name == "x_embedder.proj.bias" && dtype == "I32")
    );
}

#[test]
fn int8_needs_a_matching_scale() {
    let json = Some(meta_json(|_| {}));
    let without = raw(
        vec![("w", safetensors::Dtype::I8, vec![2, 2], vec![1; 4])],
        json.clone(),
    );
    assert!(matches!(load(&without), Err(WeightError::BadTensor { .. })));
    let scale = 1f32.to_le_bytes().repeat(3);
    let wrong = raw(
        vec![
            ("w", safetensors::Dtype::I8, vec![2, 2], vec![1; 4]),
            ("w.qscale", safetensors::Dtype::F32, vec![1, 3], scale),
        ],
        json.clone(),
    );
    assert!(matches!(load(&wrong), Err(WeightError::BadTensor { .. })));
    let orphan = raw(
        vec![("v.qscale", safetensors::Dtype::F32, vec![1], vec![0; 4])],
        json,
    );
    assert!(matches!(
        load(&orphan),
        Err(WeightError::UnexpectedTensor(_))
    ));
}

#[test]
fn inconsistent_metadata_is_refused_before_allocating() {
    let bytes = raw(
        vec![],
        Some(meta_json(|v| v["labels"] = serde_json::json!(["a"]))),
    );
    assert!(matches!(
        load(&bytes),
        Err(WeightError::LabelCount {
            found: 1,
            expected: 3
        })
    ));
    let bytes = raw(
        vec![],
        Some(meta_json(|v| v["model"]["num_heads"] = 5.into())),
    );
    assert!(matches!(load(&bytes), Err(WeightError::InvalidConfig(_))));
    // A file whose metadata claims a model far larger than its tensors.
    let bytes = edited(|f| f.meta.model.hidden_size = 1 << 16);
    assert!(matches!(
        load(&bytes),
        Err(WeightError::BadTensor { .. }) | Err(WeightError::InvalidConfig(_))
    ));
}

#[test]
fn absurd_sizes_and_unusable_schedules_are_refused_naming_the_field() {
    let refused = |bytes: Vec<u8>| match load(&bytes) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded"),
    };
    // The tensors are the tiny model's; only the metadata lies. The image side scales no tensor,
    // so nothing but this check stands between it and a position table of terabytes.
    let e = refused(edited(|f| f.meta.model.input_size = 100_000));
    assert!(
        e.contains("input_size = 100000 is more than dit-web accepts"),
        "{e}"
    );
    let e = refused(edited(|f| {
        f.meta.model.input_size = 1024;
        f.meta.model.patch_size = 2;
    }));
    assert!(
        e.contains("262144 tokens, more than dit-web accepts"),
        "{e}"
    );
    let e = refused(edited(|f| f.meta.model.depth = 1_000_000));
    assert!(e.contains("depth = 1000000"), "{e}");

    for (edit, field) in [
        (2.0, "beta_end = 2 must be in (0, 1)"),
        (-0.5, "beta_end = -0.5 must be in (0, 1)"),
        (
            1e-5,
            "beta_start = 0.0001 is larger than beta_end = 0.00001",
        ),
    ] {
        let e = refused(edited(|f| f.meta.schedule.beta_end = edit));
        assert!(e.contains(field), "{e}");
    }
    let e = refused(edited(|f| f.meta.schedule.num_timesteps = 0));
    assert!(e.contains("num_timesteps = 0 must be in 1..=100000"), "{e}");
}

/// A small in-test fuzz: random byte flips, truncations and splices of a valid file must all
/// come back as Ok or a typed error (cargo-fuzz runs the same target much longer; see fuzz/).
#[test]
fn mutated_files_never_panic() {
    let bytes = valid_bytes();
    let mut rng = NoiseRng::new(77, 0);
    let mut outcomes = [0usize; 2];
    for _ in 0..1500 {
        let mut b = bytes.clone();
        match rng.below(3) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => b.truncate(rng.below(b.len())),
            _ => {
                // Flip inside the JSON header, where the structure lives.
                let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                let i = 8 + rng.below(header - 8);
                b[i] = b" {}[],:\"0123456789eE.-"[rng.below(22)];
            }
        }
        outcomes[usize::from(load(&b).is_ok())] += 1;
    }
    assert!(outcomes[0] > 0, "no mutation was rejected: {outcomes:?}");
}
