//! The model's own burn-wgpu kernels (`src/model/kernels/wgpu.rs`: matmul, fused attention, LayerNorm +
//! modulation) against burn-ndarray, natively. They are what the page runs on WebGPU; the browser
//! tests check them through whole images, these check the network's output directly on shapes
//! that reach their edges. Built only with `--features wgpu`; needs a wgpu adapter (`make wgpu`
//! installs Mesa's lavapipe, a Vulkan driver on the CPU, and runs it).

mod common;

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use common::*;
use dit_web::{Conditioning, Dit, DitConfig, Flavour};

fn assert_close(config: &DitConfig, model: &Dit<B>, batch: usize, what: &str) {
    assert_matches_ndarray::<Wgpu>(config, model, batch, what, &WgpuDevice::default());
}

#[test]
fn every_block_design_matches_burn_ndarray_on_burn_wgpu() {
    // Batch 1 and 3: 16 tokens per image, so 16 and 48 rows (the matmul's 8-row blocks end
    // inside and at a block); adaLN's Linear has 1 or 3 rows; cross-attention reads 2 keys for
    // 16 queries; heads of 8.
    for (flavour, conditioning) in all_variants() {
        let config = tiny_config(flavour, conditioning);
        let model = random_model(&config, 5);
        for batch in [1, 3] {
            assert_close(
                &config,
                &model,
                batch,
                &format!("{flavour:?} {conditioning:?}"),
            );
        }
    }
}

#[test]
fn shapes_at_the_kernels_edges_match() {
    // 9 tokens per image (input 6, patch 2) and 5 images: 45 rows, not a multiple of the matmul's
    // 8, and 9 query rows, not a multiple of the attention's 4. With 2 heads of 12 the attention
    // kernel runs; with 4 heads of 6 (not a multiple of 4) attention takes burn's path while the
    // matmul (24, 72, 96 wide) and LayerNorm kernels still run.
    for heads in [2, 4] {
        let config = DitConfig::new(6, 1, 2, 24, 1, heads, 3)
            .with_class_dropout(0.1)
            .with_flavour(Flavour::Seed)
            .with_conditioning(Conditioning::AdalnZero);
        let model = random_model(&config, 9);
        assert_close(
            &config,
            &model,
            5,
            &format!("{heads} heads of {}", 24 / heads),
        );
    }
}
