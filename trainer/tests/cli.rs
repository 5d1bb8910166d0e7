//! The `trainer` binary end to end on tiny data: train -> checkpoint -> resume -> export -> generate.

use crate::common::{self, ok};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("trainer runs")
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A temporary folder with `images` generated MNIST digits in `data/`, and the paths of a run
/// folder and an output folder inside it (not yet created).
fn workspace(images: usize) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::write_mnist(&data, images);
    let (run, out) = (work.path().join("run"), work.path().join("out"));
    (work, data, run, out)
}

/// `train`'s options for the small preset on `data` into `run`, a few images a step.
fn small_run<'a>(data: &'a str, run: &'a str) -> [&'a str; 8] {
    [
        "--preset",
        "mnist-cpu",
        "--data",
        data,
        "--run",
        run,
        "--batch-size",
        "4",
    ]
}

#[test]
fn train_resume_export_generate() {
    let (work, data, run, out) = workspace(20);
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let common = [
        &small_run(data_s, run_s)[..],
        &[
            "--checkpoint-every",
            "1",
            "--sample-every",
            "2",
            "--ema-warmup",
        ],
    ]
    .concat();

    ok(trainer(&[&["train", "--steps", "2"], &common[..]].concat()));
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoints/latest"))
            .unwrap()
            .trim(),
        "step-00000002"
    );
    // Resume to a later total: continues from step 2, not from scratch.
    ok(trainer(
        &[&["train", "--steps", "3", "--resume"], &common[..]].concat(),
    ));
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoints/latest"))
            .unwrap()
            .trim(),
        "step-00000003"
    );
    assert_eq!(
        files(&run.join("samples")),
        ["step-00000002.png", "step-00000003.png"]
    );
    // The pictures for people are redrawn with every grid.
    for picture in ["loss.png", "progress.gif"] {
        assert!(
            std::fs::metadata(run.join(picture)).unwrap().len() > 100,
            "{picture}"
        );
    }
    let gif = std::fs::read(run.join("progress.gif")).unwrap();
    assert_eq!(&gif[..6], b"GIF89a");

    let weights = work.path().join("mnist.safetensors");
    // A card left by an earlier file of that name (its guidance, its measured quality).
    let card = work.path().join("mnist.card.json");
    std::fs::write(
        &card,
        r#"{"guidance": 1.25, "quality": "99 % of an older model"}"#,
    )
    .unwrap();
    let text = ok(trainer(&[
        "export",
        "--run",
        run_s,
        "--quant",
        "int8",
        "--out",
        weights.to_str().unwrap(),
    ]));
    assert!(
        text.contains("EMA weights from step 3") && text.contains("largest quantization error"),
        "{text}"
    );
    let file = dit_web::weights::WeightFile::from_bytes(&std::fs::read(&weights).unwrap()).unwrap();
    assert_eq!(
        (file.meta.step, file.meta.ema, file.meta.quantization),
        (3, true, dit_web::weights::Quantization::Int8)
    );
    // The card now describes this file: the run trained the null label by default, so the page
    // starts it guided; the old card's figures are gone.
    assert!(file.meta.model.has_null_label());
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(&card).unwrap()).unwrap();
    assert_eq!(card["guidance"], 2.0);
    assert_eq!(card["trained"], "trained 3 steps");
    assert!(card.get("quality").is_none(), "{card}");
    // A weight file stored again as int4 keeps its metadata.
    let int4 = work.path().join("mnist-int4.safetensors");
    let text = ok(trainer(&[
        "export",
        "--weights",
        weights.to_str().unwrap(),
        "--quant",
        "int4",
        "--out",
        int4.to_str().unwrap(),
    ]));
    assert!(text.contains("Int4, EMA weights from step 3"), "{text}");
    let file = dit_web::weights::WeightFile::from_bytes(&std::fs::read(&int4).unwrap()).unwrap();
    assert_eq!(
        (file.meta.step, file.meta.quantization),
        (3, dit_web::weights::Quantization::Int4)
    );

    ok(trainer(&[
        "generate",
        "--weights",
        weights.to_str().unwrap(),
        "--labels",
        "3",
        "7",
        "--steps",
        "4",
        "--cfg",
        "2",
        "--cfg-interval",
        "1,60",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        files(&out),
        ["0000_label-3.png", "0001_label-7.png", "grid.png"]
    );
    // Autoguidance by a weaker model of the same labels and schedule (here the int4 copy).
    let guided = work.path().join("guided");
    let generate_guided = |guide: &str| {
        trainer(&[
            "generate",
            "--weights",
            weights.to_str().unwrap(),
            "--guide-weights",
            guide,
            "--autoguidance",
            "2",
            "--labels",
            "3",
            "--steps",
            "4",
            "--out",
            guided.to_str().unwrap(),
        ])
    };
    ok(generate_guided(int4.to_str().unwrap()));
    assert_eq!(files(&guided), ["0000_label-3.png", "grid.png"]);
    let missing = generate_guided("/nonexistent-guide.safetensors");
    assert!(!missing.status.success());
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(text.contains("/nonexistent-guide.safetensors"), "{text}");
    // From the run folder directly (raw weights) too.
    let out2 = work.path().join("out2");
    ok(trainer(&[
        "generate",
        "--run",
        run_s,
        "--raw",
        "--labels",
        "0",
        "--steps",
        "3",
        "--out",
        out2.to_str().unwrap(),
    ]));
    assert_eq!(files(&out2), ["0000_label-0.png", "grid.png"]);
    // Step counts the schedule (mnist-cpu: 400 timesteps, all noisy) cannot give are refused,
    // and nothing is written.
    for (sampler, steps, expected) in [
        (
            "dpm++",
            "0",
            "0 sampler steps: this model has 400 noisy timesteps, so give 1..=400 steps",
        ),
        (
            "dpm++",
            "100000000",
            "100000000 sampler steps: this model has 400 noisy timesteps",
        ),
        ("ddpm", "401", "give 1..=400 steps (or 0: every timestep)"),
    ] {
        let out3 = work.path().join(format!("out3-{sampler}-{steps}"));
        let refused = trainer(&[
            "generate",
            "--run",
            run_s,
            "--labels",
            "0",
            "--sampler",
            sampler,
            "--steps",
            steps,
            "--out",
            out3.to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "--steps {steps} succeeded");
        assert!(text.contains(expected), "--steps {steps}: {text}");
        assert!(!out3.exists(), "--steps {steps} wrote {}", out3.display());
    }
}

/// SIGTERM during training (Ctrl-C's SIGINT takes the same path) stops after the step in flight,
/// checkpointed there although it is no multiple of `--checkpoint-every`, and `--resume` goes on.
/// The signal comes twice in a row, as GNU `timeout` sends it (to the process and to its group):
/// that is still one request to stop, not a second Ctrl-C that ends the run at once.
#[cfg(unix)]
#[test]
fn an_interrupted_run_keeps_its_last_step() {
    use std::time::{Duration, Instant};
    let (_work, data, run, _out) = workspace(20);
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let common = [
        &["train"][..],
        &small_run(data_s, run_s),
        &["--checkpoint-every", "1000", "--sample-every", "0"],
    ]
    .concat();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(&common)
        .args(["--steps", "100000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run.join("metrics.jsonl");
    let rows = || {
        std::fs::read_to_string(&metrics)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while rows() < 2 {
        assert!(start.elapsed() < Duration::from_secs(300), "no steps");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..2 {
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }
    // It must end by itself, soon: a run that ignored the signal is killed and fails the test.
    let asked = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if asked.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the run went on after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{text}");
    let steps = rows();
    assert!(
        text.contains(&format!("stopped at step {steps} on a signal")),
        "{text}"
    );
    let latest = || {
        std::fs::read_to_string(run.join("checkpoints/latest"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(latest(), format!("step-{steps:08}"));

    let more = (steps + 1).to_string();
    ok(trainer(
        &[&common[..], &["--steps", &more, "--resume"]].concat(),
    ));
    assert_eq!(latest(), format!("step-{:08}", steps + 1));
    assert_eq!(rows(), steps + 1);
}

/// The paper's other designs are a flag away, and the choice travels: run.json -> weight file.
#[test]
fn a_conditioning_and_flavour_chosen_at_train_time_reach_the_weight_file() {
    let (work, data, run, out) = workspace(8);
    let run_s = run.to_str().unwrap();
    ok(trainer(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--run",
        run_s,
        "--conditioning",
        "cross-attn",
        "--flavour",
        "paper",
        "--hidden-size",
        "32",
        "--depth",
        "2",
        "--num-heads",
        "2",
        "--patch-size",
        "7",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--sample-every",
        "0",
    ]));
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    let model = &run_json["model"];
    assert_eq!(
        (
            &model["conditioning"],
            &model["flavour"],
            &model["hidden_size"],
            &model["depth"],
            &model["num_heads"],
            &model["patch_size"],
        ),
        (
            &"cross-attn".into(),
            &"paper".into(),
            &32.into(),
            &2.into(),
            &2.into(),
            &7.into()
        )
    );

    let weights = work.path().join("variant.safetensors");
    let weights_s = weights.to_str().unwrap();
    ok(trainer(&[
        "export", "--run", run_s, "--quant", "int8", "--out", weights_s,
    ]));
    let file = dit_web::weights::WeightFile::from_bytes(&std::fs::read(&weights).unwrap()).unwrap();
    let expected = dit_web::DitConfig {
        conditioning: dit_web::Conditioning::CrossAttn,
        flavour: dit_web::Flavour::Paper,
        hidden_size: 32,
        depth: 2,
        num_heads: 2,
        patch_size: 7,
        ..dit_web::Preset::mnist_cpu().model
    };
    assert_eq!(file.meta.model, expected);
    assert!(file.tensors.keys().any(|name| name.contains("cross_attn")));
    ok(trainer(&[
        "generate",
        "--weights",
        weights_s,
        "--labels",
        "5",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(files(&out), ["0000_label-5.png", "grid.png"]);
}

#[test]
fn bad_input_gets_a_clear_message_and_a_failing_exit_code() {
    let work = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 16] = [
        (
            &["train", "--data", "/nonexistent", "--run", "/tmp/x"],
            "trainer download mnist",
        ),
        (
            &[
                "train", "--preset", "imagenet", "--data", ".", "--run", "/tmp/x",
            ],
            "expected one of: mnist, mnist-cpu, celeba",
        ),
        (
            &[
                "generate",
                "--weights",
                "/nonexistent.safetensors",
                "--labels",
                "1",
            ],
            "/nonexistent.safetensors",
        ),
        (
            &[
                "export",
                "--run",
                work.path().to_str().unwrap(),
                "--out",
                "/tmp/x.safetensors",
            ],
            "run folder",
        ),
        (&["generate", "--labels", "1"], "--weights"),
        (
            &["eval", "--weights", "x.safetensors", "--per-class", "0"],
            "`0` is not a positive whole number",
        ),
        (
            &[
                "train",
                "--conditioning",
                "film",
                "--data",
                ".",
                "--run",
                "/tmp/x",
            ],
            "unknown conditioning `film` (expected adaln-zero, adaln, cross-attn or in-context)",
        ),
        (
            &[
                "train",
                "--num-heads",
                "5",
                "--data",
                ".",
                "--run",
                "/tmp/x",
            ],
            "the network asked for is not valid: hidden_size 192 is not divisible by num_heads 5",
        ),
        (
            &["lr-find", "--depth", "0", "--data", ".", "--out", "/tmp/x"],
            "the network asked for is not valid: depth must be positive",
        ),
        (
            &[
                "generate",
                "--weights",
                "x",
                "--labels",
                "1",
                "--batch",
                "0",
            ],
            "--batch",
        ),
        (
            &[
                "generate",
                "--weights",
                "x",
                "--labels",
                "1",
                "--cfg-interval",
                "300,100",
            ],
            "`300,100` is not an interval of timesteps LO,HI with LO <= HI",
        ),
        (
            &[
                "generate",
                "--weights",
                "x",
                "--labels",
                "1",
                "--autoguidance",
                "2",
            ],
            "--guide-weights",
        ),
        (
            &[
                "generate",
                "--labels",
                "1",
                "--sampler",
                "ddim",
                "--eta",
                "1.5",
            ],
            "`1.5` is not a number in 0..=1",
        ),
        (
            &["generate", "--labels", "1", "--ddpm-variance", "huge"],
            "expected small or large",
        ),
        (
            &[
                "train",
                "--time-budget",
                "0",
                "--data",
                ".",
                "--run",
                "/tmp/x",
            ],
            "`0` is not a positive number of seconds",
        ),
        // This build has no CUDA: one line that says how to get it.
        #[cfg(not(feature = "cuda"))]
        (
            &["check-step", "--backend", "cuda"],
            "built without cuda: cargo build -p trainer --release --features cuda",
        ),
        #[cfg(feature = "cuda")]
        (&["check-step", "--preset", "none"], "unknown preset"),
    ];
    for (args, expected) in cases {
        let out = trainer(args);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}

#[test]
fn check_step_compares_two_backends_and_micro_batches() {
    let out = ok(trainer(&[
        "check-step",
        "--preset",
        "mnist-cpu",
        "--batch-size",
        "4",
        "--backend",
        "cpu",
        "--micro-batch",
        "3",
        "--reference",
        "ndarray",
    ]));
    assert!(out.contains("cpu (micro-batch 3) matches ndarray"), "{out}");
    // A tolerance nothing can meet fails with the worst error named.
    let out = trainer(&[
        "check-step",
        "--preset",
        "mnist-cpu",
        "--batch-size",
        "2",
        "--tolerance",
        "0",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("worst relative error"), "{text}");
}

#[test]
fn the_binary_needs_no_system_font_libraries() {
    // plotters draws text with an embedded font: no fontconfig or freetype in the dynamic
    // section (their names would appear among the needed libraries' strings).
    let binary = std::fs::read(env!("CARGO_BIN_EXE_trainer")).unwrap();
    for library in ["libfontconfig.so", "libfreetype.so"] {
        assert!(
            !binary
                .windows(library.len())
                .any(|w| w == library.as_bytes()),
            "the trainer links {library}"
        );
    }
}

#[test]
fn bench_prints_one_json_line_per_run() {
    // `trainer bench` of the small preset, 2 images, one warm-up step, then `extra`.
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--preset",
            "mnist-cpu",
            "--batch-size",
            "2",
            "--warmup",
            "1",
        ];
        args.extend(extra);
        ok(trainer(&args))
    };
    let small_in_context = [
        "--sample",
        "--conditioning",
        "in-context",
        "--hidden-size",
        "96",
    ];
    for extra in [&[][..], &small_in_context[..]] {
        let out = bench(&[&["--steps", "2"][..], extra].concat());
        let json: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert_eq!(
            json["kind"],
            if extra.is_empty() { "train" } else { "sample" }
        );
        assert_eq!(
            (json["batch"].as_u64(), json["steps"].as_u64()),
            (Some(2), Some(2))
        );
        assert!(json["images_per_sec"].as_f64().unwrap() > 0.0, "{json}");
        assert_eq!(json["backend"], "cpu");
        // The network as timed, flags included.
        let mut network = dit_web::Preset::mnist_cpu().model;
        if !extra.is_empty() {
            network.conditioning = dit_web::Conditioning::InContext;
            network.hidden_size = 96;
        }
        assert_eq!(json["params"].as_u64(), Some(network.num_params() as u64));
        assert_eq!(json["conditioning"], network.conditioning.name());
        // Training reads the loss back every step on the CPU unless told otherwise.
        let read_every = if extra.is_empty() { Some(1) } else { None };
        assert_eq!(json["read_every"].as_u64(), read_every);
    }

    // Several read-back intervals: one timing each, in the order given.
    let out = bench(&["--steps", "3", "--read-every", "1,3"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let read: Vec<_> = lines.iter().map(|j| j["read_every"].as_u64()).collect();
    assert_eq!(read, [Some(1), Some(3)]);
    assert!(lines
        .iter()
        .all(|j| j["steps"].as_u64() == Some(3) && j["images_per_sec"].as_f64().unwrap() > 0.0));

    // A profile: each phase of a step timed alone, in the order a step runs them.
    let out = bench(&["--profile", "--steps", "2"]);
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(json["kind"], "profile");
    let phases = json["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["batch", "forward", "backward", "clip", "optimizer", "ema"]
    );
    let ms: Vec<f64> = phases.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(ms.iter().all(|&ms| ms > 0.0), "{json}");
    let total = json["synced_step_ms"].as_f64().unwrap();
    assert!((ms.iter().sum::<f64>() - total).abs() < 1e-6 * total);
    // mnist-cpu: 49 tokens of width 192, MLP ratio 4.
    assert_eq!(json["matmul"][0], serde_json::json!([98, 192, 768]));
    assert!(json["matmul"][2].as_f64().unwrap() > 0.0);
    assert!(json["inference_forward_ms"].as_f64().unwrap() > 0.0);

    let refused = trainer(&["bench", "--read-every", "0"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--read-every"), "{err}");
}

#[test]
fn classifier_and_eval_score_a_model_per_digit() {
    let (work, data, run, _) = workspace(40);
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    ok(trainer(
        &[&["train", "--steps", "2"], &small_run(data_s, run_s)[..]].concat(),
    ));
    let weights = work.path().join("tiny.safetensors");
    let weights_s = weights.to_str().unwrap();
    ok(trainer(&["export", "--run", run_s, "--out", weights_s]));
    let classifier = work.path().join("classifier.mpk");
    let classifier_s = classifier.to_str().unwrap();
    let text = ok(trainer(&[
        "classifier",
        "--data",
        data_s,
        "--out",
        classifier_s,
        "--epochs",
        "2",
    ]));
    assert!(text.contains("test accuracy"), "{text}");

    let json = work.path().join("eval.json");
    let text = ok(trainer(&[
        "eval",
        "--weights",
        weights_s,
        "--data",
        data_s,
        "--classifier",
        classifier_s,
        "--per-class",
        "2",
        "--steps",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(
        text.contains("precision") && text.contains("least accurate digit"),
        "{text}"
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["images"].as_str().unwrap()).collect();
    assert_eq!(names[..2], ["real test digits", "real training digits"]);
    assert!(names[2].contains("tiny.safetensors"), "{names:?}");
    for row in &rows {
        let scores = &row["scores"];
        assert_eq!(scores["images"], 20);
        assert!(scores["fid"].as_f64().unwrap().is_finite(), "{row}");
        for share in ["precision", "recall"] {
            let v = scores[share].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{share}: {row}");
        }
        // Two images of every digit: the overall accuracy is the mean of the ten.
        let per_digit: Vec<f64> = scores["class_accuracy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_f64().expect("every digit has images"))
            .collect();
        assert_eq!(per_digit.len(), 10);
        assert!(
            per_digit.iter().all(|a| [0.0, 0.5, 1.0].contains(a)),
            "{row}"
        );
        let mean = per_digit.iter().sum::<f64>() / 10.0;
        assert!(
            (scores["accuracy"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{row}"
        );
    }
}
