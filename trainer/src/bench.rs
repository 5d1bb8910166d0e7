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
use crate::train::step::{optimizer_step, Batch};

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
}

impl OnBackend for TrainSteps<'_> {
    type Output = Throughput;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Throughput {
        let config = &self.preset.model;
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        let mut model = config.init::<B>(&device);
        let mut optim = AdamWConfig::new().init::<B, dit_web::Dit<B>>();
        let mut rng = NoiseRng::new(0, 0);
        let mut started = Instant::now();
        for step in 0..self.warmup + self.steps {
            if step == self.warmup {
                started = Instant::now();
            }
            let batch = Batch::<B>::random(self.batch, &mut rng, &schedule, config, &device);
            // Each step reads its loss back, as training does, so the clock sees finished work.
            (model, _, _) = optimizer_step(model, &mut optim, batch, self.micro, 1e-4, Some(1.0));
        }
        throughput(self.preset, self.batch, self.steps, started)
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
/// or with `sample` guided sampler steps of `batch` images, on `backend` with `kernels`, as one
/// JSON object: the [`Throughput`] plus `kind`, `backend`, `micro_batch` and `own_kernels`
/// (whether dit-web's own kernels ran).
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
) -> Result<serde_json::Value, String> {
    if batch == 0 || steps == 0 {
        return Err("the batch size and the number of steps must be positive".into());
    }
    set_kernel_choice(kernels);
    let result = if sample {
        let task = SampleSteps {
            preset,
            images: batch,
            warmup,
            steps,
        };
        run_on(backend, task)?
    } else {
        let task = TrainSteps {
            preset,
            batch,
            micro,
            warmup,
            steps,
        };
        run_on(backend, task)?
    };
    let mut json = serde_json::to_value(&result).expect("throughput serializes");
    json["kind"] = if sample { "sample" } else { "train" }.into();
    json["backend"] = format!("{backend:?}").to_lowercase().into();
    json["micro_batch"] = micro.into();
    // cpu and wgpu have dit-web's own kernels; the other backends burn's only.
    let own = dit_web::model::own_kernels();
    json["own_kernels"] = match backend {
        BackendChoice::Wgpu => own.wgpu,
        BackendChoice::Cpu => own.flex,
        _ => false,
    }
    .into();
    // The network as timed: flags may have changed the preset's.
    json["params"] = (preset.model.num_params() as u64).into();
    json["conditioning"] = preset.model.conditioning.name().into();
    Ok(json)
}
