//! The network a checkpoint holds: sizes read from the tensor shapes, the rest (heads, classes,
//! timesteps) from `model_args` or a preset, each source checked against the others.

use dit_web::config::{Conditioning, Convention, DitConfig, Flavour, ScheduleConfig};

use super::archive::StateDict;
use super::error::ImportError;
use super::model_args::ModelArgs;
use super::options::ImportOptions;

const HEADS: &[&str] = &["num_heads", "n_heads", "heads"];
const CLASSES: &[&str] = &["num_classes", "n_classes"];
const CFG_DROPOUT: &[&str] = &["cfg_dropout_rate", "class_dropout", "class_dropout_prob"];
const TIMESTEPS: &[&str] = &["num_timesteps", "timesteps"];

/// What the weight file will describe.
pub(super) struct Target {
    pub model: DitConfig,
    pub schedule: ScheduleConfig,
    pub labels: Vec<String>,
    pub dataset: String,
}

/// The sizes the tensors themselves give.
struct Probe {
    input_size: usize,
    in_channels: usize,
    patch_size: usize,
    hidden_size: usize,
    depth: usize,
    mlp_ratio: usize,
    tokens: usize,
    label_rows: usize,
}

fn probe(state: &StateDict, state_name: &str) -> Result<Probe, ImportError> {
    let shape = |name: &str| {
        state
            .get(name)
            .map(|t| t.shape.as_slice())
            .ok_or_else(|| ImportError::MissingTensor {
                state: state_name.into(),
                name: name.into(),
            })
    };
    let odd = |name: &str, shape: &[usize], want: &str| {
        ImportError::Config(format!("`{name}` has shape {shape:?}, expected {want}"))
    };
    let patch = "patch_ops.patch_proj.weight";
    let (hidden_size, in_channels, patch_size) = match shape(patch)? {
        &[d, c, p, q] if p == q && p > 0 => (d, c, p),
        s => return Err(odd(patch, s, "[d, C, p, p] (a Conv2d with square patches)")),
    };
    let pos = "positional_embeddings";
    let tokens = match shape(pos)? {
        &[1, n, _] => n,
        s => return Err(odd(pos, s, "[1, N, d]")),
    };
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid * grid != tokens || tokens == 0 {
        return Err(ImportError::Config(format!(
            "{tokens} tokens do not make a square grid"
        )));
    }
    let labels = "label_embed.label_embed.weight";
    let label_rows = match shape(labels)? {
        &[rows, _] => rows,
        s => return Err(odd(labels, s, "[rows, d]")),
    };
    let depth = state
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |i| i + 1);
    if depth > 1024 {
        return Err(ImportError::Config(format!(
            "{depth} blocks is implausible"
        )));
    }
    let fc1 = "blocks.0.pointwise_ffn.layers.0.weight";
    let mlp_ratio = match (depth, state.get(fc1).map(|t| t.shape.as_slice())) {
        (0, _) => 4,
        (_, Some(&[h, _])) if hidden_size > 0 && h % hidden_size == 0 => h / hidden_size,
        (_, Some(s)) => return Err(odd(fc1, s, "[r d, d] for an integer MLP ratio r")),
        (_, None) => shape(fc1).map(|_| 4)?,
    };
    Ok(Probe {
        input_size: grid * patch_size,
        in_channels,
        patch_size,
        hidden_size,
        depth,
        mlp_ratio,
        tokens,
        label_rows,
    })
}

