//! What a run leaves behind for people: metrics, sample grids.

pub mod gif;
pub mod metrics;
pub mod plot;
pub mod samples;

use std::path::PathBuf;

use crate::run_dir::RunDir;

/// What [`refresh`] drew; its `Display` is what `trainer report` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    pub loss_plot: PathBuf,
    /// `None` where the run has no sample grids (`--sample-every 0`), in `samples`.
    pub progress_gif: Option<PathBuf>,
    pub samples: PathBuf,
}

impl std::fmt::Display for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "wrote {}", self.loss_plot.display())?;
        match &self.progress_gif {
            Some(gif) => writeln!(f, "wrote {}", gif.display()),
            None => writeln!(
                f,
                "no sample grids in {}: no progress.gif",
                self.samples.display()
            ),
        }
    }
}

/// Redraws `loss.png` from `metrics.jsonl` and `progress.gif` from `samples/*.png`.
pub fn refresh(run: &RunDir) -> Result<Refreshed, Box<dyn std::error::Error>> {
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
    let mut refreshed = Refreshed {
        loss_plot: run.loss_plot(),
        progress_gif: None,
        samples: samples.clone(),
    };
    if !samples.is_dir() {
        return Ok(refreshed);
    }
    let mut frames: Vec<_> = std::fs::read_dir(&samples)
        .map_err(|e| format!("{}: {e}", samples.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    frames.sort();
    if frames.is_empty() {
        return Ok(refreshed);
    }
    gif::from_pngs(&frames, &run.progress_gif(), 40)?;
    refreshed.progress_gif = Some(run.progress_gif());
    Ok(refreshed)
}
