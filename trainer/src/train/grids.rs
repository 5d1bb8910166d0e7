//! The sample grids a run draws from its EMA weights as it trains, with the loss plot and the
//! progress GIF redrawn beside them.

use burn::tensor::backend::Backend;
use dit_web::diffusion::NoiseSchedule;
use dit_web::Dit;

use super::error::TrainError;
use crate::run_dir::RunDir;

/// The EMA model's sample grid after `step`, and the loss plot and progress GIF redrawn.
pub(super) fn sample_grid<B: Backend>(
    run: &RunDir,
    ema: &Dit<B>,
    schedule: &NoiseSchedule,
    step: u64,
) -> Result<(), TrainError> {
    crate::report::samples::write_grid(ema, schedule, 2, &run.sample_grid(step))?;
    // Pictures for people; a failure to draw one must not stop the run.
    if let Err(e) = crate::report::refresh(run) {
        eprintln!("warning: could not redraw loss.png / progress.gif: {e}");
    }
    Ok(())
}
