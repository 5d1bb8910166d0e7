//! The network: parameter counts, zero output at init, conditioning, shapes, position tables.

use crate::common;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use dit_web::model::position_table;
use dit_web::{Conditioning, DitConfig, Flavour, Preset};

fn inputs(
    config: &DitConfig,
    batch: usize,
    t: f32,
    labels: &[i64],
    seed: u64,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1, Int>) {
    let s = config.input_size;
    let mut x = vec![0f32; batch * config.image_len()];
    dit_web::diffusion::NoiseRng::new(seed, 0).fill_normal(&mut x);
    (
        Tensor::from_data(
            TensorData::new(x, [batch, config.in_channels, s, s]),
            &device(),
        ),
        Tensor::from_data(TensorData::new(vec![t; batch], [batch]), &device()),
        Tensor::from_data(TensorData::new(labels.to_vec(), [batch]), &device()),
    )
}

#[test]
fn mnist_preset_has_the_reference_parameter_count() {
    let config = Preset::mnist().model;
    assert_eq!(config.init::<B>(&device()).num_params(), 9_280_804);
    assert_eq!(config.num_params(), 9_280_804);
}

#[test]
fn celeba_preset_has_the_reference_parameter_count() {
    let config = Preset::celeba().model;
    assert_eq!(config.num_params(), 38_780_976);
    assert_eq!(config.init::<B>(&device()).num_params(), 38_780_976);
}

#[test]
fn cpu_preset_has_the_documented_parameter_count() {
    // docs/architecture.md: the `mnist-cpu` preset.
    let config = Preset::mnist_cpu().model;
    assert_eq!(config.init::<B>(&device()).num_params(), 4_136_848);
}

#[test]
fn analytic_parameter_count_matches_burn_for_every_variant() {
    for (flavour, conditioning) in all_variants() {
        let config = tiny_config(flavour, conditioning);
        let built = config.init::<B>(&device()).num_params() as u128;
        assert_eq!(built, config.num_params(), "{flavour:?} {conditioning:?}");
    }
}

#[test]
fn untrained_model_predicts_exactly_zero_for_every_variant() {
    for (flavour, conditioning) in all_variants() {
        let config = tiny_config(flavour, conditioning);
        let model = config.init::<B>(&device());
        let (x, t, y) = inputs(&config, 3, 17.0, &[0, 1, 3], 1);
        let out = model.forward(x, t, y);
        assert_eq!(out.dims(), [3, 2, 8, 8]);
        let values = to_vec(out);
        assert!(
            values.iter().all(|&v| v == 0.0),
            "{flavour:?} {conditioning:?}: non-zero output at init"
        );
    }
}

#[test]
fn trained_like_model_depends_on_label_timestep_and_input() {
    for (flavour, conditioning) in all_variants() {
        let config = tiny_config(flavour, conditioning);
        let model = random_model(&config, 7);
        let run = |t: f32, label: i64, seed: u64| {
            let (x, t, y) = inputs(&config, 1, t, &[label], seed);
            to_vec(model.forward(x, t, y))
        };
        let base = run(10.0, 0, 1);
        assert!(base.iter().all(|v| v.is_finite()));
        assert!(
            max_abs_diff(&base, &run(10.0, 1, 1)) > 1e-4,
            "{flavour:?} {conditioning:?}: label ignored"
        );
        assert!(
            max_abs_diff(&base, &run(300.0, 0, 1)) > 1e-4,
            "{flavour:?} {conditioning:?}: timestep ignored"
        );
        assert!(
            max_abs_diff(&base, &run(10.0, 0, 2)) > 1e-4,
            "{flavour:?} {conditioning:?}: input ignored"
        );
        // The null label (index num_classes) is a valid input when there is label dropout.
        assert!(run(10.0, 3, 1).iter().all(|v| v.is_finite()));
    }
}

#[test]
fn samples_in_a_batch_do_not_affect_each_other() {
    let config = tiny_config(Flavour::Seed, Conditioning::AdalnZero);
    let model = random_model(&config, 3);
    let (x, t, y) = inputs(&config, 3, 50.0, &[2, 0, 1], 5);
    let batched = to_vec(model.forward(x.clone(), t.clone(), y.clone()));
    let first = to_vec(model.forward(x.narrow(0, 0, 1), t.narrow(0, 0, 1), y.narrow(0, 0, 1)));
    assert!(max_abs_diff(&batched[..first.len()], &first) < 1e-5);
}

