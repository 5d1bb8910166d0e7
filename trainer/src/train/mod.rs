//! The training loop: epsilon-prediction MSE at uniform timesteps, AdamW with warmup + cosine,
//! EMA after every step, step-level checkpoints that resume exactly.

pub mod checkpoint;
pub mod ema;
pub mod lr;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::{Dit, Preset};
use serde::{Deserialize, Serialize};

use crate::data::loader::Loader;
use crate::data::Dataset;
use crate::report::metrics::{Metrics, MetricsRow};
use checkpoint::RunState;
use lr::LrSchedule;

/// Everything that defines a run; saved as `run.json` in the run folder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub preset: String,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: LrSchedule,
    pub ema_decay: f64,
    pub ema_warmup: bool,
    pub label_dropout: f64,
    /// Global gradient-norm clipping (as PyTorch's clip_grad_norm_), if set.
    pub grad_clip: Option<f64>,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub keep_every: u64,
    pub sample_every: u64,
    /// Stop when a loss exceeds this factor times the running average (NaN/inf always stop).
    pub spike_factor: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{0}")]
    Config(String),
    #[error("loss became {loss} at step {step}; stopped. The last good checkpoint is {last_good}")]
    Diverged {
        step: u64,
        loss: f64,
        last_good: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing a sample grid: {0}")]
    Samples(#[from] dit_web::generate::GenerateError),
}

/// What a finished (or stopped) call of [`train`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// (step, loss) of every step run by this call.
    pub losses: Vec<(u64, f64)>,
    pub final_step: u64,
}

