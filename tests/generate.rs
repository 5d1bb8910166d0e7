//! Native generation from a weight file: labels, determinism, PNG output, errors.

use crate::common;

use common::*;
use dit_web::diffusion::{NoiseSchedule, SamplerConfig, SamplerKind};
use dit_web::generate::{
    generate_images, load_guide, resolve_labels, sample, sample_batched, sample_batched_guided,
    Batches, Denoiser, GenerateError,
};
use dit_web::weights::{Quantization, WeightFile, WeightsMeta, FORMAT_VERSION};
use dit_web::{Conditioning, Dit, DitConfig, Flavour, ScheduleConfig};

fn weights(guidance_capable: bool) -> (Dit<B>, Vec<u8>) {
    let mut config = tiny_config(Flavour::Seed, Conditioning::AdalnZero);
    if !guidance_capable {
        config.class_dropout = 0.0;
    }
    let model = random_model(&config, 9);
    let meta = WeightsMeta {
        format_version: FORMAT_VERSION,
        model: config.clone(),
        schedule: ScheduleConfig::new(100),
        labels: vec!["cat".into(), "dog".into(), "owl".into()],
        dataset: "test".into(),
        step: 0,
        ema: true,
        quantization: Quantization::F32,
    };
    let bytes = WeightFile::from_model(&model, meta).to_bytes().unwrap();
    (model, bytes)
}

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&ScheduleConfig::new(100))
}

fn cfg(kind: SamplerKind, steps: usize, guidance: f32, seed: u64) -> SamplerConfig {
    SamplerConfig {
        kind,
        steps,
        guidance,
        seed,
        ..Default::default()
    }
}

#[test]
fn labels_resolve_by_name_or_index_and_unknown_ones_list_the_valid() {
    let names: Vec<String> = ["female", "male"].map(String::from).to_vec();
    assert_eq!(
        resolve_labels(&names, &["male", "0", "female", "1"]).unwrap(),
        vec![1, 0, 0, 1]
    );
    let err = resolve_labels(&names, &["cat"]).unwrap_err();
    assert!(matches!(&err, GenerateError::UnknownLabel { label, .. } if label == "cat"));
    assert!(err.to_string().contains("female, male"), "{err}");
    assert!(resolve_labels(&names, &["2"]).is_err());
}

#[test]
fn same_seed_same_images_and_each_image_is_independent_of_its_batch() {
    let (model, _) = weights(true);
    for kind in [
        SamplerKind::DpmSolverPP,
        SamplerKind::Ddim,
        SamplerKind::Ddpm,
    ] {
        let config = cfg(kind, 8, 2.0, 5);
        let a = sample(&model, &schedule(), &[0, 2], &config, |_| {}).unwrap();
        let b = sample(&model, &schedule(), &[0, 2], &config, |_| {}).unwrap();
        assert_eq!(a, b, "{kind}: not deterministic");
        let other_seed =
            sample(&model, &schedule(), &[0, 2], &cfg(kind, 8, 2.0, 6), |_| {}).unwrap();
        assert!(max_abs_diff(&a, &other_seed) > 0.1, "{kind}: seed ignored");
        // Image 0 of the batch equals the same label sampled alone (its own noise stream).
        let alone = sample(&model, &schedule(), &[0], &config, |_| {}).unwrap();
        assert!(
            max_abs_diff(&a[..alone.len()], &alone) < 1e-4,
            "{kind}: batch leaks"
        );
    }
}

#[test]
fn guidance_changes_the_result_and_needs_a_null_label() {
    let (model, _) = weights(true);
    let plain = sample(
        &model,
        &schedule(),
        &[1],
        &cfg(SamplerKind::DpmSolverPP, 6, 1.0, 1),
        |_| {},
    )
    .unwrap();
    let guided = sample(
        &model,
        &schedule(),
        &[1],
        &cfg(SamplerKind::DpmSolverPP, 6, 4.0, 1),
        |_| {},
    )
    .unwrap();
    assert!(max_abs_diff(&plain, &guided) > 1e-3);

    let (no_null, _) = weights(false);
    let err = sample(
        &no_null,
        &schedule(),
        &[1],
        &cfg(SamplerKind::DpmSolverPP, 6, 4.0, 1),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, GenerateError::NoNullLabel(_)), "{err}");
    assert!(sample(
        &no_null,
        &schedule(),
        &[1],
        &cfg(SamplerKind::DpmSolverPP, 6, 1.0, 1),
        |_| {}
    )
    .is_ok());
}

