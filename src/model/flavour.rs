//! What a flavour (the paper's or the seed's) changes inside a forward pass, decided once when a
//! layer is built: the layers keep the chosen activation or chunk positions and never look at the
//! flavour again.

use burn::tensor::activation::{gelu, gelu_approximate, selu, silu};
use burn::tensor::{backend::Backend, Tensor};

use super::kernels::{flex, from_primitive, into_primitive, OwnKernels};
use crate::config::Flavour;

/// A pointwise activation chosen when a layer is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Activation {
    Silu,
    Selu,
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
}

impl Activation {
    /// On the conditioning vector inside `t_embedder`'s MLP and before the final layer's adaLN
    /// regression: SiLU in the paper, SELU in the seed flavour.
    pub fn for_conditioning(flavour: Flavour) -> Self {
        match flavour {
            Flavour::Paper => Self::Silu,
            Flavour::Seed => Self::Selu,
        }
    }

    /// In the blocks' MLP: the tanh approximation in the paper, the exact GELU in the seed.
    pub fn for_mlp(flavour: Flavour) -> Self {
        match flavour {
            Flavour::Paper => Self::GeluTanh,
            Flavour::Seed => Self::Gelu,
        }
    }

    pub fn apply<B: Backend, const D: usize>(
        self,
        x: Tensor<B, D>,
        own: OwnKernels,
    ) -> Tensor<B, D> {
        match self {
            Self::Silu => silu(x),
            Self::Selu => selu(x),
            Self::Gelu if own.flex => exact_gelu(x),
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
        }
    }
}

/// The exact GELU; on burn-flex in place with `model::kernels::flex`'s polynomial `erf` (libm's
/// `erff` was 8 % of the page's CPU step).
fn exact_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    // Training on burn-flex: one autodiff operation with its own backward.
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(y) = super::kernels::primitive::<B, super::kernels::flex_train::TrainTensor, D>(&x)
        .and_then(|x| super::kernels::flex_train::gelu_exact(&x))
    {
        return from_primitive(y);
    }
    match into_primitive::<B, burn_flex::FlexTensor, D>(x) {
        Ok(t) => match flex::gelu_in_place(t) {
            Ok(y) => from_primitive(y),
            Err(t) => gelu(from_primitive(t)),
        },
        Err(x) => gelu(x),
    }
}

/// Positions of (shift, scale) among each branch's chunks of an adaLN regression: the paper
/// orders them (shift, scale, gate), the seed flavour (scale, shift, gate).
pub(super) fn shift_scale_positions(flavour: Flavour) -> (usize, usize) {
    match flavour {
        Flavour::Paper => (0, 1),
        Flavour::Seed => (1, 0),
    }
}
