//! The LR range test: train a fresh model while the learning rate grows exponentially, and
//! suggest the rate where the smoothed loss falls fastest.

use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::{Dit, Preset};

use super::step::{optimizer_step, HostBatch};
use crate::data::loader::Loader;
use crate::data::Dataset;

#[derive(Clone, Copy, Debug)]
pub struct LrFindConfig {
    pub min_lr: f64,
    pub max_lr: f64,
    pub values: usize,
    pub steps_per_value: usize,
    pub batch_size: usize,
    pub seed: u64,
}

/// One point of the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrPoint {
    pub lr: f64,
    /// Mean loss of the steps at this rate.
    pub loss: f64,
    /// Bias-corrected exponential moving average of `loss` (beta 0.9).
    pub smoothed: f64,
}

/// Runs the sweep; stops early once the loss is not finite or above 4x its best.
pub fn lr_find<B: AutodiffBackend, D: Dataset>(
    preset: &Preset,
    config: &LrFindConfig,
    data: &D,
    device: &B::Device,
    mut on_point: impl FnMut(&LrPoint),
) -> Vec<LrPoint> {
    let model_config = preset.model.clone();
    let mut model: Dit<B> =
        crate::backend::seeded::<B, _>(device, config.seed, || model_config.init(device));
    let mut optim = super::optim::adamw::<B>();
    let schedule = NoiseSchedule::new(&preset.schedule);
    let mut rng = NoiseRng::new(config.seed, 1);
    let mut loader = Loader::new(data, config.seed);
    let ratio = (config.max_lr / config.min_lr).ln();
    let mut points = Vec::new();
    let (mut avg, mut best) = (0.0, f64::INFINITY);
    for i in 0..config.values {
        let lr = config.min_lr * (ratio * i as f64 / (config.values - 1).max(1) as f64).exp();
        let mut sum = 0.0;
        for _ in 0..config.steps_per_value {
            let batch = HostBatch::draw(
                &mut loader,
                &mut rng,
                &schedule,
                &model_config,
                config.batch_size,
                model_config.class_dropout,
            )
            .upload(device);
            let (next, stats) = optimizer_step(model, &mut optim, batch, 0, lr, None);
            model = next;
            sum += stats.read().0;
        }
        let loss = sum / config.steps_per_value as f64;
        avg = 0.9 * avg + 0.1 * loss;
        let smoothed = avg / (1.0 - 0.9f64.powi(i as i32 + 1));
        let point = LrPoint { lr, loss, smoothed };
        on_point(&point);
        points.push(point);
        best = best.min(smoothed);
        if !loss.is_finite() || smoothed > 4.0 * best {
            break;
        }
    }
    points
}

/// The rate at the steepest descent of the smoothed loss against log10(lr), before its minimum
/// (the geometric middle of the steepest segment).
pub fn suggest(points: &[LrPoint]) -> Option<f64> {
    let min_at = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.smoothed.is_finite())
        .min_by(|a, b| a.1.smoothed.total_cmp(&b.1.smoothed))?
        .0;
    points[..=min_at]
        .windows(2)
        .map(|w| {
            (
                (w[0].lr * w[1].lr).sqrt(),
                (w[1].smoothed - w[0].smoothed) / (w[1].lr.log10() - w[0].lr.log10()),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(lr, _)| lr)
}

/// Writes `lr_find.csv` (lr, loss, smoothed) and `lr_find.png` (both curves against log10 of
/// the rate) into `out`; returns the two paths.
pub fn write_report(
    out: &std::path::Path,
    title: &str,
    points: &[LrPoint],
) -> Result<[std::path::PathBuf; 2], Box<dyn std::error::Error>> {
    use crate::report::plot::{line_plot, Series};
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut csv = String::from("lr,loss,smoothed\n");
    for p in points {
        csv.push_str(&format!("{},{},{}\n", p.lr, p.loss, p.smoothed));
    }
    let (csv_path, png_path) = (out.join("lr_find.csv"), out.join("lr_find.png"));
    crate::atomic::write(&csv_path, csv.as_bytes())
        .map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let curve = |f: fn(&LrPoint) -> f64| points.iter().map(|p| (p.lr.log10(), f(p))).collect();
    line_plot(
        &png_path,
        title,
        "log10(learning rate)",
        "loss",
        &[
            Series {
                label: "loss",
                points: curve(|p| p.loss),
            },
            Series {
                label: "smoothed",
                points: curve(|p| p.smoothed),
            },
        ],
    )?;
    Ok([csv_path, png_path])
}

/// `trainer lr-find`: [`lr_find`] on the CPU over the training images of the preset's dataset
/// in `data` (opened as `trainer train` opens it).
pub fn lr_find_on(
    preset: &Preset,
    config: &LrFindConfig,
    data: &std::path::Path,
    on_point: impl FnMut(&LrPoint),
) -> Result<Vec<LrPoint>, Box<dyn std::error::Error>> {
    let data = crate::data::open(data, preset.dataset, &preset.model, &preset.labels)?;
    Ok(lr_find::<burn::backend::Autodiff<crate::Cpu>, _>(
        preset,
        config,
        &data,
        &Default::default(),
        on_point,
    ))
}
