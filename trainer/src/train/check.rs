//! The step checker: the loss and every parameter's gradient of one training batch on a backend,
//! against the same batch on a reference backend (or the same backend in micro-batches).
//!
//! Both sides build the same network weights and the same batch on the host from the seed
//! (random weights, not the DiT init: adaLN-Zero starts with zero gates, which would leave most
//! gradients exactly zero and untested), so any difference comes from the backends' arithmetic.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use dit_web::diffusion::{NoiseRng, NoiseSchedule};
use dit_web::model::OwnKernels;
use dit_web::{Dit, Preset};
use serde::Serialize;

use super::step::{batch_gradients, clip_global_norm, Batch, StepStats};
use crate::backend::{run_on, BackendChoice, OnBackend};

/// What one side computed: the loss, the global gradient norm, and each parameter's gradient
/// by its dotted path (`blocks.0.attn.q.weight`).
#[derive(Clone, Debug)]
pub struct StepGradients {
    pub loss: f64,
    pub grad_norm: f64,
    pub grads: BTreeMap<String, Vec<f32>>,
}

/// One training batch of `batch` images of `preset` with seed `seed`, run in micro-batches of
/// `micro` (0: whole), as a task for any backend.
pub struct CheckSide<'a> {
    pub preset: &'a Preset,
    pub batch: usize,
    pub micro: usize,
    pub seed: u64,
}

impl OnBackend for CheckSide<'_> {
    type Output = StepGradients;
    fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> StepGradients {
        let config = &self.preset.model;
        let model = config
            .init::<B>(&device)
            .map(&mut HostRandom(NoiseRng::new(self.seed, 11)))
            .with_kernels(kernels);
        let schedule = NoiseSchedule::new(&self.preset.schedule);
        let mut rng = NoiseRng::new(self.seed, 12);
        let batch = Batch::<B>::random(self.batch, &mut rng, &schedule, config, &device);
        let (grads, loss) = batch_gradients(&model, batch, self.micro);
        let (grads, grad_norm) = clip_global_norm(grads, &model, None);
        let (loss, grad_norm) = StepStats { loss, grad_norm }.read();
        StepGradients {
            loss,
            grad_norm,
            grads: named_gradients(&model, &grads),
        }
    }
}

/// How far one parameter's gradient is from the reference's.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ParamError {
    pub name: String,
    /// |g - g_ref| / max(|g_ref|, [`NORM_FLOOR`] x the global norm) (Euclidean norms).
    pub relative: f64,
    pub reference_norm: f64,
}

/// The comparison of two sides, worst parameter first.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct StepComparison {
    pub loss: [f64; 2],
    pub grad_norm: [f64; 2],
    pub params: Vec<ParamError>,
}

impl StepComparison {
    /// The largest relative gradient error, and the relative loss error, whichever is larger.
    pub fn worst(&self) -> f64 {
        let loss = (self.loss[0] - self.loss[1]).abs() / self.loss[1].abs().max(1e-12);
        self.params.first().map_or(loss, |p| p.relative.max(loss))
    }
}

/// One side of a check: a backend and its micro-batch size (0: the whole batch in one pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub backend: BackendChoice,
    pub micro: usize,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = format!("{:?}", self.backend).to_lowercase();
        match self.micro {
            0 => write!(f, "{backend}"),
            m => write!(f, "{backend} (micro-batch {m})"),
        }
    }
}

/// `trainer check-step`: the same batch of `batch` images of `preset` (seed `seed`) on `tested`
/// and on `reference`, compared. `Err` when a backend cannot run here.
pub fn check_step(
    preset: &Preset,
    batch: usize,
    seed: u64,
    tested: Side,
    reference: Side,
) -> Result<StepComparison, String> {
    let side = |micro| CheckSide {
        preset,
        batch,
        micro,
        seed,
    };
    let a = run_on(tested.backend, side(tested.micro))?;
    let b = run_on(reference.backend, side(reference.micro))?;
    Ok(compare(&a, &b))
}

