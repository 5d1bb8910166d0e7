"""The reference PyTorch DiT, written out small and plain.

dit-web's `Flavour::Seed` network is this model: same state-dict names as the public reference
checkpoints (`trainer import-torch` reads them), same maths. Used by
`trainer/tests/fixtures/make_torch_ckpt.py` (fixtures for the importer), `bench/torch/export_onnx.py`
(our weight files -> ONNX) and `bench/torch/torch_reference.py` (CPU timings).

Architecture (d = width, N = tokens, p = patch):

- `patch_ops.patch_proj`: Conv2d(C, d, kernel p, stride p): [B, C, H, W] -> [B, N, d] in raster order.
- `positional_embeddings` (buffer [1, N, d]): 1-D sin-cos over the raster index, interleaved:
  pe[n, 2j] = sin(n / 10000^(2j/d)), pe[n, 2j+1] = cos(same).
- `time_embed`: features [cos(t w), sin(t w)] with w_k = exp(-ln(10^4) k / (d/4)), k < d/4 (width
  d/2), then `mlp` = Linear(d/2, d), SELU, Linear(d, d).
- `label_embed.label_embed`: Embedding(classes + 1 if cfg_dropout_rate > 0 else classes, d); the
  extra last row is the null label for classifier-free guidance.
- c = time_embed(t) + label_embed(y).
- `blocks.i`: `scale_shift_scale` = SiLU, Linear(d, 6d) -> chunks (scale1, shift1, gate1, scale2,
  shift2, gate2); x += gate1 * att(LN(x) * (1 + scale1) + shift1); x += gate2 * ffn(LN(x) * (1 +
  scale2) + shift2). LN: no affine, eps 1e-6. `att`: separate `wq`, `wk`, `wv`, output `w`,
  softmax(q k^T / sqrt(d_head)). `pointwise_ffn.layers`: Linear(d, r d), exact GELU, Dropout,
  Linear(r d, d), Dropout.
- `norm_linear`: `shift_scale` = SELU, Linear(d, 2d) -> (scale, shift); `linear`(LN(x) * (1 + scale)
  + shift) -> [B, N, p*p*C], unpatchified with token (i, j) holding a p x p x C patch in (p, q, c)
  order.

Model args (the `model_args` entry of a checkpoint) use the reference's config names: H, W,
in_channels, out_channels, patch_size, d_model, num_layers, num_heads, num_classes,
cfg_dropout_rate, maxlen (= N), and optionally mlp_ratio (default 4) and num_timesteps.
"""

import math

import torch
from torch import nn


