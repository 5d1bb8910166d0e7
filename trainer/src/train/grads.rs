//! A network's gradients taken one parameter at a time, by rank: the one place that turns a
//! parameter's rank (a run-time number) into the const generic burn's `GradientsParams` asks for.
//! Clipping walks them here, and an all-reduce sums them as one flat vector.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use dit_web::Dit;

/// Every float parameter's id and rank, in the module's visiting order.
pub fn param_ids<B: Backend>(model: &Dit<B>) -> Vec<(ParamId, usize)> {
    struct Ids(Vec<(ParamId, usize)>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push((param.id, D));
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// Work on one parameter's gradient, with its rank as a const generic.
pub trait EachGradient {
    fn gradient<const D: usize>(&mut self, id: ParamId, grads: &mut GradientsParams);
}

/// Calls `work` on each of `ids` (id and rank) in order.
pub fn for_each(
    ids: &[(ParamId, usize)],
    grads: &mut GradientsParams,
    work: &mut impl EachGradient,
) {
    for &(id, rank) in ids {
        match rank {
            1 => work.gradient::<1>(id, grads),
            2 => work.gradient::<2>(id, grads),
            3 => work.gradient::<3>(id, grads),
            4 => work.gradient::<4>(id, grads),
            _ => unreachable!("DiT parameters have rank 1 to 4"),
        }
    }
}

/// Where each gradient sits in a flat vector made by [`flatten`].
pub struct Layout(Vec<(ParamId, Vec<usize>)>);

/// Takes the gradients of `ids` out of `grads` into one flat tensor, in `ids`' order (a parameter
/// without a gradient is left out).
pub fn flatten<B: Backend>(
    grads: &mut GradientsParams,
    ids: &[(ParamId, usize)],
) -> (Tensor<B, 1>, Layout) {
    struct Take<B: Backend> {
        parts: Vec<Tensor<B, 1>>,
        layout: Vec<(ParamId, Vec<usize>)>,
    }
    impl<B: Backend> EachGradient for Take<B> {
        fn gradient<const D: usize>(&mut self, id: ParamId, grads: &mut GradientsParams) {
            if let Some(g) = grads.remove::<B, D>(id) {
                self.layout.push((id, g.dims().to_vec()));
                self.parts.push(g.flatten::<1>(0, D - 1));
            }
        }
    }
    let mut take = Take::<B> {
        parts: Vec::new(),
        layout: Vec::new(),
    };
    for_each(ids, grads, &mut take);
    (Tensor::cat(take.parts, 0), Layout(take.layout))
}

/// Puts the gradients [`flatten`] laid out back into `grads` from the front of `flat`, and
/// returns the values that follow them.
pub fn unflatten<B: Backend>(
    flat: Tensor<B, 1>,
    layout: Layout,
    grads: &mut GradientsParams,
) -> Tensor<B, 1> {
    struct Put<B: Backend> {
        flat: Tensor<B, 1>,
        dims: std::vec::IntoIter<Vec<usize>>,
        offset: usize,
    }
    impl<B: Backend> EachGradient for Put<B> {
        fn gradient<const D: usize>(&mut self, id: ParamId, grads: &mut GradientsParams) {
            let dims = self.dims.next().expect("one shape per gradient");
            let n: usize = dims.iter().product();
            let part = self.flat.clone().slice(self.offset..self.offset + n);
            self.offset += n;
            let shape: [usize; D] = dims.as_slice().try_into().expect("rank");
            grads.register::<B, D>(id, part.reshape(shape));
        }
    }
    let ids: Vec<(ParamId, usize)> = layout.0.iter().map(|(id, d)| (*id, d.len())).collect();
    let len = flat.dims()[0];
    let mut put = Put {
        flat,
        dims: layout
            .0
            .into_iter()
            .map(|(_, d)| d)
            .collect::<Vec<_>>()
            .into_iter(),
        offset: 0,
    };
    for_each(&ids, grads, &mut put);
    put.flat.slice(put.offset..len)
}
