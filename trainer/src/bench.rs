//! Throughput on any backend, for `trainer bench` (and `make bench-gpu` on a GPU machine):
//! optimizer steps per second on host-made batches, and sampler steps per second.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use dit_web::diffusion::{NoiseRng, NoiseSchedule, SamplerConfig};
use dit_web::generate;
use dit_web::model::OwnKernels;
use dit_web::Preset;
use serde::Serialize;

use crate::backend::{run_with, BackendChoice, KernelChoice, OnBackend};
use crate::train::ema;
use crate::train::step::{clip_global_norm, optimizer_step, squared_error, Batch, StepStats};

/// Measured throughput of one configuration.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Throughput {
    pub preset: String,
    /// Images per optimizer step, or images sampled at once.
    pub batch: usize,
    /// Timed steps (after the untimed warm-up ones).
    pub steps: usize,
    pub ms_per_step: f64,
    pub images_per_sec: f64,
}

/// Optimizer steps (forward, backward, clipping, AdamW) on random images and labels.
pub struct TrainSteps<'a> {
    pub preset: &'a Preset,
    pub batch: usize,
    pub micro: usize,
    pub warmup: usize,
    pub steps: usize,
    /// Steps between read-backs of the loss, as `trainer train --read-every`: one timing of
    /// `steps` steps per value, one after another on the same warm model.
    pub read_every: Vec<usize>,
}

impl OnBackend for TrainSteps<'_> {
    /// One timing per `read_every` value, and the kernels they ran.
    type Output = (Vec<(usize, Throughput)>, OwnKernels);
    fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> Self::Output {
        let config = &self.preset.model;
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        // In an Option so the closure below can move it through each step (a clone would keep
        // a second handle on every weight and stop the optimizer updating them in place).
        let mut model = Some(config.init::<B>(&device).with_kernels(kernels));
        let mut optim = crate::train::optim::adamw::<B>();
        let mut rng = NoiseRng::new(0, 0);
        // The warm-up, then each timing: reads every `every` steps and after the last, so the
        // clock starts and stops on finished work.
        let mut run = |steps: usize, every: usize| {
            let started = Instant::now();
            let mut unread = Vec::new();
            for step in 1..=steps {
                let batch = Batch::<B>::random(self.batch, &mut rng, &schedule, config, &device);
                let current = model.take().expect("the model is back after every step");
                let (next, stats) =
                    optimizer_step(current, &mut optim, batch, self.micro, 1e-4, Some(1.0));
                model = Some(next);
                unread.push(stats);
                if step % every == 0 || step == steps {
                    StepStats::read_all(std::mem::take(&mut unread));
                }
            }
            started
        };
        run(self.warmup, 1);
        let timings = self
            .read_every
            .iter()
            .map(|&every| {
                let started = run(self.steps, every.max(1));
                let result = throughput(self.preset, self.batch, self.steps, started);
                (every.max(1), result)
            })
            .collect();
        (timings, kernels)
    }
}

/// Where a training step's time goes: each phase of `steps` optimizer steps run alone, with the
/// device synchronised before and after it, so a phase's time is its own work (host and device)
/// and nothing of its neighbours'. Training itself overlaps them; `synced_step_ms` against an
/// unsynchronised `trainer bench` shows how much.
pub struct ProfileSteps<'a> {
    pub preset: &'a Preset,
    pub batch: usize,
    pub warmup: usize,
    pub steps: usize,
}

/// Median milliseconds of each phase of a training step, in the order a step runs them.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct StepProfile {
    pub preset: String,
    pub batch: usize,
    pub steps: usize,
    /// (phase, median ms): host noise and upload of the batch, forward and loss, backward,
    /// global-norm clipping, AdamW, EMA.
    pub phases: Vec<(String, f64)>,
    /// The phases' sum.
    pub synced_step_ms: f64,
    /// The network's forward pass alone without autodiff (as in sampling), same batch.
    pub inference_forward_ms: f64,
    /// burn's matrix product at the shape of the MLP's first layer over the batch's tokens
    /// (`[batch * tokens, hidden] x [hidden, mlp_ratio * hidden]`): (m, k, n), median ms and
    /// GFLOP/s.
    pub matmul: ([usize; 3], f64, f64),
}

