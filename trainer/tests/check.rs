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
    .run::<B>(Default::default())
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