/// Trains `preset` on `data` into the run folder `run`, resuming from its latest checkpoint when
/// `resume` is set. `on_step` sees each step's metrics (for a progress bar).
pub fn train<B: AutodiffBackend, D: Dataset>(
    preset: &Preset,
    config: &TrainConfig,
    data: &D,
    run: &Path,
    resume: bool,
    device: &B::Device,
    mut on_step: impl FnMut(&MetricsRow),
) -> Result<TrainOutcome, TrainError> {
    let model_config = preset
        .model
        .clone()
        .with_class_dropout(config.label_dropout);
    if data.image_len() != model_config.image_len() {
        return Err(TrainError::Config(format!(
            "the data has {} values per image, the preset `{}` expects {}",
            data.image_len(),
            preset.name,
            model_config.image_len()
        )));
    }
    if config.batch_size == 0 || config.batch_size > data.len() {
        return Err(TrainError::Config(format!(
            "batch size {} for {} images",
            config.batch_size,
            data.len()
        )));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(run).map_err(io(run))?;
    let schedule = NoiseSchedule::new(&preset.schedule);
    let null_label = model_config.null_label();

    B::seed(device, config.seed);
    let mut model: Dit<B> = model_config.init(device);
    let mut ema: Dit<B::InnerBackend> = model.valid();
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, Dit<B>>();
    let mut state = RunState {
        step: 0,
        rng: NoiseRng::new(config.seed, 1).state(),
        loader: Loader::new(data, config.seed).state(),
        last_loss: None,
    };
    if resume {
        if let Ok(dir) = checkpoint::latest(run) {
            state = checkpoint::load_state(&dir)?;
            model = checkpoint::load_weights(&dir, "model", model, device)?;
            ema = checkpoint::load_weights(&dir, "ema", ema, device)?;
            optim = checkpoint::load_optimizer(&dir, optim, device)?;
        }
    }
    std::fs::write(
        run.join("run.json"),
        serde_json::to_vec_pretty(config).expect("config serializes"),
    )
    .map_err(io(run))?;
    let mut metrics = Metrics::open(&run.join("metrics.jsonl")).map_err(io(run))?;

    let mut rng = NoiseRng::from_state(&state.rng);
    let mut loader = Loader::resume(data, state.loader);
    let (c, s) = (model_config.in_channels, model_config.input_size);
    let n = config.batch_size;
    let mut losses = Vec::new();
    let mut average: Option<f64> = state.last_loss;
    let mut last_good = checkpoint::latest(run)
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "none (no checkpoint yet)".into());

    while state.step < config.steps {
        let started = Instant::now();
        let step = state.step;
        let (x0, mut labels) = loader.next_batch(n);
        // Uniform timesteps, fresh noise, label dropout: all from the run's host RNG.
        let t: Vec<usize> = (0..n)
            .map(|_| rng.below(schedule.num_timesteps()))
            .collect();
        let mut eps = vec![0f32; x0.len()];
        rng.fill_normal(&mut eps);
        if let Some(null) = null_label {
            for l in labels.iter_mut() {
                if rng.uniform() < config.label_dropout {
                    *l = null;
                }
            }
        }
        let per_image = x0.len() / n;
        let x_t: Vec<f32> = x0
            .iter()
            .zip(&eps)
            .enumerate()
            .map(|(i, (&x, &e))| {
                let (a, b) = schedule.noise_coefficients(t[i / per_image]);
                a as f32 * x + b as f32 * e
            })
            .collect();

        let x_t = Tensor::<B, 4>::from_data(TensorData::new(x_t, [n, c, s, s]), device);
        let eps = Tensor::<B, 4>::from_data(TensorData::new(eps, [n, c, s, s]), device);
        let t = Tensor::<B, 1>::from_data(
            TensorData::new(t.iter().map(|&t| t as f32).collect::<Vec<_>>(), [n]),
            device,
        );
        let y = Tensor::<B, 1, Int>::from_data(
            TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]),
            device,
        );

        let loss = (model.forward(x_t, t, y) - eps).powf_scalar(2.0).mean();
        let loss_value: f64 = loss.clone().into_scalar().elem();
        let spike = average.is_some_and(|avg| loss_value > config.spike_factor * avg.max(1e-3));
        if !loss_value.is_finite() || spike {
            return Err(TrainError::Diverged {
                step,
                loss: loss_value,
                last_good,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (grads, grad_norm) = clip::global_norm(grads, &model, config.grad_clip);
        let lr = config.lr.lr(step);
        model = optim.step(lr, model, grads);
        ema = ema::update(
            ema,
            &model.valid(),
            ema::decay_at(config.ema_decay, config.ema_warmup, step),
        );

        state.step += 1;
        average = Some(average.map_or(loss_value, |a| 0.98 * a + 0.02 * loss_value));
        losses.push((step, loss_value));
        let row = MetricsRow {
            step: state.step,
            loss: loss_value,
            lr,
            grad_norm,
            images_per_sec: n as f64 / started.elapsed().as_secs_f64(),
        };
        metrics.append(&row).map_err(io(run))?;
        on_step(&row);

        let at_end = state.step == config.steps;
        if config.sample_every > 0 && (state.step.is_multiple_of(config.sample_every) || at_end) {
            crate::report::samples::write_grid(
                &ema,
                &schedule,
                2,
                &crate::report::samples::grid_path(run, state.step),
            )?;
        }
        if (config.checkpoint_every > 0 && state.step.is_multiple_of(config.checkpoint_every))
            || at_end
        {
            state.rng = rng.state();
            state.loader = loader.state();
            state.last_loss = average;
            let dir = checkpoint::save(run, &model, &ema, &optim, &state, config.keep_every)?;
            last_good = dir.display().to_string();
        }
    }
    Ok(TrainOutcome {
        losses,
        final_step: state.step,
    })
}

mod clip {
    //! Global gradient-norm clipping, as PyTorch's `clip_grad_norm_` (burn's own clips each
    //! tensor separately).

    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    use burn::optim::GradientsParams;
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::{ElementConversion, Tensor};
    use dit_web::Dit;

    struct Ids(Vec<(ParamId, usize)>);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push((param.id, D));
        }
    }

    /// Returns the gradients (scaled down if their global L2 norm exceeds `max_norm`) and the
    /// norm before clipping.
    pub fn global_norm<B: AutodiffBackend>(
        mut grads: GradientsParams,
        model: &Dit<B>,
        max_norm: Option<f64>,
    ) -> (GradientsParams, f64) {
        let mut ids = Ids(Vec::new());
        model.visit(&mut ids);
        let mut total: Option<Tensor<B::InnerBackend, 1>> = None;
        macro_rules! each_rank {
            ($f:ident) => {
                for &(id, rank) in &ids.0 {
                    match rank {
                        1 => $f!(grads, id, 1),
                        2 => $f!(grads, id, 2),
                        3 => $f!(grads, id, 3),
                        4 => $f!(grads, id, 4),
                        _ => unreachable!("DiT parameters have rank 1 to 4"),
                    }
                }
            };
        }
        macro_rules! add_square {
            ($g:ident, $id:ident, $d:literal) => {
                if let Some(g) = $g.get::<B::InnerBackend, $d>($id) {
                    let s = g.powf_scalar(2.0).sum();
                    total = Some(match total.take() {
                        Some(t) => t + s,
                        None => s,
                    });
                }
            };
        }
        each_rank!(add_square);
        // One read-back for the whole norm.
        let norm = total.map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt());
        if let Some(max) = max_norm {
            if norm > max {
                let scale = max / (norm + 1e-6);
                macro_rules! scale {
                    ($g:ident, $id:ident, $d:literal) => {
                        if let Some(g) = $g.remove::<B::InnerBackend, $d>($id) {
                            $g.register::<B::InnerBackend, $d>($id, g * scale);
                        }
                    };
                }
                each_rank!(scale);
            }
        }
        (grads, norm)
    }
}