impl OnBackend for ProfileSteps<'_> {
    type Output = (StepProfile, OwnKernels);
    fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> Self::Output {
        let config = &self.preset.model;
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        let mut model = config.init::<B>(&device).with_kernels(kernels);
        let mut ema = model.valid();
        let mut optim = crate::train::optim::adamw::<B>();
        let mut rng = NoiseRng::new(0, 0);
        let names = ["batch", "forward", "backward", "clip", "optimizer", "ema"];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut inference = Vec::new();
        let count = (self.batch * config.image_len()) as f64;
        for step in 0..self.warmup + self.steps {
            let mut phase = Vec::new();
            let (batch, ms) = synced::<B, _>(&device, || {
                Batch::<B>::random(self.batch, &mut rng, &schedule, config, &device)
            });
            phase.push(ms);
            let (error, ms) = synced::<B, _>(&device, || {
                let prediction = model.forward(batch.x_t.clone(), batch.t.clone(), batch.y.clone());
                squared_error(prediction, batch.eps.clone(), count)
            });
            phase.push(ms);
            let (grads, ms) = synced::<B, _>(&device, || {
                GradientsParams::from_grads(error.backward(), &model)
            });
            phase.push(ms);
            let (grads, ms) =
                synced::<B, _>(&device, || clip_global_norm(grads, &model, Some(1.0)).0);
            phase.push(ms);
            let (next, ms) = synced::<B, _>(&device, || optim.step(1e-4, model, grads));
            model = next;
            phase.push(ms);
            let (next, ms) = synced::<B, _>(&device, || ema::update(ema, &model.valid(), 0.9999));
            ema = next;
            phase.push(ms);
            let (_, ms) = synced::<B, _>(&device, || {
                ema.forward(batch.x_t.inner(), batch.t.inner(), batch.y.inner())
            });
            if step >= self.warmup {
                phase
                    .into_iter()
                    .zip(&mut times)
                    .for_each(|(ms, t)| t.push(ms));
                inference.push(ms);
            }
        }
        let phases: Vec<(String, f64)> = names
            .iter()
            .zip(times)
            .map(|(name, t)| (name.to_string(), median(t)))
            .collect();

        let (m, k) = (self.batch * config.num_patches(), config.hidden_size);
        let n = config.mlp_ratio * k;
        let a = Tensor::<B::InnerBackend, 2>::ones([m, k], &device);
        let b = Tensor::<B::InnerBackend, 2>::ones([k, n], &device);
        let matmul: Vec<f64> = (0..self.warmup.max(1) + self.steps)
            .map(|_| synced::<B, _>(&device, || a.clone().matmul(b.clone())).1)
            .skip(self.warmup.max(1))
            .collect();
        let matmul_ms = median(matmul);
        let profile = StepProfile {
            preset: self.preset.name.into(),
            batch: self.batch,
            steps: self.steps,
            synced_step_ms: phases.iter().map(|p| p.1).sum(),
            phases,
            inference_forward_ms: median(inference),
            matmul: (
                [m, k, n],
                matmul_ms,
                2.0 * (m * k * n) as f64 / (matmul_ms * 1e6),
            ),
        };
        (profile, kernels)
    }
}

/// Runs `f` between two synchronisations of `device`: its result and its milliseconds.
fn synced<B: Backend, R>(device: &B::Device, f: impl FnOnce() -> R) -> (R, f64) {
    B::sync(device).expect("the device synchronises");
    let started = Instant::now();
    let out = f();
    B::sync(device).expect("the device synchronises");
    (out, 1e3 * started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Guided DPM-Solver++ steps for `images` images (the network sees twice as many).
pub struct SampleSteps<'a> {
    pub preset: &'a Preset,
    pub images: usize,
    pub warmup: usize,
    pub steps: usize,
}

impl OnBackend for SampleSteps<'_> {
    type Output = (Throughput, OwnKernels);
    fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> Self::Output {
        // Guidance needs the null label, which the reference `mnist` preset leaves out.
        let config = self.preset.model.clone().with_class_dropout(0.1);
        let model = config.init::<B>(&device).valid().with_kernels(kernels);
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        let labels: Vec<usize> = (0..self.images).map(|i| i % config.num_classes).collect();
        let sampler = SamplerConfig {
            steps: self.warmup + self.steps,
            guidance: 3.0,
            ..Default::default()
        };
        let mut started = Instant::now();
        generate::sample(&model, &schedule, &labels, &sampler, |info| {
            if info.step == self.warmup {
                started = Instant::now();
            }
        })
        .expect("labels within the preset");
        let result = throughput(self.preset, self.images, self.steps, started);
        (result, kernels)
    }
}

