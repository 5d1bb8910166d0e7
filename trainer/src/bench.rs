//! Throughput on any backend, for `trainer bench` (and `make bench-gpu` on a GPU machine):
//! optimizer steps per second on host-made batches, and sampler steps per second.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn::tensor::backend::AutodiffBackend;
use dit_web::diffusion::{NoiseRng, NoiseSchedule, SamplerConfig};
use dit_web::generate::sample;
use dit_web::Preset;
use serde::Serialize;

use crate::backend::{run_on, set_kernel_choice, BackendChoice, KernelChoice, OnBackend};
use crate::train::step::{optimizer_step, Batch, StepStats};

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
    type Output = Vec<(usize, Throughput)>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let config = &self.preset.model;
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        // In an Option so the closure below can move it through each step (a clone would keep
        // a second handle on every weight and stop the optimizer updating them in place).
        let mut model = Some(config.init::<B>(&device));
        let mut optim = AdamWConfig::new().init::<B, dit_web::Dit<B>>();
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
        self.read_every
            .iter()
            .map(|&every| {
                let started = run(self.steps, every.max(1));
                let result = throughput(self.preset, self.batch, self.steps, started);
                (every.max(1), result)
            })
            .collect()
    }
}

/// Guided DPM-Solver++ steps for `images` images (the network sees twice as many).
pub struct SampleSteps<'a> {
    pub preset: &'a Preset,
    pub images: usize,
    pub warmup: usize,
    pub steps: usize,
}

impl OnBackend for SampleSteps<'_> {
    type Output = Throughput;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Throughput {
        // Guidance needs the null label, which the reference `mnist` preset leaves out.
        let config = self.preset.model.clone().with_class_dropout(0.1);
        let model = config.init::<B>(&device).valid();
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        let labels: Vec<usize> = (0..self.images).map(|i| i % config.num_classes).collect();
        let sampler = SamplerConfig {
            steps: self.warmup + self.steps,
            guidance: 3.0,
            ..Default::default()
        };
        let mut started = Instant::now();
        sample(&model, &schedule, &labels, &sampler, |info| {
            if info.step == self.warmup {
                started = Instant::now();
            }
        })
        .expect("labels within the preset");
        throughput(self.preset, self.images, self.steps, started)
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

/// `trainer bench`: optimizer steps of `batch` images (in micro-batches of `micro`; 0: whole),
/// or with `sample` guided sampler steps of `batch` images, on `backend` with `kernels`: a JSON
/// object per timing (training: one per `read_every` value), the [`Throughput`] plus `kind`,
/// `backend`, `micro_batch`, `read_every` (training) and `own_kernels` (whether dit-web's own
/// kernels ran).
#[allow(clippy::too_many_arguments)]
pub fn bench(
    backend: BackendChoice,
    kernels: KernelChoice,
    preset: &Preset,
    batch: usize,
    micro: usize,
    sample: bool,
    warmup: usize,
    steps: usize,
    read_every: &[usize],
) -> Result<Vec<serde_json::Value>, String> {
    if batch == 0 || steps == 0 {
        return Err("the batch size and the number of steps must be positive".into());
    }
    set_kernel_choice(kernels);
    let results: Vec<(Option<usize>, Throughput)> = if sample {
        let task = SampleSteps {
            preset,
            images: batch,
            warmup,
            steps,
        };
        vec![(None, run_on(backend, task)?)]
    } else {
        let task = TrainSteps {
            preset,
            batch,
            micro,
            warmup,
            steps,
            read_every: read_every.to_vec(),
        };
        let timings = run_on(backend, task)?;
        timings.into_iter().map(|(n, t)| (Some(n), t)).collect()
    };
    // cpu and wgpu have dit-web's own kernels; the other backends burn's only.
    let own = dit_web::model::own_kernels();
    let own = match backend {
        BackendChoice::Wgpu => own.wgpu,
        BackendChoice::Cpu => own.flex,
        _ => false,
    };
    let json = |(read_every, result): (Option<usize>, Throughput)| {
        let mut json = serde_json::to_value(&result).expect("throughput serializes");
        json["kind"] = if sample { "sample" } else { "train" }.into();
        json["backend"] = format!("{backend:?}").to_lowercase().into();
        json["micro_batch"] = micro.into();
        if let Some(n) = read_every {
            json["read_every"] = n.into();
        }
        json["own_kernels"] = own.into();
        // The network as timed: flags may have changed the preset's.
        json["params"] = (preset.model.num_params() as u64).into();
        json["conditioning"] = preset.model.conditioning.name().into();
        json
    };
    Ok(results.into_iter().map(json).collect())
}
