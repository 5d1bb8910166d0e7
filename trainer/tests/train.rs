//! Training on tiny data: exact resume, checkpoints, divergence stop, MNIST loading errors.

use crate::common;

use std::ops::ControlFlow;
use std::path::Path;

use burn::backend::Autodiff;
use dit_web::{DitConfig, Preset};
use trainer::data::loader::Loader;
use trainer::data::mnist::{Mnist, Split};
use trainer::data::Dataset;
use trainer::run_dir::RunDir;
use trainer::train::config::{RunConfig, TrainConfig};
use trainer::train::lr::{Decay, LrSchedule};
use trainer::train::{checkpoint, Job, TrainError, TrainOutcome};
use trainer::Cpu;

type B = Autodiff<Cpu>;

/// A 28x28 MNIST-shaped model with 16 tokens, fast enough to train in a test.
fn tiny_preset() -> Preset {
    let mut preset = Preset::mnist_cpu();
    preset.model = DitConfig::new(28, 1, 7, 32, 1, 2, 10).with_class_dropout(0.1);
    preset
}

fn config(steps: u64) -> TrainConfig {
    common::tiny_config(steps)
}

/// Trains the tiny preset with `config` into the run folder `dir`.
fn train_tiny(
    config: &TrainConfig,
    data: &Mnist,
    dir: &Path,
    resume: bool,
) -> Result<TrainOutcome, TrainError> {
    let run_config = RunConfig::new(&tiny_preset(), config.clone());
    Job::new(run_config.clone(), data, RunDir::new(dir))
        .resuming(resume)
        .run_on::<B>(vec![Default::default()], |_| ControlFlow::Continue(()))
}

fn data() -> (tempfile::TempDir, Mnist) {
    let dir = tempfile::tempdir().unwrap();
    common::write_mnist(dir.path(), 40);
    let mnist = Mnist::load(dir.path(), Split::Train).unwrap();
    (dir, mnist)
}

#[test]
fn resuming_gives_the_same_losses_as_training_straight() {
    let (_d, data) = data();
    let straight = tempfile::tempdir().unwrap();
    let full = train_tiny(&config(6), &data, straight.path(), false).unwrap();
    assert_eq!(full.losses.len(), 6);

    let split = tempfile::tempdir().unwrap();
    let first = train_tiny(
        &TrainConfig {
            steps: 3,
            ..config(6)
        },
        &data,
        split.path(),
        false,
    )
    .unwrap();
    let second = train_tiny(&config(6), &data, split.path(), true).unwrap();
    assert_same_losses(&full, first, second);
}

/// The losses of `first` and then `second` (a resume) are `full`'s, step for step.
fn assert_same_losses(full: &TrainOutcome, first: TrainOutcome, second: TrainOutcome) {
    let resumed: Vec<(u64, f64)> = first.losses.into_iter().chain(second.losses).collect();
    assert_eq!(
        resumed.iter().map(|l| l.0).collect::<Vec<_>>(),
        full.losses.iter().map(|l| l.0).collect::<Vec<_>>()
    );
    for ((step, a), (_, b)) in full.losses.iter().zip(&resumed) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "step {step}: {a} straight vs {b} resumed"
        );
    }
    // The loss is not constant: the test would notice a resume that restarted from scratch.
    assert!(full
        .losses
        .windows(2)
        .any(|w| (w[0].1 - w[1].1).abs() > 1e-4));
}

#[test]
fn a_run_stopped_between_checkpoints_keeps_that_step_and_resumes_exactly() {
    let (_d, data) = data();
    let straight = tempfile::tempdir().unwrap();
    let full = train_tiny(&config(6), &data, straight.path(), false).unwrap();
    assert!(!full.stopped);

    // Checkpoints every 3 steps; the stop comes after step 4 (as Ctrl-C does through `trainer`).
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let first = Job::new(
        RunConfig::new(&tiny_preset(), config(6)),
        &data,
        run.clone(),
    )
    .resuming(false)
    .run_on::<B>(vec![Default::default()], |row| match row.step {
        4 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .unwrap();
    assert!(first.stopped);
    assert_eq!(first.final_step, 4);
    assert!(run.latest_checkpoint().unwrap().ends_with("step-00000004"));
    let metrics = trainer::report::metrics::read(&dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 4);

    let second = train_tiny(&config(6), &data, dir.path(), true).unwrap();
    assert!(!second.stopped);
    assert_eq!(second.final_step, 6);
    assert_same_losses(&full, first, second);
}

#[test]
fn training_in_micro_batches_follows_the_whole_batch() {
    let (_d, data) = data();
    let run = |micro_batch| {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            micro_batch,
            ..config(3)
        };
        train_tiny(&config, &data, dir.path(), false)
            .unwrap()
            .losses
    };
    let (whole, split) = (run(0), run(3));
    for ((step, a), (_, b)) in whole.iter().zip(&split) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "step {step}: {a} vs {b}"
        );
    }
}