fn throughput(preset: &Preset, batch: usize, steps: usize, started: Instant) -> Throughput {
    let seconds = started.elapsed().as_secs_f64();
    Throughput {
        preset: preset.name.into(),
        batch,
        steps,
        ms_per_step: 1e3 * seconds / steps as f64,
        images_per_sec: (batch * steps) as f64 / seconds,
    }
}

/// What `trainer bench` times: `steps` steps of `batch` images of `preset` after `warmup`
/// untimed ones, on `backend` with `kernels`.
#[derive(Clone, Debug)]
pub struct BenchRequest {
    pub backend: BackendChoice,
    pub kernels: KernelChoice,
    pub preset: Preset,
    pub batch: usize,
    /// Images per forward/backward pass of a training step (0: the whole batch).
    pub micro: usize,
    pub warmup: usize,
    pub steps: usize,
    /// Training steps between read-backs of the loss, one timing per value; empty: the
    /// backend's default, as `trainer train` (1 on the CPU, 20 on the GPUs).
    pub read_every: Vec<usize>,
}

impl BenchRequest {
    fn read_every(&self) -> Vec<usize> {
        match self.read_every.is_empty() {
            true => vec![self.backend.default_read_every() as usize],
            false => self.read_every.clone(),
        }
    }
}

/// Optimizer steps of the request's batch (in micro-batches): a JSON object per `read_every`
/// value, the [`Throughput`] plus `kind` (`train`), `backend`, `micro_batch`, `read_every` and
/// `own_kernels` (whether dit-web's own kernels ran).
pub fn train(request: &BenchRequest) -> Result<Vec<serde_json::Value>, String> {
    checked(request)?;
    let task = TrainSteps {
        preset: &request.preset,
        batch: request.batch,
        micro: request.micro,
        warmup: request.warmup,
        steps: request.steps,
        read_every: request.read_every(),
    };
    let (timings, own) = run_with(request.backend, request.kernels, task)?;
    Ok(timings
        .into_iter()
        .map(|(every, result)| {
            let mut json = tagged(&result, "train", request, own);
            json["micro_batch"] = request.micro.into();
            json["read_every"] = every.into();
            json
        })
        .collect())
}

/// Guided sampler steps of the request's batch, tagged like [`train`]'s (`kind`: `sample`).
pub fn sample(request: &BenchRequest) -> Result<serde_json::Value, String> {
    checked(request)?;
    let task = SampleSteps {
        preset: &request.preset,
        images: request.batch,
        warmup: request.warmup,
        steps: request.steps,
    };
    let (result, own) = run_with(request.backend, request.kernels, task)?;
    let mut json = tagged(&result, "sample", request, own);
    json["micro_batch"] = request.micro.into();
    Ok(json)
}

/// `trainer bench --profile`: a [`StepProfile`] of the request's training steps, as one JSON
/// object tagged like [`train`]'s (`kind`: `profile`).
pub fn profile(request: &BenchRequest) -> Result<serde_json::Value, String> {
    checked(request)?;
    let task = ProfileSteps {
        preset: &request.preset,
        batch: request.batch,
        warmup: request.warmup,
        steps: request.steps,
    };
    let (result, own) = run_with(request.backend, request.kernels, task)?;
    Ok(tagged(&result, "profile", request, own))
}

/// Refuses an empty timing.
fn checked(request: &BenchRequest) -> Result<(), String> {
    if request.batch == 0 || request.steps == 0 {
        return Err("the batch size and the number of steps must be positive".into());
    }
    Ok(())
}

/// `result` as JSON with what was timed: `kind`, `backend`, `own_kernels` (whether dit-web's own
/// kernels ran: `own`, on a backend that has some), and the network's `params` and
/// `conditioning`.
fn tagged(
    result: &impl Serialize,
    kind: &str,
    request: &BenchRequest,
    own: OwnKernels,
) -> serde_json::Value {
    let (backend, preset) = (request.backend, &request.preset);
    let mut json = serde_json::to_value(result).expect("results serialize");
    json["kind"] = kind.into();
    json["backend"] = format!("{backend:?}").to_lowercase().into();
    // cpu and wgpu have dit-web's own kernels; the other backends burn's only.
    json["own_kernels"] = match backend {
        BackendChoice::Wgpu => own.wgpu,
        BackendChoice::Cpu => own.flex,
        _ => false,
    }
    .into();
    // The network as timed: flags may have changed the preset's.
    json["params"] = (preset.model.num_params() as u64).into();
    json["conditioning"] = preset.model.conditioning.name().into();
    json
}