#[test]
fn guidance_interval_guides_only_its_timesteps() {
    let (model, _) = weights(true);
    let labels = [1, 2];
    let with = |interval: Option<[usize; 2]>, guidance: f32| SamplerConfig {
        guidance_interval: interval,
        ..cfg(SamplerKind::Ddpm, 8, guidance, 3)
    };
    let run =
        |config: &SamplerConfig| sample(&model, &schedule(), &labels, config, |_| {}).unwrap();
    let everywhere = run(&with(None, 3.0));
    // An interval holding every timestep (T = 100) is no interval.
    assert_eq!(run(&with(Some([0, 99]), 3.0)), everywhere);
    // One holding none of them is no guidance.
    let unguided = run(&with(None, 1.0));
    assert_eq!(run(&with(Some([200, 300]), 3.0)), unguided);
    // One holding some of them is neither.
    let partial = run(&with(Some([30, 70]), 3.0));
    assert!(max_abs_diff(&partial, &everywhere) > 1e-3);
    assert!(max_abs_diff(&partial, &unguided) > 1e-3);

    // Outside the interval the network runs on the requested images only.
    let denoiser = Denoiser::new(&model, &labels, &with(Some([30, 70]), 3.0)).unwrap();
    let x = vec![0.1; labels.len() * model.config().image_len()];
    assert_eq!(denoiser.forward(&x, 50).dims()[0], 4);
    assert_eq!(denoiser.forward(&x, 90).dims()[0], 2);
    assert_eq!(denoiser.guidance_at(29), None);
    assert_eq!(denoiser.guidance_at(70), Some(3.0));

    let err = sample(
        &model,
        &schedule(),
        &labels,
        &with(Some([70, 30]), 3.0),
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, GenerateError::BadGuidanceInterval(70, 30)),
        "{err}"
    );
}