#[test]
fn checkpoints_are_complete_and_old_ones_pruned() {
    let (_d, data) = data();
    let run = tempfile::tempdir().unwrap();
    train_tiny(&config(7), &data, run.path(), false).unwrap();
    let latest = RunDir::new(run.path()).latest_checkpoint().unwrap();
    assert!(latest.ends_with("step-00000007"));
    for file in ["model.mpk", "ema.mpk", "optimizer.mpk", "state.json"] {
        assert!(latest.join(file).exists(), "{file} missing");
    }
    let state = checkpoint::load_state(&latest).unwrap();
    assert_eq!(state.step, 7);
    // keep_every = 0: only the newest checkpoint stays; no temporary folders remain.
    let names: Vec<String> = std::fs::read_dir(run.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["latest", "step-00000007"]);
    let metrics = trainer::report::metrics::read(&run.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 7);
    assert!(metrics
        .iter()
        .all(|m| m.loss.is_finite() && m.grad_norm > 0.0 && m.lr > 0.0));
}

#[test]
fn a_loss_spike_stops_training_and_names_the_last_good_checkpoint() {
    let (_d, data) = data();
    // An absurd learning rate without clipping blows the loss up within a few steps.
    let mut cfg = config(30);
    cfg.lr = LrSchedule {
        max_lr: 50.0,
        warmup: 1,
        total: 30,
        decay: Decay::Constant,
    };
    cfg.grad_clip = None;
    cfg.spike_factor = 3.0;
    let diverged_at = |read_every| {
        let run = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            read_every,
            ..cfg.clone()
        };
        match train_tiny(&cfg, &data, run.path(), false).unwrap_err() {
            TrainError::Diverged {
                step, last_good, ..
            } => {
                assert!(step < 30);
                if step > 3 {
                    assert!(last_good.contains("step-"), "{last_good}");
                }
                step
            }
            other => panic!("{other}"),
        }
    };
    // Read back every 4 steps, the run still names the step whose loss spiked.
    assert_eq!(diverged_at(4), diverged_at(1));
}

#[test]
fn reading_back_every_few_steps_trains_the_same_and_stops_at_a_read() {
    let (_d, data) = data();
    let straight = tempfile::tempdir().unwrap();
    let every_step = train_tiny(&config(8), &data, straight.path(), false).unwrap();
    let metrics = |dir: &Path| trainer::report::metrics::read(&dir.join("metrics.jsonl")).unwrap();

    // Every 4 steps (and at the checkpoints, every 3): the same losses and metrics rows.
    let grouped = tempfile::tempdir().unwrap();
    let config4 = TrainConfig {
        read_every: 4,
        ..config(8)
    };
    let outcome = train_tiny(&config4, &data, grouped.path(), false).unwrap();
    assert_eq!(outcome.losses, every_step.losses);
    let (a, b) = (metrics(grouped.path()), metrics(straight.path()));
    assert_eq!(a.len(), 8);
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(
            (a.step, a.loss, a.lr, a.grad_norm),
            (b.step, b.loss, b.lr, b.grad_norm)
        );
    }

    // A stop asked for at step 2 takes effect at the next read, step 4, which is checkpointed
    // (none is due before step 100); resumed from there, the run is the straight one.
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let sparse = TrainConfig {
        checkpoint_every: 100,
        ..config4.clone()
    };
    let mut seen = Vec::new();
    let first = Job::new(
        RunConfig::new(&tiny_preset(), sparse.clone()),
        &data,
        run.clone(),
    )
    .resuming(false)
    .run_on::<B>(vec![Default::default()], |row| {
        seen.push(row.step);
        match row.step {
            2 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    })
    .unwrap();
    assert_eq!(seen, [1, 2, 3, 4]);
    assert!(first.stopped);
    assert_eq!(first.final_step, 4);
    assert!(run.latest_checkpoint().unwrap().ends_with("step-00000004"));
    let second = train_tiny(&sparse, &data, dir.path(), true).unwrap();
    assert_eq!(second.final_step, 8);
    assert_same_losses(&every_step, first, second);
}

