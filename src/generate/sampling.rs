//! The sampling loop, and requests of any size run through it in batches.

use burn::tensor::{backend::Backend, Tensor};

use super::checks::check_steps;
use super::denoiser::Denoiser;
use super::error::GenerateError;
use crate::diffusion::{NoiseSchedule, Sampler, SamplerConfig, StepInfo};
use crate::model::Dit;

/// Images per network call for `trainer generate` and `trainer eval` unless told otherwise:
/// larger requests run as several batches. On a 2-core CPU, batches side by side, 8 or 16 images
/// drew fastest and 32 took 7 % (`mnist-cpu`, `cargo bench --bench model -- sample_batched`) to
/// 20 % (`mnist`) longer, as activations outgrow the CPU's caches.
pub const DEFAULT_BATCH: usize = 16;

/// How [`sample_batched_guided`] splits a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batches {
    /// Images per network call, at most.
    pub max: usize,
    /// Run the batches side by side on rayon's threads rather than one after another: for the
    /// CPU backends natively, where one batch keeps little more than one core busy (their
    /// element-wise passes run on one thread; only large matrix products split). In the browser
    /// rayon has one thread and the batches run in turn. GPU backends want `false`: one queue
    /// does the work.
    pub parallel: bool,
}

impl Batches {
    /// Batches of at most `max` images, one after another.
    pub fn in_turn(max: usize) -> Self {
        Self {
            max,
            parallel: false,
        }
    }
}

/// Samples a batch, one image per label, calling `on_step` after every step.
/// Returns `[labels.len() * C * H * W]` values in roughly [-1, 1].
pub fn sample<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    labels: &[usize],
    config: &SamplerConfig,
    on_step: impl FnMut(&StepInfo),
) -> Result<Vec<f32>, GenerateError> {
    let denoiser = Denoiser::new(model, labels, config)?;
    check_steps(schedule, config)?;
    Ok(sample_streams(
        &denoiser,
        schedule,
        0,
        labels.len(),
        config,
        on_step,
    ))
}

/// [`sample`] for a request of any size, run as batches of at most `max_batch` images. Image `i`
/// keeps noise stream `i`, so the result is the one-batch result (up to float rounding in the
/// network). `on_batch(done)` is called after each batch with the images finished so far.
pub fn sample_batched<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    labels: &[usize],
    config: &SamplerConfig,
    max_batch: usize,
    on_batch: impl FnMut(usize) + Send,
) -> Result<Vec<f32>, GenerateError> {
    let batches = Batches::in_turn(max_batch);
    sample_batched_guided(model, None, schedule, labels, config, batches, on_batch)
}

/// [`sample_batched`] with a guiding model for autoguidance (see [`Denoiser`]), and batches side
/// by side where `batches.parallel` asks: the images are the same either way, each batch's
/// network work being the same.
pub fn sample_batched_guided<B: Backend>(
    model: &Dit<B>,
    guide: Option<&Dit<B>>,
    schedule: &NoiseSchedule,
    labels: &[usize],
    config: &SamplerConfig,
    batches: Batches,
    on_batch: impl FnMut(usize) + Send,
) -> Result<Vec<f32>, GenerateError> {
    use rayon::prelude::*;
    // Every label, the guidance and the steps are checked before the first batch runs.
    Denoiser::guided_by(model, guide, labels, config)?;
    check_steps(schedule, config)?;
    let max = batches.max.max(1);
    // (images finished so far, the caller's callback), shared by the batches.
    let progress = std::sync::Mutex::new((0, on_batch));
    let run = |(k, chunk): (usize, &[usize])| -> Result<Vec<f32>, GenerateError> {
        let denoiser = Denoiser::guided_by(model, guide, chunk, config)?;
        let images = sample_streams(&denoiser, schedule, k * max, chunk.len(), config, |_| {});
        let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.0 += chunk.len();
        let done = progress.0;
        (progress.1)(done);
        Ok(images)
    };
    let outputs: Result<Vec<Vec<f32>>, _> = if batches.parallel {
        labels.par_chunks(max).enumerate().map(run).collect()
    } else {
        labels.chunks(max).enumerate().map(run).collect()
    };
    Ok(outputs?.concat())
}

/// The sampling loop for images `first..first + count` of a request, on a native backend.
fn sample_streams<B: Backend>(
    denoiser: &Denoiser<'_, B>,
    schedule: &NoiseSchedule,
    first: usize,
    count: usize,
    config: &SamplerConfig,
    mut on_step: impl FnMut(&StepInfo),
) -> Vec<f32> {
    let image_len = denoiser.model().config().image_len();
    let mut sampler = Sampler::new_at(schedule, config, first..first + count, image_len);
    let read = async |output: Tensor<B, 4>| {
        let data = output.into_data().convert::<f32>();
        Ok::<_, std::convert::Infallible>(data.into_vec::<f32>().expect("f32 output"))
    };
    let step = async |info: &StepInfo<'_>, _: StepTimes| {
        on_step(info);
        Ok(())
    };
    let done = finish_now(sampling_loop(denoiser, &mut sampler, || 0.0, read, step));
    let Ok(()) = done;
    sampler.into_output()
}

/// Milliseconds of one sampling step: the network's work queued, its output read back, the
/// sampler's update.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTimes {
    pub network_ms: f64,
    pub read_back_ms: f64,
    pub update_ms: f64,
}

/// The sampling loop, written once for every platform: each step runs the network (and the
/// guiding model under autoguidance), brings the outputs to the host with `read` (natively a
/// blocking read; in the browser an awaited one, the only kind WebGPU has), takes the sampler's
/// step and shows it to `on_step`, which may stop the loop with an error (or, in the browser,
/// yield to the page). `now` is a clock in milliseconds for [`StepTimes`].
pub async fn sampling_loop<B: Backend, E>(
    denoiser: &Denoiser<'_, B>,
    sampler: &mut Sampler,
    now: impl Fn() -> f64,
    mut read: impl AsyncFnMut(Tensor<B, 4>) -> Result<Vec<f32>, E>,
    mut on_step: impl AsyncFnMut(&StepInfo<'_>, StepTimes) -> Result<(), E>,
) -> Result<(), E> {
    while let Some(t) = sampler.timestep() {
        let started = now();
        let output = denoiser.forward(sampler.x(), t);
        let guide = denoiser.guide_forward(sampler.x(), t);
        let queued = now();
        let output = read(output).await?;
        let guide = match guide {
            Some(guide) => Some(read(guide).await?),
            None => None,
        };
        let read_at = now();
        let x0 = sampler.advance(&denoiser.eps_from_output(output, guide, t));
        let times = StepTimes {
            network_ms: queued - started,
            read_back_ms: read_at - queued,
            update_ms: now() - read_at,
        };
        let info = StepInfo {
            step: sampler.steps_done(),
            total: sampler.num_steps(),
            t,
            x0: &x0,
        };
        on_step(&info, times).await?;
    }
    Ok(())
}

/// Runs a future whose every await is ready at once (the native loop's read-backs block instead
/// of waiting), without an executor: one poll finishes it.
fn finish_now<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("native read-backs never wait"),
    }
}
