//! `import-torch` against a checkpoint written by PyTorch (fixtures/make_torch_ckpt.py, committed,
//! so this runs without PyTorch): the converted model must reproduce PyTorch's outputs, and every
//! malformed input must give a clear error.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use dit_web::config::Convention;
use dit_web::weights::WeightFile;
use dit_web::Preset;
use trainer::import_torch::save::Pickle;
use trainer::import_torch::{
    convert, convert_state, import, Checkpoint, ImportError, ImportOptions,
};

type B = burn::backend::NdArray<f32>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[derive(serde::Deserialize)]
struct Expected {
    step: u64,
    x_shape: [usize; 4],
    x: Vec<f32>,
    t: Vec<f32>,
    y: Vec<i64>,
    ema_out: Vec<f32>,
    raw_out: Vec<f32>,
}

fn expected() -> Expected {
    serde_json::from_slice(&std::fs::read(fixture("tiny_dit.json")).unwrap()).unwrap()
}

/// Runs the imported network on the fixture's inputs and returns the largest difference from
/// PyTorch's outputs.
fn max_diff(file: WeightFile, want: &[f32]) -> f32 {
    let e = expected();
    let device = Default::default();
    let (model, _) = file.into_model::<B>(&device).expect("loads");
    let n = e.t.len();
    let x = Tensor::<B, 4>::from_data(TensorData::new(e.x.clone(), e.x_shape), &device);
    let t = Tensor::<B, 1>::from_data(TensorData::new(e.t.clone(), [n]), &device);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(e.y.clone(), [n]), &device);
    let out = model
        .forward(x, t, y)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    assert_eq!(out.len(), want.len());
    out.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn no_preset() -> ImportOptions {
    ImportOptions::default()
}