#[test]
fn loader_reshuffles_each_epoch_and_resumes_mid_epoch() {
    let (_d, data) = data();
    let mut loader = Loader::new(&data, 9);
    let epoch0: Vec<usize> = (0..5).flat_map(|_| loader.next_batch(8).1).collect();
    let epoch1: Vec<usize> = (0..5).flat_map(|_| loader.next_batch(8).1).collect();
    assert_ne!(epoch0, epoch1);
    // An epoch visits every image once: each digit 4 times.
    let mut sorted = epoch0.clone();
    sorted.sort();
    let mut expected: Vec<usize> = (0..40).map(|i| i % 10).collect();
    expected.sort();
    assert_eq!(sorted, expected);
    let saved = loader.state();
    let next = loader.next_batch(8);
    assert_eq!(Loader::resume(&data, saved).next_batch(8), next);
    let mut image = vec![0f32; data.image_len()];
    data.image_into(0, &mut image).unwrap();
    assert!(image.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn missing_or_corrupt_mnist_files_are_clear_errors() {
    let empty = tempfile::tempdir().unwrap();
    let err = Mnist::load(empty.path(), Split::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("trainer download mnist"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    common::write_mnist(dir.path(), 10);
    common::write_idx(
        &dir.path().join("train-labels-idx1-ubyte.gz"),
        0x0801,
        &[9],
        &[1; 9],
    );
    let err = Mnist::load(dir.path(), Split::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("9 labels for 10 images"), "{err}");
    common::write_idx(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        0x0803,
        &[10, 28, 28],
        &[0; 100],
    );
    let err = Mnist::load(dir.path(), Split::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("expected 7840 data bytes"), "{err}");
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), b"not gzip").unwrap();
    assert!(Mnist::load(dir.path(), Split::Train).is_err());
}

#[test]
fn lr_finder_suggests_the_steepest_descent_before_the_minimum() {
    use trainer::train::lr_find::{suggest, LrPoint};
    // A loss that falls fastest at 1e-4, bottoms out at 1e-3, then explodes.
    let points: Vec<LrPoint> = (0..41)
        .map(|i| {
            let log_lr = -6.0 + 0.1 * i as f64;
            let loss = 1.0 - 0.8 / (1.0 + (-(log_lr + 4.0) * 4.0).exp())
                + if log_lr > -3.0 {
                    (log_lr + 3.0).powi(2) * 5.0
                } else {
                    0.0
                };
            LrPoint {
                lr: 10f64.powf(log_lr),
                loss,
                smoothed: loss,
            }
        })
        .collect();
    let lr = suggest(&points).unwrap();
    assert!((lr.log10() + 4.0).abs() <= 0.1, "{lr:e}");
    assert_eq!(suggest(&[]), None);
}

#[test]
fn lr_finder_runs_a_short_sweep() {
    use trainer::train::lr_find::{lr_find, LrFindConfig};
    let (_d, data) = data();
    let config = LrFindConfig {
        min_lr: 1e-5,
        max_lr: 1e-2,
        values: 5,
        steps_per_value: 1,
        batch_size: 4,
        seed: 0,
    };
    let points = lr_find::<B, _>(&tiny_preset(), &config, &data, &Default::default(), |_| {});
    assert!(!points.is_empty() && points.len() <= 5);
    assert!((points[0].lr - 1e-5).abs() < 1e-12);
    assert!(points.windows(2).all(|w| w[1].lr > w[0].lr));
}

#[test]
fn resuming_with_another_network_is_refused_and_the_run_kept() {
    let (_d, data) = data();
    let run = tempfile::tempdir().unwrap();
    train_tiny(&config(3), &data, run.path(), false).unwrap();
    let before = std::fs::read(run.path().join("run.json")).unwrap();
    let mut other = tiny_preset();
    other.model.depth = 2;
    let err = Job::new(
        RunConfig::new(&other, config(6)),
        &data,
        RunDir::new(run.path()),
    )
    .resuming(true)
    .run_on::<B>(vec![Default::default()], |_| ControlFlow::Continue(()))
    .unwrap_err()
    .to_string();
    assert!(err.contains("another network"), "{err}");
    assert_eq!(std::fs::read(run.path().join("run.json")).unwrap(), before);
    let latest = RunDir::new(run.path()).latest_checkpoint().unwrap();
    assert!(latest.ends_with("step-00000003"));
}

#[test]
fn a_run_can_start_from_a_weight_file_of_the_same_network() {
    let (_d, data) = data();
    let first = tempfile::tempdir().unwrap();
    train_tiny(&config(3), &data, first.path(), false).unwrap();
    let trained = trainer::export::from_run(&RunDir::new(first.path()), false).unwrap();
    let file = first.path().join("start.safetensors");
    std::fs::write(&file, trained.to_bytes().unwrap()).unwrap();

    // With a learning rate of zero one step leaves the weights as loaded: model and EMA both
    // hold the file's tensors (the EMA to rounding: it averages two equal values), not a fresh
    // random draw.
    let second = tempfile::tempdir().unwrap();
    let mut frozen = config(1);
    frozen.lr.max_lr = 0.0;
    frozen.init_weights = Some(file.clone());
    train_tiny(&frozen, &data, second.path(), false).unwrap();
    for ema in [false, true] {
        let after = trainer::export::from_run(&RunDir::new(second.path()), ema).unwrap();
        assert_eq!(after.tensors.len(), trained.tensors.len());
        for (name, tensor) in &trained.tensors {
            let got = &after.tensors[name].data;
            assert_eq!(got.len(), tensor.data.len(), "{name}");
            for (a, b) in got.iter().zip(&tensor.data) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                    "{name} (ema: {ema}): {a} after, {b} in the file"
                );
            }
        }
    }

    // Weights of another network are refused before any step.
    let mut other = tiny_preset();
    other.model = DitConfig::new(28, 1, 7, 48, 1, 2, 10).with_class_dropout(0.1);
    let elsewhere = tempfile::tempdir().unwrap();
    let err = Job::new(
        RunConfig::new(&other, frozen.clone()),
        &data,
        RunDir::new(elsewhere.path()),
    )
    .resuming(false)
    .run_on::<B>(vec![Default::default()], |_| ControlFlow::Continue(()))
    .unwrap_err();
    assert!(
        err.to_string().contains("not the one this run trains"),
        "{err}"
    );
}