#[test]
fn autoguidance_extrapolates_away_from_the_guiding_model() {
    let (model, bytes) = weights(true);
    // A weaker model of the same images: smaller, other weights, and no null label (it runs on
    // the requested labels only).
    let mut weak_config = DitConfig::new(8, 2, 2, 8, 1, 2, 3);
    weak_config.class_dropout = 0.0;
    let weak = random_model(&weak_config, 4);
    let labels = [0, 2];
    let config = |guidance: f32, autoguidance: f32| SamplerConfig {
        autoguidance,
        ..cfg(SamplerKind::Ddpm, 6, guidance, 8)
    };
    let run = |guide: Option<&Dit<B>>, guidance: f32, autoguidance: f32| {
        let config = config(guidance, autoguidance);
        let batches = Batches::in_turn(32);
        sample_batched_guided(
            &model,
            guide,
            &schedule(),
            &labels,
            &config,
            batches,
            |_| {},
        )
        .unwrap()
    };
    let unguided = run(None, 1.0, 1.0);
    // Scale 1 never runs the guide; a guide identical to the model cancels out at any scale.
    assert_eq!(run(Some(&weak), 1.0, 1.0), unguided);
    assert_eq!(run(Some(&model), 1.0, 3.0), unguided);
    let auto = run(Some(&weak), 1.0, 2.0);
    assert!(max_abs_diff(&auto, &unguided) > 1e-3);
    let cfg_only = run(Some(&weak), 2.0, 1.0);
    assert_eq!(cfg_only, run(None, 2.0, 1.0));
    assert!(max_abs_diff(&auto, &cfg_only) > 1e-3);
    let both = run(Some(&weak), 2.0, 2.0);
    assert!(max_abs_diff(&both, &auto) > 1e-3 && max_abs_diff(&both, &cfg_only) > 1e-3);
    // Autoguidance without a guiding model is an error, not a silent no-op.
    let err = sample(&model, &schedule(), &labels, &config(1.0, 2.0), |_| {}).unwrap_err();
    assert!(matches!(err, GenerateError::NoGuide(_)), "{err}");

    // One step, by hand: eps = c + (s - 1)(c - u) + (a - 1)(c - w).
    let x: Vec<f32> = (0..labels.len() * model.config().image_len())
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let (s, a) = (2.0, 1.5);
    let denoiser = Denoiser::guided_by(&model, Some(&weak), &labels, &config(s, a)).unwrap();
    let doubled = to_vec(denoiser.forward(&x, 40));
    let (c, u) = doubled.split_at(x.len());
    let w = to_vec(
        denoiser
            .guide_forward(&x, 40)
            .expect("autoguidance runs the guide"),
    );
    assert_eq!(w.len(), x.len());
    let expected: Vec<f32> = (0..x.len())
        .map(|i| c[i] + (s - 1.0) * (c[i] - u[i]) + (a - 1.0) * (c[i] - w[i]))
        .collect();
    assert!(max_abs_diff(&denoiser.eps(&x, 40), &expected) < 1e-5);
    // Outside a guidance interval only autoguidance applies: eps = c + (a - 1)(c - w).
    let interval = SamplerConfig {
        guidance_interval: Some([0, 30]),
        ..config(s, a)
    };
    let denoiser = Denoiser::guided_by(&model, Some(&weak), &labels, &interval).unwrap();
    let c = to_vec(denoiser.forward(&x, 40));
    assert_eq!(c.len(), x.len());
    let w = to_vec(denoiser.guide_forward(&x, 40).unwrap());
    let expected: Vec<f32> = (0..x.len())
        .map(|i| c[i] + (a - 1.0) * (c[i] - w[i]))
        .collect();
    assert!(max_abs_diff(&denoiser.eps(&x, 40), &expected) < 1e-5);

    // A guide of other images, labels or schedule is refused with a reason.
    let other_classes = random_model(&DitConfig::new(8, 2, 2, 8, 1, 2, 5), 4);
    let err = Denoiser::guided_by(&model, Some(&other_classes), &labels, &config(1.0, 2.0))
        .err()
        .expect("5 classes against 3");
    assert!(matches!(err, GenerateError::GuideMismatch(_)), "{err}");
    assert!(err.to_string().contains("classes 5 against 3"), "{err}");
    let (_, meta) = WeightFile::from_bytes(&bytes)
        .unwrap()
        .into_model::<B>(&device())
        .unwrap();
    let guide_file = |schedule: ScheduleConfig, labels: &[&str]| {
        let meta = WeightsMeta {
            schedule,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            model: weak_config.clone(),
            ..meta.clone()
        };
        WeightFile::from_model(&weak, meta).to_bytes().unwrap()
    };
    let fits = guide_file(ScheduleConfig::new(100), &["cat", "dog", "owl"]);
    assert!(load_guide::<B>(&meta, &fits, &device()).is_ok());
    for (bad, why) in [
        (
            guide_file(ScheduleConfig::new(50), &["cat", "dog", "owl"]),
            "noise schedule",
        ),
        (
            guide_file(ScheduleConfig::new(100), &["cat", "dog", "emu"]),
            "labels",
        ),
    ] {
        let err = load_guide::<B>(&meta, &bad, &device()).expect_err("a mismatched guide");
        assert!(err.to_string().contains(why), "{err}");
    }
    // `generate_images` takes the guide's file: it changes the picture, and a mismatch is an
    // error.
    let png = |guide: Option<&[u8]>, autoguidance: f32| {
        let out = generate_images::<B, _>(
            &bytes,
            guide,
            &["cat", "owl"],
            &config(1.0, autoguidance),
            Batches::in_turn(32),
            &device(),
        )?;
        Ok::<_, GenerateError>(out.images[0].pixels.clone())
    };
    assert_ne!(png(Some(&fits), 2.0).unwrap(), png(None, 1.0).unwrap());
    assert_eq!(png(Some(&fits), 1.0).unwrap(), png(None, 1.0).unwrap());
    let bad = guide_file(ScheduleConfig::new(50), &["cat", "dog", "owl"]);
    assert!(matches!(
        png(Some(&bad), 2.0),
        Err(GenerateError::GuideMismatch(_))
    ));
}

#[test]
fn a_request_split_into_batches_gives_the_one_batch_images() {
    let (model, _) = weights(true);
    let labels = [0, 1, 2, 1, 0, 2, 2];
    for kind in [SamplerKind::DpmSolverPP, SamplerKind::Ddpm] {
        let config = cfg(kind, 6, 2.0, 13);
        let whole = sample(&model, &schedule(), &labels, &config, |_| {}).unwrap();
        let mut done = Vec::new();
        let split =
            sample_batched(&model, &schedule(), &labels, &config, 3, |n| done.push(n)).unwrap();
        assert_eq!(done, vec![3, 6, 7], "{kind}: progress per batch");
        assert_eq!(split.len(), whole.len());
        // DDPM draws fresh noise every step: equal images mean every image kept its stream.
        assert!(
            max_abs_diff(&split, &whole) < 1e-4,
            "{kind}: split differs by {}",
            max_abs_diff(&split, &whole)
        );
    }
    // A bad label anywhere fails before any batch runs.
    let mut calls = 0;
    let err = sample_batched(
        &model,
        &schedule(),
        &[0, 1, 2, 7],
        &cfg(SamplerKind::DpmSolverPP, 2, 1.0, 0),
        2,
        |_| calls += 1,
    )
    .unwrap_err();
    assert!(matches!(err, GenerateError::UnknownLabel { .. }), "{err}");
    assert_eq!(calls, 0);
}

