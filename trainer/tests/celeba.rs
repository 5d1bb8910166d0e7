//! The CelebA loader on a tiny folder in the official layout, made by the test.

use crate::common;

use trainer::data::celeba::{CelebA, Partition, CROP, FEMALE, MALE};
use trainer::data::loader::Loader;
use trainer::data::Dataset;

#[test]
fn reads_the_official_layout_crops_the_centre_and_labels_by_male() {
    let root = tempfile::tempdir().unwrap();
    common::write_celeba(root.path(), 7);
    let train = CelebA::load(root.path(), Partition::Train).unwrap();
    assert_eq!(train.len(), 6);
    assert_eq!(CelebA::load(root.path(), Partition::Test).unwrap().len(), 1);
    let labels: Vec<usize> = train.items().iter().map(|i| i.1).collect();
    assert_eq!(labels, [MALE, FEMALE, MALE, FEMALE, MALE, FEMALE]);

    let mut image = vec![0f32; train.image_len()];
    assert_eq!(train.image_into(0, &mut image).unwrap(), MALE);
    // The 128x128 centre crop is the red square: red high, blue low, everywhere (JPEG-lossy).
    let plane = CROP * CROP;
    let mean = |c: usize| image[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32;
    assert!(
        mean(0) > 0.6 && mean(2) < -0.6,
        "red {} blue {}",
        mean(0),
        mean(2)
    );
}

#[test]
fn corrupt_missing_and_small_images_are_skipped_and_counted() {
    let root = tempfile::tempdir().unwrap();
    common::write_celeba(root.path(), 9);
    let dir = root.path().join("img_align_celeba");
    std::fs::write(dir.join("000002.jpg"), b"not a jpeg").unwrap();
    std::fs::remove_file(dir.join("000003.jpg")).unwrap();
    image::RgbImage::new(100, 100)
        .save(dir.join("000004.jpg"))
        .unwrap();
    let data = CelebA::load(root.path(), Partition::Train).unwrap();
    let mut loader = Loader::new(&data, 1).with_workers(2);
    for _ in 0..4 {
        let (images, labels) = loader.next_batch(2);
        assert_eq!((images.len(), labels.len()), (2 * data.image_len(), 2));
        assert!(images.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
    let (count, reasons) = loader.skipped();
    assert!(count >= 3, "{count}");
    let all = reasons.join("\n");
    assert!(
        all.contains("000002.jpg")
            && all.contains("000003.jpg")
            && all.contains("smaller than the 128x128 crop"),
        "{all}"
    );
}

#[test]
fn a_wrong_folder_names_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let err = CelebA::load(root.path(), Partition::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("list_attr_celeba.txt") && err.contains("img_align_celeba"),
        "{err}"
    );
    common::write_celeba(root.path(), 3);
    std::fs::write(
        root.path().join("list_attr_celeba.txt"),
        "3\nSmiling\n000001.jpg 1\n",
    )
    .unwrap();
    let err = CelebA::load(root.path(), Partition::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no `Male` attribute"), "{err}");
}

#[test]
fn worker_threads_do_not_change_the_batches() {
    let root = tempfile::tempdir().unwrap();
    common::write_celeba(root.path(), 9);
    let data = CelebA::load(root.path(), Partition::Train).unwrap();
    let one = Loader::new(&data, 5).with_workers(1).next_batch(4);
    let two = Loader::new(&data, 5).with_workers(3).next_batch(4);
    assert_eq!(one, two);
}

/// The CPU half of "a CelebA-size run that learns": the real loader on generated shapes
/// (`trainer shapes`), the celeba preset's 128x128x3 images and schedule on a small network
/// (patch 8, width 192: a token's 192 values need at least as wide a network to pass the noise
/// through), stopped half-way as by Ctrl-C and resumed. The loss must fall to under 40 % of where
/// it started. Whether such a network learns its labels takes longer than a test: the browser
/// tests draw both labels of a model trained this way for longer
/// (`tests/browser/fixtures/celeba-shapes.safetensors`) and check their colours.
#[test]
fn a_small_network_learns_the_shapes_across_a_resume() {
    use std::ops::ControlFlow;

    use burn::backend::Autodiff;
    use dit_web::{DitConfig, Preset};
    use trainer::run_dir::RunDir;
    use trainer::train::config::{RunConfig, TrainConfig};
    use trainer::train::lr::{Decay, LrSchedule};

    let root = tempfile::tempdir().unwrap();
    let shapes = root.path().join("shapes");
    trainer::data::shapes::write(&shapes, 80, 0).unwrap();
    let data = CelebA::load(&shapes, Partition::Train).unwrap();
    let mut preset = Preset::celeba();
    preset.model = DitConfig::new(128, 3, 8, 192, 1, 2, 2).with_class_dropout(0.1);
    let steps = 120;
    let config = TrainConfig {
        steps,
        batch_size: 8,
        lr: LrSchedule {
            max_lr: 2e-3,
            warmup: 20,
            total: steps,
            decay: Decay::Cosine,
        },
        ema_decay: 0.99,
        ema_warmup: true,
        grad_clip: Some(1.0),
        checkpoint_every: 30,
        keep_every: 0,
        sample_every: 0,
        ..TrainConfig::defaults(&preset)
    };
    let run_config = RunConfig::new(&preset, config);
    let run = RunDir::new(root.path().join("run"));
    let train = |resume: bool, stop_at: u64| {
        trainer::train::Job::new(run_config.clone(), &data, run.clone())
            .resuming(resume)
            .run_on::<Autodiff<trainer::Cpu>>(vec![Default::default()], |row| {
                match row.step >= stop_at {
                    true => ControlFlow::Break(()),
                    false => ControlFlow::Continue(()),
                }
            })
            .unwrap()
    };
    let first = train(false, steps / 2);
    assert!(first.stopped);
    assert_eq!(first.final_step, steps / 2);
    let second = train(true, u64::MAX);
    assert_eq!((second.stopped, second.final_step), (false, steps));
    assert_eq!(second.losses.first().map(|l| l.0), Some(steps / 2));
    let rows = trainer::report::metrics::read(&run.metrics_file()).unwrap();
    assert_eq!(rows.len() as u64, steps);
    let early: f64 = rows[..10].iter().map(|r| r.loss).sum::<f64>() / 10.0;
    let late: f64 = rows[rows.len() - 10..].iter().map(|r| r.loss).sum::<f64>() / 10.0;
    assert!(late < 0.4 * early, "loss {early:.4} -> {late:.4}");
}