/// What the weight file describes: with a preset, the preset's network (which the tensors and
/// `model_args` must match); without one, the tensors' sizes with `model_args`' heads, classes
/// and timesteps.
pub(super) fn target(
    state: &StateDict,
    state_name: &str,
    args: Option<&ModelArgs>,
    options: &ImportOptions,
) -> Result<Target, ImportError> {
    let probe = probe(state, state_name)?;
    let no_args = ModelArgs(Vec::new());
    let args = args.unwrap_or(&no_args);
    check_stated_sizes(&probe, args)?;
    let said = Stated {
        heads: args.usize(HEADS)?.map(|(_, h)| h),
        classes: args.usize(CLASSES)?.map(|(_, c)| c),
        cfg_dropout: args.f64(CFG_DROPOUT)?,
        timesteps: args.usize(TIMESTEPS)?.map(|(_, t)| t),
    };
    let labels = label_rows(probe.label_rows, &said, options.preset.is_some())?;
    match &options.preset {
        Some(preset) => from_preset(preset, &probe, &said, labels, options),
        None => from_args(&probe, &said, labels, args, options),
    }
}

/// What `model_args` says beyond the sizes the tensors give.
struct Stated {
    heads: Option<usize>,
    classes: Option<usize>,
    cfg_dropout: Option<f64>,
    timesteps: Option<usize>,
}

/// The label table: real classes, and whether its last row is the null label.
#[derive(Clone, Copy)]
struct Labels {
    classes: usize,
    null: bool,
}

/// Every size `model_args` states must agree with the tensors.
fn check_stated_sizes(probe: &Probe, args: &ModelArgs) -> Result<(), ImportError> {
    let checks: [(&[&str], usize, &str); 10] = [
        (&["d_model", "hidden_size"], probe.hidden_size, "width"),
        (&["num_layers", "depth"], probe.depth, "depth"),
        (&["patch_size"], probe.patch_size, "patch size"),
        (&["in_channels"], probe.in_channels, "input channels"),
        (
            &["out_channels"],
            probe.in_channels,
            "input channels (dit-web predicts as many)",
        ),
        (&["H"], probe.input_size, "image height"),
        (&["W"], probe.input_size, "image width"),
        (
            &["input_size", "image_size"],
            probe.input_size,
            "image size",
        ),
        (&["maxlen"], probe.tokens, "tokens"),
        (&["mlp_ratio"], probe.mlp_ratio, "MLP ratio"),
    ];
    for (aliases, found, what) in checks {
        if let Some((key, said)) = args.usize(aliases)? {
            if said != found {
                return Err(ImportError::ModelArgs(format!(
                    "`{key}` = {said}, but the tensors give {what} {found}"
                )));
            }
        }
    }
    Ok(())
}

/// Tells real classes from the null label among the table's `rows`, from `num_classes` or
/// `cfg_dropout_rate` (with a preset and neither, the preset decides later).
fn label_rows(rows: usize, said: &Stated, has_preset: bool) -> Result<Labels, ImportError> {
    let (classes, null) = match (said.classes, said.cfg_dropout) {
        (Some(c), _) if rows == c => (c, false),
        (Some(c), _) if rows == c + 1 => (c, true),
        (Some(c), _) => {
            return Err(ImportError::ModelArgs(format!(
                "num_classes = {c}, but the label table has {rows} rows (expected {c} or {})",
                c + 1
            )))
        }
        (None, Some(p)) => (rows.saturating_sub(usize::from(p > 0.0)), p > 0.0),
        (None, None) if has_preset => (0, false),
        (None, None) => {
            return Err(ImportError::Config(format!(
                "the label table has {rows} rows, and model_args has neither num_classes nor \
                 cfg_dropout_rate to tell whether one is the null label (or pass a preset)"
            )))
        }
    };
    if let (Some(p), true) = (said.cfg_dropout, said.classes.is_some()) {
        if (p > 0.0) != null {
            return Err(ImportError::ModelArgs(format!(
                "cfg_dropout_rate = {p} but the label table has {rows} rows for {classes} classes"
            )));
        }
    }
    Ok(Labels { classes, null })
}

