//! Exponential moving average of the weights: `ema = decay * ema + (1 - decay) * live` after every
//! optimizer step. burn has no EMA, so this walks both models in the same parameter order.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor};
use dit_web::Dit;

/// The decay for step `step`: `decay`, or with warm-up `min(decay, (1 + step) / (10 + step))`
/// so short runs are not dominated by the initial weights.
pub fn decay_at(decay: f64, warmup: bool, step: u64) -> f64 {
    if warmup {
        decay.min((1.0 + step as f64) / (10.0 + step as f64))
    } else {
        decay
    }
}

/// Moves `ema` towards `live` (both without autodiff: the EMA never receives gradients).
pub fn update<B: Backend>(ema: Dit<B>, live: &Dit<B>, decay: f64) -> Dit<B> {
    let mut collect = Flatten {
        tensors: Vec::new(),
    };
    live.visit(&mut collect);
    let mut blend = Blend {
        live: collect.tensors.into_iter(),
        decay,
    };
    ema.map(&mut blend)
}

/// The live parameters as flat tensors, in visiting order.
struct Flatten<B: Backend> {
    tensors: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.tensors.push(param.val().flatten(0, D - 1));
    }
}

struct Blend<B: Backend, I: Iterator<Item = Tensor<B, 1>>> {
    live: I,
    decay: f64,
}

impl<B: Backend, I: Iterator<Item = Tensor<B, 1>>> ModuleMapper<B> for Blend<B, I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let live = self
            .live
            .next()
            .expect("EMA and live models have the same parameters");
        let live: Tensor<B, D> = live.reshape(ema.dims());
        let blended = ema * self.decay + live * (1.0 - self.decay);
        Param::from_mapped_value(id, blended, mapper)
    }
}