def model_args(input_size, in_channels, patch_size, width, depth, heads, num_classes,
               cfg_dropout_rate=0.0, num_timesteps=None, mlp_ratio=4):
    """A model_args dict in the reference's naming."""
    args = {
        "H": input_size,
        "W": input_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "patch_size": patch_size,
        "d_model": width,
        "num_layers": depth,
        "num_heads": heads,
        "num_classes": num_classes,
        "cfg_dropout_rate": cfg_dropout_rate,
        "maxlen": (input_size // patch_size) ** 2,
        "mlp_ratio": mlp_ratio,
        "dropout_rate": 0.0,
    }
    if num_timesteps is not None:
        args["num_timesteps"] = num_timesteps
    return args


def position_table(tokens, width):
    """[1, N, d]: interleaved sin/cos of n / 10000^(2j/d), computed in float32 like the reference."""
    n = torch.arange(tokens, dtype=torch.float32)[:, None]
    two_j = torch.arange(width // 2, dtype=torch.float32)[None, :] * 2
    theta = n / 10000 ** (two_j / width)
    return torch.stack([theta.sin(), theta.cos()], dim=-1).reshape(1, tokens, width)


def layer_norm(width):
    """LayerNorm without affine parameters (nothing in the state dict)."""
    return nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)


def modulate(x, scale, shift):
    """adaLN: x * (1 + scale) + shift, per sample ([B, d] broadcast over tokens)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class PatchOps(nn.Module):
    def __init__(self, in_channels, out_channels, patch_size, width, grid):
        super().__init__()
        self.patch_proj = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.p, self.c, self.grid = patch_size, out_channels, grid

    def forward(self, images):
        return self.patch_proj(images).flatten(2).transpose(1, 2)  # [B, N, d]

    def unpatchify(self, x):
        b, (p, c, g) = x.shape[0], (self.p, self.c, self.grid)
        x = x.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)  # b h w p q c -> b c h p w q
        return x.reshape(b, c, g * p, g * p)


class TimeEmbedding(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.half = width // 4
        self.mlp = nn.Sequential(nn.Linear(2 * self.half, width), nn.SELU(), nn.Linear(width, width))

    def forward(self, t):
        k = torch.arange(self.half, device=t.device, dtype=torch.float32)
        freqs = torch.exp(-math.log(10000) * k / self.half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class LabelEmbedding(nn.Module):
    def __init__(self, num_classes, width, with_null):
        super().__init__()
        self.label_embed = nn.Embedding(num_classes + int(with_null), width)

    def forward(self, y):
        return self.label_embed(y)


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.wq, self.wk, self.wv = (nn.Linear(width, width) for _ in range(3))
        self.w = nn.Linear(width, width)
        self.heads, self.head_dim = heads, width // heads

    def forward(self, x):
        b, n, d = x.shape

        def split(t):
            return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.wq(x)), split(self.wk(x)), split(self.wv(x))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        return self.w((weights @ v).transpose(1, 2).reshape(b, n, d))


class FFN(nn.Module):
    def __init__(self, width, mlp_ratio, dropout):
        super().__init__()
        hidden = width * mlp_ratio
        self.layers = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, width), nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.layers(x)


class Block(nn.Module):
    def __init__(self, width, heads, mlp_ratio, dropout):
        super().__init__()
        self.scale_shift_scale = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.norm1 = layer_norm(width)
        self.att = Attention(width, heads)
        self.norm2 = layer_norm(width)
        self.pointwise_ffn = FFN(width, mlp_ratio, dropout)

    def forward(self, x, c):
        scale1, shift1, gate1, scale2, shift2, gate2 = self.scale_shift_scale(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.att(modulate(self.norm1(x), scale1, shift1))
        return x + gate2[:, None] * self.pointwise_ffn(modulate(self.norm2(x), scale2, shift2))


class NormLinear(nn.Module):
    def __init__(self, width, patch_size, out_channels):
        super().__init__()
        self.shift_scale = nn.Sequential(nn.SELU(), nn.Linear(width, 2 * width))
        self.norm = layer_norm(width)
        self.linear = nn.Linear(width, patch_size * patch_size * out_channels)

    def forward(self, x, c):
        scale, shift = self.shift_scale(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), scale, shift))


class DiT(nn.Module):
    """Predicts the noise of x_t: forward(x [B, C, H, W], t [B] ints, y [B] labels or None)."""

    def __init__(self, args):
        super().__init__()
        if args["H"] != args["W"]:
            raise ValueError("square images only")
        d, p = args["d_model"], args["patch_size"]
        grid = args["H"] // p
        if args.get("maxlen", grid * grid) != grid * grid:
            raise ValueError(f"maxlen {args['maxlen']} != {grid * grid} tokens")
        mlp_ratio, dropout = args.get("mlp_ratio", 4), args.get("dropout_rate", 0.0)
        self.args = dict(args)
        self.patch_ops = PatchOps(args["in_channels"], args["out_channels"], p, d, grid)
        self.register_buffer("positional_embeddings", position_table(grid * grid, d))
        self.time_embed = TimeEmbedding(d)
        self.label_embed = LabelEmbedding(args["num_classes"], d, args["cfg_dropout_rate"] > 0)
        self.blocks = nn.ModuleList(
            Block(d, args["num_heads"], mlp_ratio, dropout) for _ in range(args["num_layers"])
        )
        self.norm_linear = NormLinear(d, p, args["out_channels"])

    def forward(self, x, t, y=None):
        tokens = self.patch_ops(x) + self.positional_embeddings
        c = self.time_embed(t)
        if y is not None:
            c = c + self.label_embed(y)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.patch_ops.unpatchify(self.norm_linear(tokens, c))
