//! One optimizer step: draw a noisy batch on the host, predict the noise, MSE, backward, clip,
//! AdamW. Shared by training and the LR finder.

use burn::module::ParamId;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::{Dit, DitConfig};

use super::grads::{for_each, param_ids, EachGradient};
use crate::data::loader::Batches;

/// A training batch on the host: `x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`, its target eps, the
/// timesteps and the labels (after label dropout). Data-parallel training cuts it into one slice
/// per device ([`HostBatch::slice`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    pub x_t: Vec<f32>,
    pub eps: Vec<f32>,
    pub t: Vec<usize>,
    pub y: Vec<usize>,
    /// `[C, H, W]` of one image.
    pub image: [usize; 3],
}

impl HostBatch {
    /// Next images from the loader; uniform timesteps, fresh noise and label dropout all come
    /// from the run's host RNG (in this order), so a resumed run draws the same numbers.
    pub fn draw(
        loader: &mut impl Batches,
        rng: &mut NoiseRng,
        schedule: &NoiseSchedule,
        config: &DitConfig,
        n: usize,
        label_dropout: f64,
    ) -> Self {
        let (x0, labels) = loader.next_batch(n);
        Self::noised(x0, labels, rng, schedule, config, label_dropout)
    }

    /// A batch of `n` host-made images (uniform in [-1, 1]) and labels, all from `rng`: the same
    /// numbers on every backend (the step checker and `trainer bench` use it).
    pub fn random(
        n: usize,
        rng: &mut NoiseRng,
        schedule: &NoiseSchedule,
        config: &DitConfig,
    ) -> Self {
        let mut x0 = vec![0f32; n * config.image_len()];
        x0.iter_mut()
            .for_each(|v| *v = (2.0 * rng.uniform() - 1.0) as f32);
        let labels = (0..n).map(|_| rng.below(config.num_classes)).collect();
        Self::noised(x0, labels, rng, schedule, config, config.class_dropout)
    }

    /// The training batch for clean images `x0` (`[n * C * H * W]`) of classes `labels`.
    pub fn noised(
        x0: Vec<f32>,
        mut labels: Vec<usize>,
        rng: &mut NoiseRng,
        schedule: &NoiseSchedule,
        config: &DitConfig,
        label_dropout: f64,
    ) -> Self {
        let n = labels.len();
        let t: Vec<usize> = (0..n)
            .map(|_| rng.below(schedule.num_timesteps()))
            .collect();
        let mut eps = vec![0f32; x0.len()];
        rng.fill_normal(&mut eps);
        if let Some(null) = config.null_label() {
            for l in labels.iter_mut() {
                if rng.uniform() < label_dropout {
                    *l = null;
                }
            }
        }
        Self {
            x_t: schedule.q_sample(&x0, &eps, &t),
            eps,
            t,
            y: labels,
            image: [config.in_channels, config.input_size, config.input_size],
        }
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Images `range` of the batch.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        let per = self.image.iter().product::<usize>();
        let values = range.start * per..range.end * per;
        Self {
            x_t: self.x_t[values.clone()].to_vec(),
            eps: self.eps[values].to_vec(),
            t: self.t[range.clone()].to_vec(),
            y: self.y[range].to_vec(),
            image: self.image,
        }
    }

    /// The batch on `device` (its host values move into the tensors, uncopied).
    pub fn upload<B: Backend>(self, device: &B::Device) -> Batch<B> {
        let n = self.len();
        let [c, h, w] = self.image;
        let shape = [n, c, h, w];
        let floats = |v: &[usize]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        Batch {
            x_t: Tensor::from_data(TensorData::new(self.x_t, shape), device),
            eps: Tensor::from_data(TensorData::new(self.eps, shape), device),
            t: Tensor::from_data(TensorData::new(floats(&self.t), [n]), device),
            y: Tensor::from_data(
                TensorData::new(self.y.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]),
                device,
            ),
        }
    }
}

/// A training batch on the device (see [`HostBatch`]).
pub struct Batch<B: Backend> {
    pub x_t: Tensor<B, 4>,
    pub eps: Tensor<B, 4>,
    pub t: Tensor<B, 1>,
    pub y: Tensor<B, 1, Int>,
}

impl<B: Backend> Batch<B> {
    /// [`HostBatch::random`], on `device`.
    pub fn random(
        n: usize,
        rng: &mut NoiseRng,
        schedule: &NoiseSchedule,
        config: &DitConfig,
        device: &B::Device,
    ) -> Self {
        HostBatch::random(n, rng, schedule, config).upload(device)
    }
}

/// A step's loss and gradient norm (before clipping), still on the device: one-element tensors
/// whose values exist once the device has run the step. Nothing in a step reads a value back,
/// so a GPU can run ahead of the host; [`StepStats::read_all`] waits once for many steps.
pub struct StepStats<B: Backend> {
    pub loss: Tensor<B, 1>,
    pub grad_norm: Tensor<B, 1>,
}

impl<B: Backend> StepStats<B> {
    /// This step's (loss, gradient norm); waits for the device to finish the step.
    pub fn read(self) -> (f64, f64) {
        Self::read_all(vec![self])[0]
    }

