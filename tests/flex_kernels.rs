//! The model's own burn-flex code (`src/model/kernels/flex.rs`: Linear with its bias in `gemm`,
//! attention on heads in place, LayerNorm + modulation in one pass, GELU with a polynomial `erf`)
//! against burn-ndarray, which runs burn's generic ops. burn-flex is the CPU backend natively and
//! the browser's fallback; the browser tests check it through whole images, these check the
//! network's output on every block design and on shapes with odd sizes. Under autodiff
//! (`src/model/kernels/flex_train.rs`, training on the CPU) the same operations with their own
//! backward are checked by every parameter's gradient.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::{Flex, FlexDevice};
use dit_web::diffusion::NoiseRng;
use dit_web::model::OwnKernels;
use dit_web::weights::{Quantization, WeightFile};
use dit_web::Dit;

use crate::common::*;
use dit_web::{Conditioning, DitConfig, Flavour};

#[test]
fn every_block_design_matches_burn_ndarray_on_burn_flex() {
    // Both flavours: the seed's exact GELU runs the polynomial erf, the paper's tanh GELU runs
    // burn's. Cross-attention reads 2 keys for 16 queries.
    for (flavour, conditioning) in all_variants() {
        let config = tiny_config(flavour, conditioning);
        let model = random_model(&config, 5);
        for batch in [1, 3] {
            let what = format!("{flavour:?} {conditioning:?}");
            assert_matches_ndarray::<Flex>(&config, &model, batch, &what, &FlexDevice);
        }
    }
}

#[test]
fn odd_shapes_match_burn_ndarray_on_burn_flex() {
    // 9 tokens per image (input 6, patch 2), 5 images, heads of 8 and of 3 floats, width 24.
    for heads in [3, 8] {
        let config = DitConfig::new(6, 1, 2, 24, 2, heads, 3)
            .with_class_dropout(0.1)
            .with_flavour(Flavour::Seed)
            .with_conditioning(Conditioning::AdalnZero);
        let model = random_model(&config, 9);
        let what = format!("{heads} heads of {}", 24 / heads);
        assert_matches_ndarray::<Flex>(&config, &model, 5, &what, &FlexDevice);
    }
}

/// Each parameter's gradient of `sum(out * w)` for a fixed random `w`, in the module's order.
fn gradients<A: burn::tensor::backend::AutodiffBackend>(
    config: &DitConfig,
    model: &Dit<B>,
    batch: usize,
    own: OwnKernels,
    device: &A::Device,
) -> Vec<Vec<f32>> {
    struct Collect<'g, A: burn::tensor::backend::AutodiffBackend> {
        grads: &'g A::Gradients,
        out: Vec<Vec<f32>>,
    }
    impl<A: burn::tensor::backend::AutodiffBackend> ModuleVisitor<A> for Collect<'_, A> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            let grad = param
                .val()
                .grad(self.grads)
                .expect("every parameter gets a gradient");
            self.out.push(grad.into_data().into_vec::<f32>().unwrap());
        }
    }
    let (model, _) = WeightFile::from_model(model, meta(config, Quantization::F32))
        .into_model::<A>(device)
        .expect("the same weights load");
    let model = model.with_kernels(own);
    let s = config.input_size;
    let mut x = vec![0f32; batch * config.image_len()];
    NoiseRng::new(batch as u64, 0).fill_normal(&mut x);
    let mut w = vec![0f32; x.len()];
    NoiseRng::new(batch as u64, 1).fill_normal(&mut w);
    let shape = [batch, config.in_channels, s, s];
    let t: Vec<f32> = (0..batch).map(|i| 7.0 + 40.0 * i as f32).collect();
    let y: Vec<i64> = (0..batch)
        .map(|i| (i % config.num_classes) as i64)
        .collect();
    let out = model.forward(
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(t, [batch]), device),
        Tensor::<A, 1, Int>::from_data(TensorData::new(y, [batch]), device),
    );
    let grads = (out * Tensor::from_data(TensorData::new(w, shape), device))
        .sum()
        .backward();
    let mut collect = Collect::<A> {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    collect.out
}

