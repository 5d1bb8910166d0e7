//! What a run leaves behind for people: metrics, sample grids.

pub mod gif;
pub mod metrics;
pub mod plot;
pub mod samples;

use crate::run_dir::RunDir;

/// Redraws `loss.png` from `metrics.jsonl` and `progress.gif` from `samples/*.png`. Returns
/// whether there were sample grids for a GIF (a run with `--sample-every 0` has none).
pub fn refresh(run: &RunDir) -> Result<bool, Box<dyn std::error::Error>> {
    let metrics_file = run.metrics_file();
    let rows =
        metrics::read(&metrics_file).map_err(|e| format!("{}: {e}", metrics_file.display()))?;
    let raw: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.loss)).collect();
    let mut smooth = Vec::with_capacity(raw.len());
    let mut avg = None;
    for &(x, y) in &raw {
        let a = avg.map_or(y, |a: f64| 0.98 * a + 0.02 * y);
        avg = Some(a);
        smooth.push((x, a));
    }
    plot::line_plot(
        &run.loss_plot(),
        "training loss (epsilon MSE)",
        "step",
        "loss",
        &[
            plot::Series {
                label: "per step",
                points: raw,
            },
            plot::Series {
                label: "moving average (0.98)",
                points: smooth,
            },
        ],
    )?;
    let samples = run.samples();
    if !samples.is_dir() {
        return Ok(false);
    }
    let mut frames: Vec<_> = std::fs::read_dir(&samples)
        .map_err(|e| format!("{}: {e}", samples.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    frames.sort();
    if frames.is_empty() {
        return Ok(false);
    }
    gif::from_pngs(&frames, &run.progress_gif(), 40)?;
    Ok(true)
}
