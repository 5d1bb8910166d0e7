//! The step checker and micro-batches: gradients of one batch compared across backends and
//! across splits of the batch.

use burn::backend::Autodiff;
use dit_web::{DitConfig, Preset};
use trainer::backend::OnBackend;
use trainer::train::check::{compare, CheckSide, StepGradients};

/// An MNIST-shaped model with 16 tokens and two blocks: every kind of layer, quick to run.
fn tiny() -> Preset {
    let mut preset = Preset::mnist_cpu();
    preset.model = DitConfig::new(28, 1, 7, 32, 2, 2, 10).with_class_dropout(0.1);
    preset
}

fn side<B: burn::tensor::backend::AutodiffBackend>(
    preset: &Preset,
    batch: usize,
    micro: usize,
    seed: u64,
) -> StepGradients {
    CheckSide {
        preset,
        batch,
        micro,
        seed,
    }
    .run::<B>(Default::default(), Default::default())
}

type Flex = Autodiff<trainer::Cpu>;
type NdArray = Autodiff<trainer::NdArray>;

#[test]
fn micro_batches_give_the_whole_batch_gradients() {
    let preset = tiny();
    let whole = side::<Flex>(&preset, 8, 0, 3);
    for micro in [1, 3, 8] {
        let split = side::<Flex>(&preset, 8, micro, 3);
        let result = compare(&split, &whole);
        assert!(
            result.worst() < 1e-5,
            "micro-batch {micro}: worst {:?}",
            result.params.first()
        );
    }
    // Every parameter got a gradient, and none is all zero (random weights, not the init).
    let values: usize = whole.grads.values().map(Vec::len).sum();
    assert_eq!(values as u128, preset.model.num_params());
    let zero = whole
        .grads
        .iter()
        .filter(|(_, g)| g.iter().all(|&v| v == 0.0))
        .map(|(n, _)| n.clone())
        .collect::<Vec<_>>();
    assert!(zero.is_empty(), "all-zero gradients: {zero:?}");
}

#[test]
fn flex_and_ndarray_agree_and_a_different_batch_does_not() {
    let preset = tiny();
    let flex = side::<Flex>(&preset, 4, 0, 5);
    let ndarray = side::<NdArray>(&preset, 4, 0, 5);
    let result = compare(&flex, &ndarray);
    // Different kernels (GELU's erf, reduction orders) differ in the last bits of f32.
    assert!(
        result.worst() < 1e-3,
        "flex vs ndarray: {:?}",
        &result.params[..3]
    );
    assert!((result.loss[0] - result.loss[1]).abs() < 1e-6 * result.loss[1]);

    // The checker sees a real difference: another seed means other weights and data.
    let other = side::<NdArray>(&preset, 4, 0, 6);
    let result = compare(&flex, &other);
    assert!(result.worst() > 0.1, "{}", result.worst());
    assert!(result
        .params
        .windows(2)
        .all(|w| w[0].relative >= w[1].relative));
}

#[test]
fn clipping_scales_every_gradient_to_the_bound_and_leaves_smaller_norms_alone() {
    use dit_web::diffusion::{NoiseRng, NoiseSchedule};
    use trainer::train::check::named_gradients;
    use trainer::train::step::{batch_gradients, clip_global_norm, Batch, StepStats};

    let preset = tiny();
    let device = Default::default();
    let model = preset.model.init::<Flex>(&device);
    let schedule = NoiseSchedule::new(&preset.schedule);
    let batch = || {
        let mut rng = NoiseRng::new(7, 0);
        Batch::<Flex>::random(4, &mut rng, &schedule, &preset.model, &device)
    };
    let clipped = |max: Option<f64>| {
        let (grads, loss) = batch_gradients(&model, batch(), 0);
        let (grads, grad_norm) = clip_global_norm(grads, &model, max);
        let (_, norm) = StepStats { loss, grad_norm }.read();
        (norm, named_gradients(&model, &grads))
    };
    let (norm, raw) = clipped(None);
    assert!(norm > 0.0);
    let global = |grads: &std::collections::BTreeMap<String, Vec<f32>>| {
        grads
            .values()
            .flatten()
            .map(|&g| f64::from(g).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    assert!((global(&raw) - norm).abs() <= 1e-5 * norm);

    // A bound above the norm: the very same gradients, and the norm reported as before.
    let (reported, loose) = clipped(Some(2.0 * norm));
    assert_eq!(reported, norm);
    assert_eq!(loose, raw);

    // A bound of a quarter: each gradient scaled by max / (norm + 1e-6), the whole to the bound.
    let (reported, tight) = clipped(Some(norm / 4.0));
    assert_eq!(reported, norm);
    let scale = 0.25 * norm / (norm + 1e-6);
    for (name, g) in &tight {
        for (a, b) in g.iter().zip(&raw[name]) {
            let want = f64::from(*b) * scale;
            assert!(
                (f64::from(*a) - want).abs() <= 1e-6 * want.abs().max(1e-9),
                "{name}: {a} vs {want}"
            );
        }
    }
    assert!((global(&tight) - norm / 4.0).abs() <= 1e-5 * norm);
}
