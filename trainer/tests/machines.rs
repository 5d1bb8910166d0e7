//! Several machines under MPI, as two ranks of `mpirun` on this machine over the loopback
//! interface: they train as one process of two devices does, and as one device of the whole
//! batch; they resume together; a rank started with another network is refused; a rank that dies
//! or hangs ends the job with a message and leaves the last checkpoint whole.
//!
//! Needs Open MPI's `mpirun` on the PATH (`make test` installs it).

use crate::common::{self, ok, output_text};
use crate::parallel::assert_same_run;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `train`'s options for a tiny network on `data` into `run`.
fn train_args(data: &Path, run: &Path, steps: u64) -> Vec<String> {
    let steps = steps.to_string();
    [
        "train",
        "--preset",
        "mnist-cpu",
        "--hidden-size",
        "32",
        "--depth",
        "1",
        "--num-heads",
        "2",
        "--patch-size",
        "7",
        "--data",
        data.to_str().unwrap(),
        "--steps",
        &steps,
        "--batch-size",
        "8",
        "--sample-every",
        "0",
        "--grad-clip",
        "1",
        "--checkpoint-every",
        "1",
        "--keep-every",
        "1",
        "--run",
        run.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `mpirun` with two slots on this machine (oversubscribed: CI machines have two cores), TCP
/// over the loopback interface, allowed to run as root (CI containers).
fn mpirun() -> Command {
    let mut command = Command::new("mpirun");
    command
        .args(["--oversubscribe", "--mca", "btl", "self,tcp"])
        .args(["--mca", "btl_tcp_if_include", "lo"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    command
}

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");

/// Two ranks of `args`.
fn two_ranks(args: &[String]) -> Output {
    mpirun()
        .args(["-np", "2", TRAINER])
        .args(args)
        .output()
        .expect("mpirun runs (Open MPI installed?)")
}

fn one_process(args: &[String]) {
    ok(Command::new(TRAINER).args(args).output().unwrap());
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::write_mnist(&data, 20);
    (work, data)
}

#[test]
fn two_ranks_train_as_two_devices_and_as_one_device_of_the_whole_batch() {
    let (work, data) = workspace();
    let ranks = work.path().join("ranks");
    ok(two_ranks(&train_args(&data, &ranks, 3)));
    let single = work.path().join("single");
    one_process(&train_args(&data, &single, 3));
    let devices = work.path().join("devices");
    let mut args = train_args(&data, &devices, 3);
    args.extend(["--devices".into(), "2".into()]);
    one_process(&args);
    let rows = trainer::report::metrics::read(&ranks.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 3);
    // Loss, gradient norm and every raw and EMA weight within 1e-5.
    assert_same_run(&single, &ranks);
    assert_same_run(&devices, &ranks);
}

#[test]
fn two_ranks_resume_together_where_the_last_checkpoint_is() {
    let (work, data) = workspace();
    let ranks = work.path().join("ranks");
    ok(two_ranks(&train_args(&data, &ranks, 4)));
    // Back to step 2, as if the job had ended there.
    let checkpoints = ranks.join("checkpoints");
    for step in [3, 4] {
        std::fs::remove_dir_all(checkpoints.join(format!("step-{step:08}"))).unwrap();
    }
    std::fs::write(checkpoints.join("latest"), "step-00000002").unwrap();
    let mut args = train_args(&data, &ranks, 4);
    args.push("--resume".into());
    ok(two_ranks(&args));
    // The resumed job wrote steps 3 and 4 again, and nothing more.
    let lines = std::fs::read_to_string(ranks.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6, "{lines}");
    let straight = work.path().join("straight");
    one_process(&train_args(&data, &straight, 4));
    assert_same_run(&straight, &ranks);
}

#[test]
fn a_rank_started_with_another_network_is_refused() {
    let (work, data) = workspace();
    let run = work.path().join("run");
    let mut other = train_args(&data, &run, 3);
    let at = other.iter().position(|a| a == "--hidden-size").unwrap();
    other[at + 1] = "64".into();
    // One rank of each command (MPI's `:` between them).
    let out = mpirun()
        .args(["-np", "1", TRAINER])
        .args(train_args(&data, &run, 3))
        .args([":", "-np", "1", TRAINER])
        .args(&other)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("rank 1 runs another network"),
        "no rank named:\n{text}"
    );
    // No step was taken.
    assert!(!run.join("checkpoints").exists(), "{text}");
}

/// Starts a long two-rank job (a checkpoint every step), waits until it has taken 5 steps, and
/// sends `signal` to rank 1's process. Returns the job's output, how long it took to end after
/// that, and the run folder.
fn harm_rank_one(signal: &str, extra: &[&str]) -> (Output, Duration, tempfile::TempDir, PathBuf) {
    let (work, data) = workspace();
    let run = work.path().join("run");
    let mut args = train_args(&data, &run, 100_000);
    args.extend(extra.iter().map(|s| s.to_string()));
    let job = mpirun()
        .args(["-np", "2", TRAINER])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run.join("metrics.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 5 {
        assert!(started.elapsed() < Duration::from_secs(120), "no steps");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rank_one = rank_process(&run, 1).expect("rank 1's process");
    let sent = Command::new("kill")
        .args([signal, &rank_one.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let harmed = Instant::now();
    let out = wait_or_kill(job, Duration::from_secs(120));
    let took = harmed.elapsed();
    // A stopped rank that outlived its job ends here.
    let _ = Command::new("kill")
        .args(["-KILL", &rank_one.to_string()])
        .stderr(Stdio::null())
        .status();
    (out, took, work, run)
}

/// The process id of the trainer that MPI started as `rank` of the job writing to `run`.
fn rank_process(run: &Path, rank: u32) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    let run = run.to_str().unwrap();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_job = args.first()?.ends_with(b"trainer") && args.contains(&run.as_bytes());
            let is_rank = environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes());
            (is_job && is_rank).then_some(pid)
        })
}

/// The job's output once it ends; fails the test (after killing it) if it outlasts `limit`.
fn wait_or_kill(mut job: Child, limit: Duration) -> Output {
    let started = Instant::now();
    while job.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = job.kill();
            panic!(
                "the job still ran {} s after a rank failed",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    job.wait_with_output().unwrap()
}

/// The run's latest checkpoint exports (it is whole).
fn assert_last_checkpoint_whole(run: &Path) {
    let run = trainer::run_dir::RunDir::new(run);
    for ema in [false, true] {
        let weights = trainer::export::from_run(&run, ema).unwrap();
        assert!(weights.meta.step >= 5, "{}", weights.meta.step);
    }
}

#[test]
fn a_rank_that_dies_ends_the_job_and_the_last_checkpoint_stays_whole() {
    let (out, took, _work, run) = harm_rank_one("-KILL", &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("rank 1"),
        "the dead rank is not named:\n{text}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}:\n{text}");
    assert_last_checkpoint_whole(&run);
}

#[test]
fn a_rank_that_hangs_ends_the_job_after_the_peer_timeout() {
    let (out, took, _work, run) = harm_rank_one("-STOP", &["--peer-timeout", "2"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("rank 0 waited 2 s for the other machines"),
        "no message from rank 0:\n{text}"
    );
    assert!(took >= Duration::from_secs(2), "{took:?}:\n{text}");
    assert_last_checkpoint_whole(&run);
}