    /// (loss, gradient norm) of each step, in order, with a single read-back.
    pub fn read_all(steps: Vec<Self>) -> Vec<(f64, f64)> {
        if steps.is_empty() {
            return Vec::new();
        }
        let values: Vec<Tensor<B, 1>> = steps
            .into_iter()
            .flat_map(|s| [s.loss, s.grad_norm])
            .collect();
        let values = Tensor::cat(values, 0)
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .expect("f64 after convert");
        values.chunks(2).map(|v| (v[0], v[1])).collect()
    }
}

/// Forward, epsilon-MSE, backward (in micro-batches of at most `micro` images), global-norm
/// clipping, AdamW, all queued on the device without waiting for it. Returns the updated model
/// and the step's loss and gradient norm before clipping, unread.
pub fn optimizer_step<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
    model: Dit<B>,
    optim: &mut O,
    batch: Batch<B>,
    micro: usize,
    lr: f64,
    grad_clip: Option<f64>,
) -> (Dit<B>, StepStats<B::InnerBackend>) {
    let (grads, loss) = batch_gradients(&model, batch, micro);
    let (grads, grad_norm) = clip_global_norm(grads, &model, grad_clip);
    (optim.step(lr, model, grads), StepStats { loss, grad_norm })
}

/// The mean-squared noise-prediction error of a batch and its gradients, with forward and
/// backward run on micro-batches of at most `micro` images (0: the whole batch at once). Each
/// micro-batch's squared error is summed and divided by the whole batch's element count, so the
/// summed gradients are the full batch's, whatever the split; activations need memory for one
/// micro-batch only. The loss stays on the device (a one-element tensor).
pub fn batch_gradients<B: AutodiffBackend>(
    model: &Dit<B>,
    batch: Batch<B>,
    micro: usize,
) -> (GradientsParams, Tensor<B::InnerBackend, 1>) {
    let count = batch.eps.shape().num_elements();
    slice_gradients(model, batch, micro, count)
}

/// [`batch_gradients`] of one slice of a larger batch of `count` elements in all: the squared
/// error is divided by `count`, so the slices' losses and gradients add up to the whole batch's
/// (data-parallel training sums them across devices).
pub fn slice_gradients<B: AutodiffBackend>(
    model: &Dit<B>,
    batch: Batch<B>,
    micro: usize,
    count: usize,
) -> (GradientsParams, Tensor<B::InnerBackend, 1>) {
    let n = batch.t.dims()[0];
    let micro = if micro == 0 { n } else { micro.min(n) };
    let count = count as f64;
    let mut accumulator = GradientsAccumulator::<Dit<B>>::new();
    let mut loss: Option<Tensor<B::InnerBackend, 1>> = None;
    for start in (0..n).step_by(micro) {
        let range = start..(start + micro).min(n);
        let part = |t: Tensor<B, 4>| t.slice(range.clone());
        let prediction = model.forward(
            part(batch.x_t.clone()),
            batch.t.clone().slice(range.clone()),
            batch.y.clone().slice(range.clone()),
        );
        let error = squared_error(prediction, part(batch.eps.clone()), count);
        let value = error.clone().inner();
        loss = Some(loss.map_or(value.clone(), |sum| sum + value));
        accumulator.accumulate(model, GradientsParams::from_grads(error.backward(), model));
    }
    (
        accumulator.grads(),
        loss.expect("a batch has at least one image"),
    )
}

/// The summed squared error of a noise prediction divided by `count`, the whole batch's element
/// count (so micro-batches add up to the batch's mean).
pub fn squared_error<B: Backend>(
    prediction: Tensor<B, 4>,
    eps: Tensor<B, 4>,
    count: f64,
) -> Tensor<B, 1> {
    (prediction - eps).powf_scalar(2.0).sum().div_scalar(count)
}

/// Global gradient-norm clipping as PyTorch's `clip_grad_norm_` (burn's own clipping works per
/// tensor): every gradient times `min(1, max_norm / (norm + 1e-6))`, computed on the device, so
/// the host never waits for the norm. Returns the gradients and the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend>(
    mut grads: GradientsParams,
    model: &Dit<B>,
    max_norm: Option<f64>,
) -> (GradientsParams, Tensor<B::InnerBackend, 1>) {
    struct SumSquares<B: Backend>(Option<Tensor<B, 1>>);
    impl<B: Backend> EachGradient for SumSquares<B> {
        fn gradient<const D: usize>(&mut self, id: ParamId, grads: &mut GradientsParams) {
            if let Some(g) = grads.get::<B, D>(id) {
                let s = g.powf_scalar(2.0).sum();
                self.0 = Some(match self.0.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<B: Backend>(Tensor<B, 1>);
    impl<B: Backend> EachGradient for Scale<B> {
        fn gradient<const D: usize>(&mut self, id: ParamId, grads: &mut GradientsParams) {
            if let Some(g) = grads.remove::<B, D>(id) {
                let scale = self.0.clone().reshape([1; D]);
                grads.register::<B, D>(id, g * scale);
            }
        }
    }
    let ids = param_ids(model);
    let mut total = SumSquares::<B::InnerBackend>(None);
    for_each(&ids, &mut grads, &mut total);
    let norm = total.0.expect("a DiT has parameters").sqrt();
    if let Some(max) = max_norm {
        // Exactly 1 when the norm is within the bound, so unclipped gradients stay as they are.
        let scale = norm
            .clone()
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(max)
            .clamp_max(1.0);
        for_each(&ids, &mut grads, &mut Scale(scale));
    }
    (grads, norm)
}