#[test]
fn unpatchify_places_each_token_value_at_its_pixel() {
    let config = DitConfig::new(6, 2, 3, 8, 1, 2, 1);
    let model = config.init::<B>(&device());
    let (p, c, h) = (3, 2, 2);
    // Token n = i * h + j holds values indexed (pp, q, ch); encode the destination in the value.
    let mut tokens = vec![0f32; h * h * p * p * c];
    for i in 0..h {
        for j in 0..h {
            for pp in 0..p {
                for q in 0..p {
                    for ch in 0..c {
                        let (row, col) = (i * p + pp, j * p + q);
                        tokens[((i * h + j) * p * p + pp * p + q) * c + ch] =
                            (ch * 100 + row * 10 + col) as f32;
                    }
                }
            }
        }
    }
    let image = to_vec(model.unpatchify(Tensor::from_data(
        TensorData::new(tokens, [1, h * h, p * p * c]),
        &device(),
    )));
    for ch in 0..c {
        for row in 0..6 {
            for col in 0..6 {
                assert_eq!(
                    image[(ch * 6 + row) * 6 + col],
                    (ch * 100 + row * 10 + col) as f32
                );
            }
        }
    }
}

#[test]
fn seed_position_table_is_the_interleaved_1d_table() {
    let config = Preset::mnist().model;
    let (d, table) = (config.hidden_size, position_table(&config));
    assert_eq!(table.len(), 196 * d);
    for &(n, j) in &[(0usize, 0usize), (5, 3), (195, 143), (77, 60)] {
        let angle = n as f64 / 10000f64.powf(2.0 * j as f64 / d as f64);
        assert!((table[n * d + 2 * j] as f64 - angle.sin()).abs() < 1e-6);
        assert!((table[n * d + 2 * j + 1] as f64 - angle.cos()).abs() < 1e-6);
    }
}

#[test]
fn paper_position_table_encodes_column_then_row() {
    let config = Preset::mnist().with_flavour(Flavour::Paper).model;
    let (d, grid, table) = (
        config.hidden_size,
        config.grid_size(),
        position_table(&config),
    );
    // Tokens in the same column share the first half; tokens in the same row share the second.
    let row = |n: usize| &table[n * d..(n + 1) * d];
    assert_eq!(row(3)[..d / 2], row(3 + 5 * grid)[..d / 2]);
    assert_eq!(row(2 * grid)[d / 2..], row(2 * grid + 7)[d / 2..]);
    assert_ne!(row(3)[d / 2..], row(3 + 5 * grid)[d / 2..]);
    // Position (0, 0): sin terms are 0, cos terms are 1.
    assert!(row(0)[..d / 4].iter().all(|&v| v == 0.0));
    assert!(row(0)[d / 4..d / 2].iter().all(|&v| v == 1.0));
}

#[test]
fn invalid_configs_are_rejected_with_a_reason() {
    let bad = [
        DitConfig::new(28, 1, 3, 288, 6, 6, 10),
        DitConfig::new(28, 1, 2, 288, 6, 5, 10),
        DitConfig::new(28, 1, 2, 0, 6, 6, 10),
        DitConfig::new(28, 1, 2, 1 << 19, 64, 8, 10),
        DitConfig::new(28, 1, 2, 288, 6, 6, 10).with_class_dropout(1.5),
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?} accepted");
    }
    assert!(Preset::celeba().model.validate().is_ok());
}

#[test]
fn conditioning_and_flavour_names_are_the_ones_files_store() {
    for conditioning in Conditioning::ALL {
        let stored = serde_json::to_value(conditioning).unwrap();
        assert_eq!(stored, conditioning.name(), "{conditioning:?}");
        assert_eq!(
            conditioning.name().parse::<Conditioning>(),
            Ok(conditioning)
        );
    }
    for flavour in [Flavour::Seed, Flavour::Paper] {
        assert_eq!(serde_json::to_value(flavour).unwrap(), flavour.name());
        assert_eq!(flavour.name().parse::<Flavour>(), Ok(flavour));
    }
    let unknown = "film".parse::<Conditioning>().unwrap_err();
    assert!(
        unknown.contains("adaln-zero, adaln, cross-attn or in-context"),
        "{unknown}"
    );
    assert!("Paper".parse::<Flavour>().is_err());
}
