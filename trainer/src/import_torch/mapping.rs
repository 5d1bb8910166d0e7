//! Where each tensor of the reference PyTorch DiT goes in dit-web's network (the table in
//! [`super`]'s header), and the one layout change: Linear weights are transposed.

use dit_web::config::DitConfig;
use dit_web::weights::HostTensor;

/// One reference tensor and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub torch: String,
    pub ours: String,
    /// The reference's shape.
    pub shape: Vec<usize>,
    /// A Linear weight: `[out, in]` -> `[in, out]`.
    pub transpose: bool,
}

impl Mapped {
    /// The reference tensor's values (row-major, in its shape) as dit-web's tensor.
    pub fn to_ours(&self, data: Vec<f32>) -> HostTensor {
        if !self.transpose {
            return HostTensor {
                shape: self.shape.clone(),
                data,
            };
        }
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut t = vec![0f32; data.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = data[r * cols + c];
            }
        }
        HostTensor {
            shape: vec![cols, rows],
            data: t,
        }
    }
}

/// Every trainable reference tensor of a seed-flavour, adaLN-Zero `config`, mapped to ours
/// (`positional_embeddings` is not trainable and not listed).
pub fn mapping(config: &DitConfig) -> Vec<Mapped> {
    let (c, p, d) = (config.in_channels, config.patch_size, config.hidden_size);
    let hidden = d * config.mlp_ratio;
    let rows = config.num_classes + usize::from(config.has_null_label());
    let mut out = Vec::new();
    let mut copy = |torch: &str, ours: &str, shape: Vec<usize>| {
        out.push(Mapped {
            torch: torch.into(),
            ours: ours.into(),
            shape,
            transpose: false,
        })
    };
    copy(
        "patch_ops.patch_proj.weight",
        "x_embedder.proj.weight",
        vec![d, c, p, p],
    );
    copy("patch_ops.patch_proj.bias", "x_embedder.proj.bias", vec![d]);
    copy(
        "label_embed.label_embed.weight",
        "y_embedder.table.weight",
        vec![rows, d],
    );
    let mut linear = |torch: &str, ours: &str, d_in: usize, d_out: usize| {
        out.push(Mapped {
            torch: format!("{torch}.weight"),
            ours: format!("{ours}.weight"),
            shape: vec![d_out, d_in],
            transpose: true,
        });
        out.push(Mapped {
            torch: format!("{torch}.bias"),
            ours: format!("{ours}.bias"),
            shape: vec![d_out],
            transpose: false,
        });
    };
    let freq = config.timestep_frequency_dim();
    linear("time_embed.mlp.0", "t_embedder.mlp_in", freq, d);
    linear("time_embed.mlp.2", "t_embedder.mlp_out", d, d);
    for i in 0..config.depth {
        let (t, o) = (format!("blocks.{i}"), format!("blocks.{i}"));
        linear(
            &format!("{t}.scale_shift_scale.1"),
            &format!("{o}.adaln_modulation"),
            d,
            6 * d,
        );
        for (theirs, ours) in [("wq", "q"), ("wk", "k"), ("wv", "v"), ("w", "out")] {
            linear(
                &format!("{t}.att.{theirs}"),
                &format!("{o}.attn.{ours}"),
                d,
                d,
            );
        }
        linear(
            &format!("{t}.pointwise_ffn.layers.0"),
            &format!("{o}.mlp.fc1"),
            d,
            hidden,
        );
        linear(
            &format!("{t}.pointwise_ffn.layers.3"),
            &format!("{o}.mlp.fc2"),
            hidden,
            d,
        );
    }
    linear(
        "norm_linear.shift_scale.1",
        "final_layer.adaln_modulation",
        d,
        2 * d,
    );
    linear("norm_linear.linear", "final_layer.linear", d, p * p * c);
    out
}