/// The preset's network, schedule and labels, if the checkpoint is that network.
fn from_preset(
    preset: &dit_web::Preset,
    probe: &Probe,
    said: &Stated,
    labels: Labels,
    options: &ImportOptions,
) -> Result<Target, ImportError> {
    let m = &preset.model;
    let mut diffs = Vec::new();
    let mut cmp = |what: &str, ckpt: usize, want: usize| {
        if ckpt != want {
            diffs.push(format!("{what}: checkpoint {ckpt}, preset {want}"));
        }
    };
    cmp("image size", probe.input_size, m.input_size);
    cmp("channels", probe.in_channels, m.in_channels);
    cmp("patch size", probe.patch_size, m.patch_size);
    cmp("width", probe.hidden_size, m.hidden_size);
    cmp("depth", probe.depth, m.depth);
    cmp("MLP ratio", probe.mlp_ratio, m.mlp_ratio);
    let preset_rows = m.num_classes + usize::from(m.has_null_label());
    cmp("label rows (classes + null)", probe.label_rows, preset_rows);
    if let Some(h) = said.heads {
        cmp("heads", h, m.num_heads);
    }
    if said.classes.is_some() || said.cfg_dropout.is_some() {
        cmp("classes", labels.classes, m.num_classes);
    }
    if let (Some(t), None) = (said.timesteps, options.num_timesteps) {
        cmp("timesteps", t, preset.schedule.num_timesteps);
    }
    if m.flavour != Flavour::Seed || m.conditioning != Conditioning::AdalnZero {
        diffs.push("the preset is not the seed flavour with adaLN-Zero".into());
    }
    if !diffs.is_empty() {
        return Err(ImportError::PresetMismatch {
            preset: preset.name.into(),
            diffs,
        });
    }
    let t = options
        .num_timesteps
        .unwrap_or(preset.schedule.num_timesteps);
    Ok(Target {
        model: m.clone(),
        schedule: ScheduleConfig {
            num_timesteps: t,
            convention: Convention::Shifted,
            ..preset.schedule.clone()
        },
        labels: preset.labels.clone(),
        dataset: preset.dataset.into(),
    })
}

/// The tensors' network with `model_args`' heads, classes and timesteps; labels named by index.
fn from_args(
    probe: &Probe,
    said: &Stated,
    labels: Labels,
    args: &ModelArgs,
    options: &ImportOptions,
) -> Result<Target, ImportError> {
    let heads = said.heads.ok_or_else(|| {
        ImportError::Config(
            "the head count is not in the tensors and model_args has no num_heads (or pass a preset)"
                .into(),
        )
    })?;
    let timesteps = options.num_timesteps.or(said.timesteps).ok_or_else(|| {
        ImportError::Config(
            "model_args has no num_timesteps: give the number of diffusion timesteps (or a preset)"
                .into(),
        )
    })?;
    if timesteps == 0 || timesteps > 100_000 {
        return Err(ImportError::Config(format!(
            "{timesteps} timesteps is out of range"
        )));
    }
    let class_dropout = match (labels.null, said.cfg_dropout) {
        (false, _) => 0.0,
        (true, Some(p)) if p > 0.0 && p < 1.0 => p,
        (true, _) => 0.1,
    };
    let model = DitConfig::new(
        probe.input_size,
        probe.in_channels,
        probe.patch_size,
        probe.hidden_size,
        probe.depth,
        heads,
        labels.classes,
    )
    .with_mlp_ratio(probe.mlp_ratio)
    .with_class_dropout(class_dropout);
    model.validate().map_err(ImportError::Config)?;
    let mut schedule = ScheduleConfig::new(timesteps).with_convention(Convention::Shifted);
    if let Some(b) = args.f64(&["beta_start"])? {
        schedule.beta_start = b;
    }
    if let Some(b) = args.f64(&["beta_end"])? {
        schedule.beta_end = b;
    }
    schedule
        .validate()
        .map_err(|e| ImportError::ModelArgs(format!("the schedule: {e}")))?;
    Ok(Target {
        schedule,
        labels: (0..labels.classes).map(|i| i.to_string()).collect(),
        dataset: "imported".into(),
        model,
    })
}