#[test]
fn training_gradients_of_the_own_operations_match_burns() {
    // burn-flex under autodiff runs the model's own Linear, attention, LayerNorm + modulation and
    // exact GELU operations with their own backward; with them off, the same backend runs burn's
    // generic ops and their derivatives. Every parameter's gradient agrees, on every block design
    // and on odd shapes (9 tokens, heads of 3 floats).
    type Flexad = burn::backend::Autodiff<Flex>;
    let odd = DitConfig::new(6, 1, 2, 24, 2, 8, 3)
        .with_class_dropout(0.1)
        .with_flavour(Flavour::Seed)
        .with_conditioning(Conditioning::AdalnZero);
    let configs = all_variants()
        .into_iter()
        .map(|(f, c)| tiny_config(f, c))
        .chain([odd]);
    for (i, config) in configs.enumerate() {
        let model = random_model(&config, 11 + i as u64);
        let own = gradients::<Flexad>(&config, &model, 3, OwnKernels::default(), &FlexDevice);
        let burns = gradients::<Flexad>(&config, &model, 3, OwnKernels::NONE, &FlexDevice);
        assert_eq!(own.len(), burns.len());
        // Rounding also scales with the largest gradients: the keys' bias has a zero gradient in
        // exact arithmetic (softmax ignores a constant added to a row of scores), so both sides
        // hold rounding noise there.
        let largest = burns.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        for (p, (e, g)) in burns.iter().zip(&own).enumerate() {
            let scale = e.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(e, g);
            assert!(
                diff <= 2e-5 * scale + 1e-7 * largest,
                "config {i} ({:?} {:?}), parameter {p}: gradients differ by {diff} (up to {scale})",
                config.flavour,
                config.conditioning
            );
        }
    }
}

#[test]
fn a_model_runs_the_kernels_it_was_given_whatever_ran_before_it() {
    // Two models of the same weights in one process, one on dit-web's kernels and one on burn's:
    // each gives its own output, bit for bit, before and after the other ran, and the two
    // differ (so the setting reached the layers) only by float rounding.
    let config = tiny_config(Flavour::Seed, Conditioning::AdalnZero);
    let source = random_model(&config, 21);
    let load = |own: OwnKernels| {
        let (model, _) = WeightFile::from_model(&source, meta(&config, Quantization::F32))
            .into_model::<Flex>(&FlexDevice)
            .expect("the same weights load");
        model.with_kernels(own)
    };
    let (ours, burns) = (load(OwnKernels::default()), load(OwnKernels::NONE));
    assert_eq!(ours.kernels(), OwnKernels::default());
    assert_eq!(burns.kernels(), OwnKernels::NONE);
    let run = |model: &Dit<Flex>| {
        let n = 3;
        let s = config.input_size;
        let mut x = vec![0f32; n * config.image_len()];
        NoiseRng::new(4, 0).fill_normal(&mut x);
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(x, [n, config.in_channels, s, s]),
            &FlexDevice,
        );
        let t =
            Tensor::<Flex, 1>::from_data(TensorData::new(vec![9.0, 50.0, 91.0], [n]), &FlexDevice);
        let y =
            Tensor::<Flex, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2], [n]), &FlexDevice);
        model
            .forward(x, t, y)
            .into_data()
            .into_vec::<f32>()
            .unwrap()
    };
    let first = run(&ours);
    let burn_first = run(&burns);
    assert_eq!(
        run(&ours),
        first,
        "the own kernels' output changed after burn's ran"
    );
    assert_eq!(
        run(&burns),
        burn_first,
        "burn's output changed after the own kernels ran"
    );
    assert_ne!(first, burn_first, "both models took the same path");
    let diff = max_abs_diff(&first, &burn_first);
    assert!(diff < 1e-4, "the two paths differ by {diff}");
}
