//! Data-parallel training on burn-flex devices (as burn-collective's own tests run): 2 devices of
//! 4 images take the steps 1 device of 8 takes, a resume in the middle continues exactly, micro-
//! batches compose with it, and a failing device stops the run with a message (several machines:
//! `machines.rs`).

use crate::common;

use std::ops::ControlFlow;
use std::path::Path;

use burn::backend::Autodiff;
use dit_web::{DitConfig, Preset};
use trainer::data::mnist::{Mnist, Split};
use trainer::report::metrics::{read, MetricsRow};
use trainer::run_dir::RunDir;
use trainer::train::config::{RunConfig, TrainConfig};
use trainer::train::parallel::Fault;
use trainer::train::parallel::Topology;
use trainer::train::{Job, TrainError, TrainOutcome};
use trainer::Cpu;

type B = Autodiff<Cpu>;

fn preset() -> Preset {
    let mut preset = Preset::mnist_cpu();
    preset.model = DitConfig::new(28, 1, 7, 32, 1, 2, 10).with_class_dropout(0.1);
    preset
}

fn config(steps: u64, micro_batch: usize) -> TrainConfig {
    TrainConfig {
        micro_batch,
        ..common::tiny_config(steps)
    }
}

fn devices(n: usize) -> Topology {
    Topology {
        devices: (0..n).collect(),
        ..Default::default()
    }
}

/// Trains `config` on `n` devices into `dir`; `stop_at` asks to stop after that step.
fn run(
    config: &TrainConfig,
    n: usize,
    data: &Mnist,
    dir: &Path,
    resume: bool,
    stop_at: u64,
) -> Result<TrainOutcome, TrainError> {
    run_on(config, &devices(n), None, data, dir, resume, stop_at)
}

fn run_on(
    config: &TrainConfig,
    topology: &Topology,
    fault: Option<Fault>,
    data: &Mnist,
    dir: &Path,
    resume: bool,
    stop_at: u64,
) -> Result<TrainOutcome, TrainError> {
    let n = topology.devices.len();
    let mut job = Job::new(
        RunConfig::new(&preset(), config.clone()),
        data,
        RunDir::new(dir),
    )
    .resuming(resume)
    .on(topology.clone());
    job.fault = fault;
    job.run_on::<B>(vec![Default::default(); n], |row| {
        match row.step >= stop_at {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    })
}

fn data() -> (tempfile::TempDir, Mnist) {
    let dir = tempfile::tempdir().unwrap();
    common::write_mnist(dir.path(), 40);
    let mnist = Mnist::load(dir.path(), Split::Train).unwrap();
    (dir, mnist)
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
        "{what}: {a} against {b}"
    );
}

/// Loss and gradient norm of every step, and every weight of the latest checkpoint, agree.
pub fn assert_same_run(one: &Path, many: &Path) {
    let (a, b): (Vec<MetricsRow>, Vec<MetricsRow>) = (
        read(&one.join("metrics.jsonl")).unwrap(),
        read(&many.join("metrics.jsonl")).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        close(x.loss, y.loss, &format!("loss at step {}", x.step));
        close(
            x.grad_norm,
            y.grad_norm,
            &format!("gradient norm at step {}", x.step),
        );
    }
    for ema in [false, true] {
        let wa = trainer::export::from_run(&RunDir::new(one), ema).unwrap();
        let wb = trainer::export::from_run(&RunDir::new(many), ema).unwrap();
        assert_eq!(wa.meta.step, wb.meta.step);
        for (name, t) in &wa.tensors {
            let u = &wb.tensors[name];
            for (x, y) in t.data.iter().zip(&u.data) {
                close(*x as f64, *y as f64, &format!("{name} (ema {ema})"));
            }
        }
    }
}

#[test]
fn two_devices_of_four_take_the_steps_of_one_device_of_eight() {
    let (_d, data) = data();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&config(3, 0), 1, &data, one.path(), false, u64::MAX).unwrap();
    let outcome = run(&config(3, 0), 2, &data, two.path(), false, u64::MAX).unwrap();
    assert_eq!(outcome.final_step, 3);
    assert_same_run(one.path(), two.path());
    // With micro-batches of 2 on each device, the same again.
    let micro = tempfile::tempdir().unwrap();
    run(&config(3, 2), 2, &data, micro.path(), false, u64::MAX).unwrap();
    assert_same_run(one.path(), micro.path());
}

#[test]
fn a_data_parallel_run_resumed_in_the_middle_is_the_straight_run() {
    let (_d, data) = data();
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&config(6, 0), 2, &data, straight.path(), false, u64::MAX).unwrap();
    let first = run(&config(6, 0), 2, &data, split.path(), false, 3).unwrap();
    assert!(first.stopped);
    assert_eq!(first.final_step, 3);
    let second = run(&config(6, 0), 2, &data, split.path(), true, u64::MAX).unwrap();
    assert_eq!(second.final_step, 6);
    assert_same_run(straight.path(), split.path());
}

#[test]
fn a_failing_device_stops_the_run_with_a_message_and_keeps_the_last_checkpoint() {
    let (_d, data) = data();
    let dir = tempfile::tempdir().unwrap();
    // Device 1 fails in its fifth step; the checkpoint of step 3 is the last good one.
    let fault = Fault { device: 1, step: 5 };
    let err = run_on(
        &config(6, 0),
        &devices(2),
        Some(fault),
        &data,
        dir.path(),
        false,
        u64::MAX,
    )
    .expect_err("the run fails")
    .to_string();
    assert!(err.contains("device 1") && err.contains("step 5"), "{err}");
    let run_dir = RunDir::new(dir.path());
    assert_eq!(
        RunDir::checkpoint_step(&run_dir.latest_checkpoint().unwrap()),
        Some(3)
    );
    assert!(trainer::export::from_run(&run_dir, true).is_ok());
    // The process can train again afterwards.
    let again = tempfile::tempdir().unwrap();
    run(&config(2, 0), 2, &data, again.path(), false, u64::MAX).unwrap();
}