#[test]
fn batches_side_by_side_give_the_images_of_batches_in_turn() {
    use burn_flex::{Flex, FlexDevice};
    // On burn-flex with the model's own kernels, as `trainer eval --backend cpu` runs. Width 192
    // and 64 tokens: at 6 images the Linear layers' products are large enough for `gemm` to
    // split them over rayon's threads too, inside the batches' own tasks.
    let config = DitConfig::new(16, 1, 2, 192, 1, 4, 3).with_class_dropout(0.1);
    let meta = WeightsMeta {
        schedule: ScheduleConfig::new(100),
        ..meta(&config, Quantization::F32)
    };
    let bytes = WeightFile::from_model(&random_model(&config, 3), meta)
        .to_bytes()
        .unwrap();
    let (model, _): (Dit<Flex>, _) = WeightFile::from_bytes(&bytes)
        .unwrap()
        .into_model(&FlexDevice)
        .unwrap();
    let labels: Vec<usize> = (0..23).map(|i| i % 3).collect();
    let sampler = cfg(SamplerKind::Ddpm, 3, 2.0, 5);
    let run = |parallel| {
        let mut done = Vec::new();
        let batches = Batches { max: 6, parallel };
        let images =
            sample_batched_guided(&model, None, &schedule(), &labels, &sampler, batches, |n| {
                done.push(n)
            })
            .unwrap();
        (images, done)
    };
    let (in_turn, done_in_turn) = run(false);
    let (side_by_side, done_side_by_side) = run(true);
    // Bit for bit: a batch's work does not depend on which thread runs it.
    assert_eq!(side_by_side, in_turn);
    assert_eq!(done_in_turn, [6, 12, 18, 23]);
    // Side by side the batches end in any order; progress still counts up, a batch at a time.
    assert_eq!(done_side_by_side.len(), 4);
    assert!(done_side_by_side.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(done_side_by_side.last(), Some(&23));
}

#[test]
fn progress_callback_sees_every_step_with_a_preview() {
    let (model, _) = weights(true);
    let mut seen = Vec::new();
    let out = sample(
        &model,
        &schedule(),
        &[0, 1],
        &cfg(SamplerKind::DpmSolverPP, 7, 1.5, 3),
        |s| {
            assert_eq!(s.x0.len(), 2 * model.config().image_len());
            seen.push((s.step, s.total, s.t));
        },
    )
    .unwrap();
    let total = seen[0].1;
    assert!((6..=7).contains(&total), "{total}");
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(seen[0].2, 99);
    assert!(seen.windows(2).all(|w| w[1].2 < w[0].2));
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn generate_images_draws_one_image_per_label_with_its_name() {
    let (_, bytes) = weights(true);
    let out = generate_images::<B, _>(
        &bytes,
        None,
        &["dog", "0", "owl"],
        &cfg(SamplerKind::DpmSolverPP, 5, 2.0, 42),
        Batches {
            max: 2,
            parallel: true,
        },
        &device(),
    )
    .unwrap();
    assert_eq!(out.labels, ["dog", "cat", "owl"]);
    assert_eq!(out.images.len(), 3);
    for image in &out.images {
        assert_eq!((image.width, image.height), (8, 8));
        assert_eq!(image.pixels.len(), 8 * 8 * 4);
    }
    // The batches of two give the images one call of three gives.
    let whole = generate_images::<B, _>(
        &bytes,
        None,
        &["dog", "0", "owl"],
        &cfg(SamplerKind::DpmSolverPP, 5, 2.0, 42),
        Batches::in_turn(16),
        &device(),
    )
    .unwrap();
    for (a, b) in out.images.iter().zip(&whole.images) {
        let worst = a
            .pixels
            .iter()
            .zip(&b.pixels)
            .map(|(x, y)| x.abs_diff(*y))
            .max();
        assert!(worst <= Some(1), "{worst:?}");
    }

    let err = generate_images::<B, _>(
        &bytes,
        None,
        &["zebra"],
        &SamplerConfig::default(),
        Batches::in_turn(16),
        &device(),
    )
    .err()
    .expect("an unknown label");
    assert!(err.to_string().contains("cat, dog, owl"), "{err}");
    let err = generate_images::<B, _>(
        &bytes[..100],
        None,
        &["dog"],
        &SamplerConfig::default(),
        Batches::in_turn(16),
        &device(),
    )
    .err()
    .expect("a cut file");
    assert!(matches!(err, GenerateError::Weights(_)), "{err}");
}