impl StepComparison {
    /// What `trainer check-step` prints: losses, gradient norms and the `top` worst parameters.
    pub fn table(&self, title: &str, sides: [Side; 2], top: usize) -> String {
        let [a, r] = sides;
        let mut out = format!(
            "{title}: loss {:.6e} on {a}, {:.6e} on {r}; gradient norm {:.6e} vs {:.6e}\n",
            self.loss[0], self.loss[1], self.grad_norm[0], self.grad_norm[1]
        );
        out += &format!(
            "{:<48} {:>12} {:>12}\n",
            "parameter", "rel. error", "|grad| ref"
        );
        for p in self.params.iter().take(top) {
            out += &format!(
                "{:<48} {:>12.3e} {:>12.3e}\n",
                p.name, p.relative, p.reference_norm
            );
        }
        out
    }

    /// The checker's verdict: `Ok` with the line that says the sides match when the worst error
    /// (loss or any gradient) is within `tolerance`, `Err` with the line that says they differ.
    /// A NaN anywhere fails.
    pub fn verdict(&self, sides: [Side; 2], tolerance: f64) -> Result<String, String> {
        let [a, r] = sides;
        let worst = self.worst();
        if worst.is_nan() || worst > tolerance {
            return Err(format!(
                "{a} differs from {r}: worst relative error {worst:.3e} > {tolerance:.1e}"
            ));
        }
        Ok(format!(
            "{a} matches {r}: worst relative error {worst:.3e} <= {tolerance:.1e}"
        ))
    }
}

/// Gradients smaller than this share of the global gradient norm are compared against it
/// instead of their own norm. Some are zero in exact arithmetic and pure rounding noise in
/// practice: a key bias adds the same amount to every score of a row, which softmax ignores.
pub const NORM_FLOOR: f64 = 1e-4;

/// Compares `side` with `reference`: |g - g_ref| / max(|g_ref|, NORM_FLOOR * global norm). A
/// parameter missing on either side counts as an infinite error.
pub fn compare(side: &StepGradients, reference: &StepGradients) -> StepComparison {
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let floor = (NORM_FLOOR * reference.grad_norm).max(1e-30);
    let mut params: Vec<ParamError> = reference
        .grads
        .iter()
        .map(|(name, r)| {
            let reference_norm = norm(r);
            let relative = match side.grads.get(name) {
                Some(g) if g.len() == r.len() => {
                    let diff: Vec<f32> = g.iter().zip(r).map(|(a, b)| a - b).collect();
                    norm(&diff) / reference_norm.max(floor)
                }
                _ => f64::INFINITY,
            };
            ParamError {
                name: name.clone(),
                relative,
                reference_norm,
            }
        })
        .collect();
    params.extend(
        side.grads
            .keys()
            .filter(|name| !reference.grads.contains_key(*name))
            .map(|name| ParamError {
                name: name.clone(),
                relative: f64::INFINITY,
                reference_norm: 0.0,
            }),
    );
    params.sort_by(|a, b| b.relative.total_cmp(&a.relative));
    StepComparison {
        loss: [side.loss, reference.loss],
        grad_norm: [side.grad_norm, reference.grad_norm],
        params,
    }
}

/// Reads every parameter's gradient back to the host, by dotted path.
pub fn named_gradients<B: AutodiffBackend>(
    model: &Dit<B>,
    grads: &GradientsParams,
) -> BTreeMap<String, Vec<f32>> {
    struct Reader<'a> {
        path: Vec<String>,
        grads: &'a GradientsParams,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Reader<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let values = g
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("f32 gradients");
                self.out.insert(self.path.join("."), values);
            }
        }
    }
    let mut reader = Reader {
        path: Vec::new(),
        grads,
        out: BTreeMap::new(),
    };
    model.visit(&mut reader);
    reader.out
}

/// Replaces every parameter by host noise with a fan-in scale (0.02 for vectors), the same bits
/// on every backend.
struct HostRandom(NoiseRng);

impl<B: AutodiffBackend> ModuleMapper<B> for HostRandom {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let std = match D {
            1 => 0.02,
            // Linear [in, out]; convolution [out, in, kh, kw].
            2 => 1.0 / (dims[0] as f64).sqrt(),
            _ => 1.0 / (dims[1..].iter().product::<usize>() as f64).sqrt(),
        };
        let mut values = vec![0f32; dims.iter().product()];
        self.0.fill_normal(&mut values);
        values.iter_mut().for_each(|v| *v *= std as f32);
        let fresh = Tensor::from_data(TensorData::new(values, dims), &tensor.device())
            .set_require_grad(tensor.is_require_grad());
        Param::from_mapped_value(id, fresh, mapper)
    }
}
