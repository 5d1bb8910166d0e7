//! Writes a checkpoint in the reference PyTorch DiT's layout for a preset, with seeded random
//! weights: what `torch.save` of the reference's compiled model gives (`model_state` and
//! `ema_state` under `_orig_mod.`, `model_args`, `step`). The site's offline test serves it
//! where `trainer download celeba-reference` looks for the published checkpoint.
//!
//!   cargo run -p trainer --example reference_checkpoint -- OUT [PRESET=celeba] [SEED=1]

use dit_web::model::position_table;
use dit_web::Preset;
use trainer::import_torch::mapping;
use trainer::import_torch::save::{save, Tensors};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        return Err("usage: reference_checkpoint OUT [PRESET=celeba] [SEED=1]".into());
    };
    let name = args.get(1).map_or("celeba", String::as_str);
    let preset = Preset::by_name(name).ok_or(format!("unknown preset `{name}`"))?;
    let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let config = &preset.model;

    // xorshift64*: small uniform weights in [-0.05, 0.05), the same for a seed everywhere.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    let mut ema = Tensors::new();
    for m in mapping(config) {
        let n = m.shape.iter().product();
        ema.insert(
            format!("_orig_mod.{}", m.torch),
            (m.shape, (0..n).map(|_| next()).collect()),
        );
    }
    ema.insert(
        "_orig_mod.positional_embeddings".into(),
        (
            vec![1, config.num_patches(), config.hidden_size],
            position_table(config),
        ),
    );
    // The raw weights differ from the EMA ones (so a converter that took the wrong one shows).
    let raw: Tensors = ema
        .iter()
        .map(|(k, (shape, v))| {
            let flip = !k.ends_with("positional_embeddings");
            let v = v.iter().map(|x| if flip { -x } else { *x }).collect();
            (k.clone(), (shape.clone(), v))
        })
        .collect();
    let rows = config.num_classes;
    let bytes = save(
        &[("model_state", &raw), ("ema_state", &ema)],
        &[
            ("num_heads", config.num_heads as f64),
            ("num_classes", rows as f64),
            ("cfg_dropout_rate", config.class_dropout),
            ("num_timesteps", preset.schedule.num_timesteps as f64),
        ],
        99_999,
    );
    std::fs::write(out, &bytes)?;
    println!("wrote {out}: {} bytes, preset {name}", bytes.len());
    Ok(())
}