#[test]
fn ema_and_raw_weights_reproduce_pytorch() {
    let e = expected();
    for (raw, want) in [(false, &e.ema_out), (true, &e.raw_out)] {
        let options = ImportOptions { raw, ..no_preset() };
        let imported = import(&fixture("tiny_dit.pt"), &options).unwrap();
        let meta = &imported.file.meta;
        assert_eq!(meta.ema, !raw);
        assert_eq!(meta.step, e.step);
        assert_eq!(
            (
                meta.model.input_size,
                meta.model.patch_size,
                meta.model.hidden_size
            ),
            (8, 2, 16)
        );
        assert_eq!((meta.model.depth, meta.model.num_heads), (2, 2));
        assert_eq!(meta.model.num_classes, 3);
        assert!(meta.model.has_null_label());
        assert_eq!(meta.schedule.num_timesteps, 400);
        assert_eq!(meta.schedule.convention, Convention::Shifted);
        assert!(imported.position_table_diff < 1e-5);
        let diff = max_diff(imported.file, want);
        eprintln!("raw = {raw}: max |ours - torch| = {diff:.2e}");
        assert!(diff < 1e-4, "raw = {raw}: max |ours - torch| = {diff}");
    }
    // The two states really differ, so the test tells them apart.
    let spread = e
        .ema_out
        .iter()
        .zip(&e.raw_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(spread > 1e-2);
}

#[test]
fn cli_writes_a_loadable_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["import-torch", fixture("tiny_dit.pt").to_str().unwrap()])
        .args(["--quant", "f32", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    assert!(text.contains("ema_state from step 1234"), "{text}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["tiny.safetensors"], "no temporary file left");
    let file = WeightFile::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    let diff = max_diff(file, &expected().ema_out);
    assert!(diff < 1e-4, "{diff}");

    // int8 goes through the export path and still loads.
    let q = dir.path().join("tiny-int8.safetensors");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "import-torch",
            fixture("tiny_dit.pt").to_str().unwrap(),
            "--raw",
        ])
        .args(["--quant", "int8", "--out", q.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success());
    let file = WeightFile::from_bytes(&std::fs::read(&q).unwrap()).unwrap();
    assert!(!file.meta.ema);
    assert!(max_diff(file, &expected().raw_out) < 0.1);

    // A preset that does not match is refused, naming the differences.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["import-torch", fixture("tiny_dit.pt").to_str().unwrap()])
        .args(["--preset", "mnist", "--out", q.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("does not match preset `mnist`")
            && err.contains("width: checkpoint 16, preset 288"),
        "{err}"
    );
}

fn err_text(e: ImportError) -> String {
    e.to_string()
}

#[test]
fn malformed_files_are_clear_errors() {
    let bytes = std::fs::read(fixture("tiny_dit.pt")).unwrap();
    // Truncated: the zip directory at the end is gone.
    for cut in [bytes.len() / 2, bytes.len() - 10, 100, 0] {
        let e = Checkpoint::from_bytes(bytes[..cut].to_vec())
            .err()
            .expect("truncated file refused");
        assert!(
            err_text(e).contains("not a PyTorch checkpoint"),
            "cut at {cut}"
        );
    }
    // Not a zip at all.
    let e = Checkpoint::from_bytes(b"\x80\x02}q\x00.".to_vec())
        .err()
        .unwrap();
    assert!(err_text(e).contains("not a zip archive"));
    // A file that does not exist.
    let e = import(Path::new("/nonexistent/ckpt.pt"), &no_preset()).unwrap_err();
    assert!(err_text(e).contains("/nonexistent/ckpt.pt"));
    // One flipped byte of tensor data inside the archive: the zip CRC catches it.
    let ckpt = Checkpoint::from_bytes(bytes.clone()).unwrap();
    let key = ckpt.state_dict("ema_state").unwrap()["blocks.0.att.wq.weight"]
        .storage_key
        .clone();
    let name = format!("tiny_dit/data/{key}");
    let header = bytes
        .windows(name.len() + 30)
        .position(|w| &w[..4] == b"PK\x03\x04" && &w[30..] == name.as_bytes())
        .expect("local header of the storage");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let data = header + 30 + u16_at(header + 26) + u16_at(header + 28);
    let mut damaged = bytes.clone();
    damaged[data + 5] ^= 0x40;
    let e = convert(&Checkpoint::from_bytes(damaged).unwrap(), &no_preset()).unwrap_err();
    let e = err_text(e);
    assert!(
        e.contains("blocks.0.att.wq.weight") && e.to_lowercase().contains("checksum"),
        "{e}"
    );
}

#[test]
fn missing_extra_and_misshapen_tensors_are_clear_errors() {
    let ckpt = Checkpoint::open(&fixture("tiny_dit.pt")).unwrap();
    let args = ckpt.model_args().unwrap();
    let state = ckpt.state_dict("ema_state").unwrap();
    let run = |state: &trainer::import_torch::StateDict| {
        convert_state(&ckpt, "ema_state", state, args.as_ref(), &no_preset())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    let mut missing = state.clone();
    missing.remove("blocks.1.att.wk.bias");
    assert_eq!(
        run(&missing),
        "tensor `blocks.1.att.wk.bias` is missing from `ema_state`"
    );

    let mut extra = state.clone();
    extra.insert(
        "blocks.0.att.qk_norm.weight".into(),
        state["blocks.0.att.wk.bias"].clone(),
    );
    assert_eq!(
        run(&extra),
        "`ema_state` holds tensor `blocks.0.att.qk_norm.weight`, which the reference DiT does not have"
    );

    let mut misshapen = state.clone();
    misshapen.get_mut("blocks.1.att.wk.weight").unwrap().shape = vec![16, 8];
    assert_eq!(
        run(&misshapen),
        "tensor `blocks.1.att.wk.weight` has shape [16, 8], the model needs [16, 16]"
    );

    // A wider patch projection disagrees with model_args' d_model.
    let mut wide = state.clone();
    wide.get_mut("patch_ops.patch_proj.weight").unwrap().shape = vec![32, 1, 2, 2];
    assert!(run(&wide).contains("`d_model` = 16, but the tensors give width 32"));

    // A view reaching past its storage is refused rather than read out of bounds.
    let mut beyond = state.clone();
    beyond.get_mut("norm_linear.linear.bias").unwrap().offset = 1000;
    assert!(run(&beyond).contains("reaches element"));

    // A different position table.
    let mut shifted = state.clone();
    let pos = shifted.get_mut("positional_embeddings").unwrap();
    pos.storage_key = state["blocks.0.att.wq.weight"].storage_key.clone();
    pos.storage_len = state["blocks.0.att.wq.weight"].storage_len;
    pos.shape = vec![1, 16, 16];
    assert!(run(&shifted).contains("positional_embeddings differ"));

    // --raw on a checkpoint whose model_state is missing names the keys it has.
    let e = ckpt.state_dict("model_sate").unwrap_err().to_string();
    assert!(
        e.contains("no `model_sate` entry") && e.contains("ema_state"),
        "{e}"
    );

    // Without model_args the head count is unknown: say so, or use a preset.
    let e = convert_state(&ckpt, "ema_state", &state, None, &no_preset())
        .unwrap_err()
        .to_string();
    assert!(e.contains("num_classes") || e.contains("num_heads"), "{e}");

    // A preset that does not match lists every difference.
    let e = convert(
        &ckpt,
        &ImportOptions {
            preset: Some(Preset::celeba()),
            ..no_preset()
        },
    )
    .unwrap_err()
    .to_string();
    for part in [
        "image size: checkpoint 8, preset 128",
        "channels: checkpoint 1, preset 3",
        "depth: checkpoint 2, preset 8",
    ] {
        assert!(e.contains(part), "{e}");
    }
}

/// The fixture's `ema_state`, `model_args` and `step` saved again with protocol 4, each 2-D weight
/// stored transposed and viewed through strides (what saving `w.t()` without `.contiguous()`
/// gives), and every bias placed at an offset after the end of another tensor in a shared storage.
fn resaved_protocol_4() -> Vec<u8> {
    resaved("", 0)
}

/// [`resaved_protocol_4`] with every `ema_state` name behind `prefix` (`_orig_mod.`: how the
/// reference saves its compiled model), and, with `padding` > 0, an `optimizer_state` of two
/// storages of `padding` bytes each, stored before and after the EMA tensors (as the raw weights
/// and the optimizer's moments lie around them in a real checkpoint).
pub(crate) fn resaved(prefix: &str, padding: usize) -> Vec<u8> {
    use std::io::Write;
    let ckpt = Checkpoint::open(&fixture("tiny_dit.pt")).unwrap();
    let state = ckpt.state_dict("ema_state").unwrap();
    let mut storages: Vec<(String, Vec<f32>)> = Vec::new();
    let mut p = Pickle::default();
    p.op(b'}').op(0x94).op(b'(').str("ema_state");
    p.global("collections", "OrderedDict")
        .op(b')')
        .op(b'R')
        .op(0x94)
        .op(b'(');
    let mut shared: Vec<f32> = Vec::new();
    for (name, t) in &state {
        let values = ckpt.read_f32(name, t).unwrap();
        p.str(&format!("{prefix}{name}"));
        if t.shape.len() == 2 {
            // Store w^T contiguously; w is the view with strides [1, rows].
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let transposed: Vec<f32> = (0..cols)
                .flat_map(|c| (0..rows).map(move |r| (r, c)))
                .map(|(r, c)| values[r * cols + c])
                .collect();
            let key = storages.len().to_string();
            p.tensor(&key, rows * cols, 0, &t.shape, &[1, rows]);
            storages.push((key, transposed));
        } else if t.shape.len() == 1 {
            p.tensor("shared", 0, shared.len(), &t.shape, &[1]);
            shared.extend_from_slice(&values);
        } else {
            let key = storages.len().to_string();
            let mut stride = vec![1; t.shape.len()];
            for i in (0..t.shape.len() - 1).rev() {
                stride[i] = stride[i + 1] * t.shape[i + 1];
            }
            p.tensor(&key, values.len(), 0, &t.shape, &stride);
            storages.push((key, values));
        }
    }
    p.op(b'u');
    if padding > 0 {
        p.str("optimizer_state").op(b'}').op(0x94).op(b'(');
        for key in ["pad_before", "pad_after"] {
            p.str(key);
            p.tensor(key, padding / 4, 0, &[padding / 4], &[1]);
        }
        p.op(b'u');
    }
    p.str("model_args").op(b'}').op(0x94).op(b'(');
    for (key, value) in [("num_heads", 2), ("num_classes", 3), ("num_timesteps", 400)] {
        p.str(key).int(value);
    }
    p.str("cfg_dropout_rate").float(0.1).op(b'u');
    p.str("step").int(ckpt.step().unwrap() as i32).op(b'u');
    let mut pickle = p.finish();
    // The shared storage's element count is known only now: patch the placeholder 0s. (Each
    // `shared` persistent id is followed by BININT 0 for numel.)
    let needle = [
        &[0x8c, 6][..],
        b"shared",
        &[0x94, 0x8c, 3],
        b"cpu",
        &[0x94, b'J'],
    ]
    .concat();
    let mut at = 0;
    while let Some(i) = pickle[at..].windows(needle.len()).position(|w| w == needle) {
        let n = at + i + needle.len();
        pickle[n..n + 4].copy_from_slice(&(shared.len() as i32).to_le_bytes());
        at = n;
    }
    storages.push(("shared".into(), shared));

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut put = |name: String, bytes: &[u8]| {
        zip.start_file(name, stored).unwrap();
        zip.write_all(bytes).unwrap();
    };
    put("resaved/data.pkl".into(), &pickle);
    put("resaved/byteorder".into(), b"little");
    // Pseudo-random padding, so that nothing compresses or dedups it away on the way.
    let pad: Vec<u8> = (0..padding as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    if padding > 0 {
        put("resaved/data/pad_before".into(), &pad);
    }
    for (key, values) in &storages {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        put(format!("resaved/data/{key}"), &bytes);
    }
    if padding > 0 {
        put("resaved/data/pad_after".into(), &pad);
    }
    put("resaved/version".into(), b"3\n");
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_protocol_4_save_with_strided_and_offset_tensors_reads_the_same() {
    let bytes = resaved_protocol_4();
    let ckpt = Checkpoint::from_bytes(bytes).unwrap();
    let state = ckpt.state_dict("ema_state").unwrap();
    // The test really wrote views: transposed strides and non-zero offsets into one storage.
    assert!(state
        .values()
        .any(|t| t.shape.len() == 2 && t.stride == [1, t.shape[0]]));
    assert!(state
        .values()
        .any(|t| t.storage_key == "shared" && t.offset > 0));
    let resaved = convert(&ckpt, &no_preset()).unwrap();
    let original = import(&fixture("tiny_dit.pt"), &no_preset()).unwrap();
    assert_eq!(resaved.file.meta, original.file.meta);
    assert_eq!(resaved.file.tensors, original.file.tensors);
    let diff = max_diff(resaved.file, &expected().ema_out);
    assert!(diff < 1e-4, "max |ours - torch| = {diff}");
}

#[test]
fn compiled_and_ddp_key_prefixes_convert_the_same() {
    let original = import(&fixture("tiny_dit.pt"), &no_preset()).unwrap();
    for prefix in ["_orig_mod.", "module.", "module._orig_mod."] {
        let ckpt = Checkpoint::from_bytes(resaved(prefix, 0)).unwrap();
        let state = ckpt.state_dict("ema_state").unwrap();
        assert!(state.contains_key("blocks.0.att.wq.weight"), "{prefix}");
        let converted = convert(&ckpt, &no_preset()).unwrap();
        assert_eq!(converted.file.tensors, original.file.tensors, "{prefix}");
    }
    // A prefix on only some names is not a wrapper: those names stay as they are, and are refused.
    let ckpt = Checkpoint::from_bytes(resaved("", 0)).unwrap();
    let mut state = ckpt.state_dict("ema_state").unwrap();
    let t = state.remove("norm_linear.linear.bias").unwrap();
    state.insert("_orig_mod.norm_linear.linear.bias".into(), t);
    let e = convert_state(
        &ckpt,
        "ema_state",
        &state,
        ckpt.model_args().unwrap().as_ref(),
        &no_preset(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("norm_linear.linear.bias"), "{e}");
}

/// A checkpoint archive around `pickle`.
fn archive(pickle: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("hostile/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn hostile_pickles_fail_fast_in_little_memory() {
    // {"ema_state": {}, "extra": x} where x is 64 levels of (previous, previous) through the memo:
    // 2^64 leaves if memo references were copied (burn-store 0.21's reader copies them: see the
    // module header), a few hundred bytes here.
    let mut p = Pickle::default();
    p.op(b'}')
        .op(0x94)
        .op(b'(')
        .str("ema_state")
        .op(b'}')
        .str("extra");
    p.op(b']').op(b'q').op(1).op(b'0');
    for _ in 0..64 {
        p.op(b'(')
            .op(b'h')
            .op(1)
            .op(b'h')
            .op(1)
            .op(b't')
            .op(b'q')
            .op(1)
            .op(b'0');
    }
    p.op(b'h').op(1).op(b'u');
    let ckpt = Checkpoint::from_bytes(archive(&p.finish())).unwrap();
    let e = err_text(convert(&ckpt, &no_preset()).unwrap_err());
    assert!(e.contains("missing from `ema_state`"), "{e}");

    // 100,000 nested tuples: refused before the stack (or a recursive drop) could overflow.
    let mut deep = Pickle::default();
    deep.0.extend(std::iter::repeat_n(b'(', 100_000));
    deep.op(b']');
    deep.0.extend(std::iter::repeat_n(b't', 100_000));
    let e = err_text(
        Checkpoint::from_bytes(archive(&deep.finish()))
            .err()
            .unwrap(),
    );
    assert!(e.contains("nested deeper than"), "{e}");
}
