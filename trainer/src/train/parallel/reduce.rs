//! The sums of a data-parallel run: gradients (with the loss) in one all-reduce per step, the
//! agreement at a read-back, and the leader's weights handed to every replica at the start.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{all_reduce, PeerId, ReduceOperation};
use dit_web::Dit;

use super::machines::Machines;
use crate::train::grads::{flatten, param_ids, unflatten};
use crate::train::step::{clip_global_norm, slice_gradients, HostBatch, StepStats};

/// How a peer sums over the whole run: burn-collective's all-reduce over this machine's devices,
/// then, with several machines, the machines' totals summed by MPI, handed back to every
/// device by a second all-reduce to which only the leader gives numbers (a sum with zeros is
/// exact).
pub(super) struct Reducer<'m> {
    pub peer: PeerId,
    pub nodes: u32,
    /// The leader's side of the sums across machines; `None` on followers.
    pub machines: Option<&'m mut Machines>,
}

impl Reducer<'_> {
    fn sum<B: Backend>(&mut self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, String> {
        let reduce = |peer, t: Tensor<B, 1>| {
            all_reduce::<B>(peer, t.into_primitive().tensor(), ReduceOperation::Sum)
                .map(|t| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t)))
                .map_err(|e| format!("{e:?}"))
        };
        let local = reduce(self.peer, tensor)?;
        if self.nodes == 1 {
            return Ok(local);
        }
        let mine = match self.machines.as_mut() {
            Some(machines) => {
                let device = local.device();
                let mut values = local
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?;
                machines
                    .sum(&mut values)
                    .map_err(|e| format!("summing across machines: {e}"))?;
                let n = values.len();
                Tensor::from_data(TensorData::new(values, [n]), &device)
            }
            None => local.zeros_like(),
        };
        reduce(self.peer, mine)
    }
}

/// One replica's part of a step: its slice's gradients, summed with every other replica's by one
/// all-reduce (the loss travels in the same tensor), then clipping and AdamW.
#[allow(clippy::too_many_arguments)]
pub(super) fn step_slice<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
    sum: &mut Reducer<'_>,
    model: Dit<B>,
    optim: &mut O,
    slice: HostBatch,
    device: &B::Device,
    count: usize,
    micro: usize,
    lr: f64,
    grad_clip: Option<f64>,
) -> Result<(Dit<B>, StepStats<B::InnerBackend>), String> {
    let (grads, loss) = slice_gradients(&model, slice.upload::<B>(device), micro, count);
    let (grads, loss) = all_reduce_gradients(sum, &model, grads, loss)?;
    let (grads, grad_norm) = clip_global_norm(grads, &model, grad_clip);
    Ok((optim.step(lr, model, grads), StepStats { loss, grad_norm }))
}

/// Sums every replica's gradients (and losses) with one all-reduce of one flat tensor.
fn all_reduce_gradients<B: AutodiffBackend>(
    sum: &mut Reducer<'_>,
    model: &Dit<B>,
    mut grads: GradientsParams,
    loss: Tensor<B::InnerBackend, 1>,
) -> Result<(GradientsParams, Tensor<B::InnerBackend, 1>), String> {
    let (flat, layout) = flatten::<B::InnerBackend>(&mut grads, &param_ids(model));
    let summed = sum.sum(Tensor::cat(vec![flat, loss], 0))?;
    let loss = unflatten(summed, layout, &mut grads);
    Ok((grads, loss))
}

/// One all-reduce of `[stop, total]`: whether any peer asked to stop, and the leader's schedule
/// length (the others give 0).
pub(super) fn agree<B: Backend>(
    sum: &mut Reducer<'_>,
    device: &B::Device,
    stop: bool,
    total: u64,
) -> Result<(bool, u64), String> {
    let flags = Tensor::<B, 1>::from_floats([f32::from(u8::from(stop)), total as f32], device);
    let values = sum
        .sum(flags)?
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("f64 after convert");
    Ok((values[0] > 0.0, values[1].round() as u64))
}

/// Peer 0's weights on every replica: every parameter as one flat tensor, summed across the peers
/// with every peer but 0 giving zeros (a sum with zeros is exact, and it crosses machines the way
/// every other sum does).
pub(super) fn sync_weights<B: AutodiffBackend>(
    sum: &mut Reducer<'_>,
    model: Dit<B>,
) -> Result<Dit<B>, String> {
    struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<B::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().inner().flatten::<1>(0, D - 1));
        }
    }
    let mut flat = Flatten::<B::InnerBackend>(Vec::new());
    model.visit(&mut flat);
    let mut mine = Tensor::cat(flat.0, 0);
    if sum.peer.0 != 0 {
        mine = mine.zeros_like();
    }
    let weights = sum.sum(mine)?;

    /// Sets every parameter from the flat tensor, in the visitor's order.
    struct Unflatten<B: Backend> {
        weights: Tensor<B, 1>,
        offset: usize,
    }
    impl<B: AutodiffBackend> ModuleMapper<B> for Unflatten<B::InnerBackend> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims();
            let n: usize = dims.iter().product();
            let part = self.weights.clone().slice(self.offset..self.offset + n);
            self.offset += n;
            let value = Tensor::<B, D>::from_inner(part.reshape(dims))
                .set_require_grad(tensor.is_require_grad());
            Param::from_mapped_value(id, value, mapper)
        }
    }
    Ok(model.map(&mut Unflatten { weights, offset: 0 }))
}