#[test]
fn a_time_budget_fits_the_schedule_and_keeps_its_last_step() {
    // (The timing rules themselves are unit-tested on synthetic clocks in train/budget.rs.)
    let (_d, data) = data();
    let most = 1_000_000;
    let timed = |budget: f64| {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            time_budget: Some(budget),
            checkpoint_every: 1_000,
            ..config(most)
        };
        let outcome = train_tiny(&config, &data, dir.path(), false).unwrap();
        let run = RunDir::new(dir.path());
        let recorded = RunConfig::read(&run).unwrap().train;
        let latest = run.latest_checkpoint().unwrap();
        let state = checkpoint::load_state(&latest).unwrap();
        let metrics = trainer::report::metrics::read(&dir.path().join("metrics.jsonl")).unwrap();
        (outcome, recorded, state.step, metrics, dir)
    };

    // A budget spent by the first step: one step, and the checkpoint and run.json say so.
    let (outcome, recorded, saved, metrics, _dir) = timed(1e-6);
    assert_eq!(outcome.final_step, 1);
    assert_eq!((recorded.steps, recorded.lr.total, saved), (1, 1, 1));
    assert_eq!(metrics.len(), 1);

    // A budget of a few seconds: far fewer steps than --steps, the schedule cut to them (every
    // learning rate after the cut is the shortened cosine's, ending near 0), all kept.
    let (outcome, recorded, saved, metrics, _dir) = timed(4.0);
    let end = outcome.final_step;
    assert!((2..most).contains(&end), "stopped at {end}");
    assert_eq!((recorded.steps, recorded.lr.total, saved), (end, end, end));
    assert_eq!(metrics.len() as u64, end);
    // Past the warm-up, each step's rate is the long schedule's until the cut (at step 100 at the
    // latest) and the short one's from there on.
    let (long, short) = (config(most).lr, recorded.lr);
    let on = |m: &trainer::report::metrics::MetricsRow, s: &LrSchedule| {
        (m.lr - s.lr(m.step - 1)).abs() <= 1e-12
    };
    let after_warmup = || metrics.iter().filter(|m| m.step > short.warmup + 1);
    let cut = after_warmup()
        .take_while(|m| on(m, &long) && !on(m, &short))
        .count();
    assert!(cut <= 100, "cut after {cut} steps past the warm-up");
    assert!(after_warmup().skip(cut).all(|m| on(m, &short)));
    assert!(after_warmup().skip(cut).count() > 0);
    let schedule = short;
    assert!(metrics.last().unwrap().lr < 0.05 * schedule.max_lr);
}
