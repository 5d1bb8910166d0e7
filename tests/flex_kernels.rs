//! The model's own burn-flex code (`src/model/kernels/flex.rs`: Linear with its bias in `gemm`,
//! attention on heads in place, LayerNorm + modulation in one pass, GELU with a polynomial `erf`)
//! against burn-ndarray, which runs burn's generic ops. burn-flex is the CPU backend natively and
//! the browser's fallback; the browser tests check it through whole images, these check the
//! network's output on every block design and on shapes with odd sizes.

use burn_flex::{Flex, FlexDevice};

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
