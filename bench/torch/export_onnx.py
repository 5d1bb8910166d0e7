"""A dit-web weight file -> the reference PyTorch DiT -> ONNX (opset 17, dynamic batch).

    python3 bench/torch/export_onnx.py www/weights/mnist.safetensors www/bench/mnist.onnx
    python3 bench/torch/export_onnx.py tiny.safetensors tiny.onnx --check trainer/tests/fixtures/tiny_dit.json

Needs torch, numpy and onnx. The weight file is read without the safetensors package: int8
tensors are dequantized with their `<name>.qscale` (value = q * scale, scale broadcast over the
other axes), f16 widened, and the `dit-web` metadata entry gives the model config. Our tensor names
map back to the reference's by the inverse of `trainer import-torch`'s table (Linear weights
transposed back to torch's [out, in]); seed flavour with adaLN-Zero only.

Checks:
- `--check JSON` (fixed inputs x, t, y and expected outputs `out`, or `ema_out` / `raw_out` picked
  by the file's `ema` flag): the PyTorch model must reproduce them within 1e-4. With the importer's
  fixture (`trainer import-torch trainer/tests/fixtures/tiny_dit.pt --out tiny.safetensors`) this
  closes the loop: trainer/tests/import_torch.rs shows dit-web equals PyTorch on those inputs, so
  this shows the reverse mapping (hence the ONNX model) equals dit-web's network.
- Always: the exported graph passes onnx.checker, and onnx's reference evaluator on a random batch
  of a different size than the export's matches the PyTorch module within 1e-4.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_dit import DiT, model_args  # noqa: E402

DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8}


def read_safetensors(path):
    """(metadata dict, {name: float32 torch tensor}) with int8 tensors dequantized."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    metadata = header.pop("__metadata__", {}) or {}
    raw = {}
    for name, info in header.items():
        if info["dtype"] not in DTYPES:
            raise SystemExit(f"{path}: tensor {name} has dtype {info['dtype']}")
        start, end = info["data_offsets"]
        raw[name] = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    tensors = {}
    for name, array in raw.items():
        if name.endswith(".qscale"):
            continue
        if array.dtype == np.int8:
            array = array.astype(np.float32) * raw[name + ".qscale"]
        tensors[name] = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
    return metadata, tensors


def reference_names(depth):
    """(reference name, dit-web name, transpose) for every trainable tensor."""
    table = [
        ("patch_ops.patch_proj.weight", "x_embedder.proj.weight", False),
        ("patch_ops.patch_proj.bias", "x_embedder.proj.bias", False),
        ("label_embed.label_embed.weight", "y_embedder.table.weight", False),
    ]
    linears = [("time_embed.mlp.0", "t_embedder.mlp_in"), ("time_embed.mlp.2", "t_embedder.mlp_out")]
    for i in range(depth):
        linears += [
            (f"blocks.{i}.scale_shift_scale.1", f"blocks.{i}.adaln_modulation"),
            (f"blocks.{i}.att.wq", f"blocks.{i}.attn.q"),
            (f"blocks.{i}.att.wk", f"blocks.{i}.attn.k"),
            (f"blocks.{i}.att.wv", f"blocks.{i}.attn.v"),
            (f"blocks.{i}.att.w", f"blocks.{i}.attn.out"),
            (f"blocks.{i}.pointwise_ffn.layers.0", f"blocks.{i}.mlp.fc1"),
            (f"blocks.{i}.pointwise_ffn.layers.3", f"blocks.{i}.mlp.fc2"),
        ]
    linears += [("norm_linear.shift_scale.1", "final_layer.adaln_modulation"),
                ("norm_linear.linear", "final_layer.linear")]
    for ref, ours in linears:
        table += [(f"{ref}.weight", f"{ours}.weight", True), (f"{ref}.bias", f"{ours}.bias", False)]
    return table


def load(path):
    """The reference DiT with a dit-web weight file's weights, and the file's metadata."""
    metadata, tensors = read_safetensors(path)
    if "dit-web" not in metadata:
        raise SystemExit(f"{path}: no dit-web metadata; not a dit-web weight file")
    meta = json.loads(metadata["dit-web"])
    cfg = meta["model"]
    if cfg.get("flavour", "seed") != "seed" or cfg.get("conditioning", "adaln-zero") != "adaln-zero":
        raise SystemExit(f"{path}: only the seed flavour with adaLN-Zero maps to the reference")
    args = model_args(cfg["input_size"], cfg["in_channels"], cfg["patch_size"], cfg["hidden_size"],
                      cfg["depth"], cfg["num_heads"], cfg["num_classes"],
                      cfg_dropout_rate=cfg.get("class_dropout", 0.0),
                      num_timesteps=meta["schedule"]["num_timesteps"],
                      mlp_ratio=cfg.get("mlp_ratio", 4))
    model = DiT(args).eval()
    state = {"positional_embeddings": model.positional_embeddings}
    for ref, ours, transpose in reference_names(cfg["depth"]):
        t = tensors.pop(ours)
        state[ref] = t.T.contiguous() if transpose else t
    if tensors:
        raise SystemExit(f"{path}: tensors the reference has no place for: {sorted(tensors)}")
    model.load_state_dict(state, strict=True)
    return model, meta


def random_inputs(model, batch, seed):
    g = torch.Generator().manual_seed(seed)
    a = model.args
    x = torch.randn(batch, a["in_channels"], a["H"], a["W"], generator=g)
    t = torch.randint(0, a.get("num_timesteps", 1000), (batch,), generator=g).float()
    rows = a["num_classes"] + int(a["cfg_dropout_rate"] > 0)
    y = torch.randint(0, rows, (batch,), generator=g)
    return x, t, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("out")
    ap.add_argument("--check", help="JSON with x_shape, x, t, y and expected outputs")
    ap.add_argument("--batch", type=int, default=2, help="batch size of the traced example")
    opts = ap.parse_args()
    torch.manual_seed(0)

    model, meta = load(opts.weights)
    print(f"{opts.weights}: {meta['model']}, {meta['quantization']}, "
          f"{'EMA' if meta['ema'] else 'raw'} weights from step {meta['step']}")

    if opts.check:
        with open(opts.check) as f:
            fx = json.load(f)
        want = fx.get("out") or fx["ema_out" if meta["ema"] else "raw_out"]
        x = torch.tensor(fx["x"], dtype=torch.float32).reshape(fx["x_shape"])
        with torch.no_grad():
            got = model(x, torch.tensor(fx["t"], dtype=torch.float32), torch.tensor(fx["y"]))
        diff = (got.flatten() - torch.tensor(want)).abs().max().item()
        print(f"--check {opts.check}: max |torch - expected| = {diff:.2e}")
        if diff > 1e-4:
            raise SystemExit("the reference model does not reproduce the expected outputs")

    example = random_inputs(model, opts.batch, seed=1)
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    batch = {0: "batch"}
    export_kwargs = dict(
        opset_version=17,
        input_names=["x", "t", "y"],
        output_names=["eps"],
        dynamic_axes={"x": batch, "t": batch, "y": batch, "eps": batch},
    )
    try:
        torch.onnx.export(model, example, opts.out, dynamo=False, **export_kwargs)
    except TypeError:  # torch versions without the `dynamo` switch
        torch.onnx.export(model, example, opts.out, **export_kwargs)

    import onnx
    from onnx.reference import ReferenceEvaluator

    graph = onnx.load(opts.out)
    onnx.checker.check_model(graph)
    x, t, y = random_inputs(model, opts.batch + 1, seed=2)
    with torch.no_grad():
        want = model(x, t, y).numpy()
    (got,) = ReferenceEvaluator(graph).run(None, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})
    diff = float(np.abs(got - want).max())
    print(f"wrote {opts.out} ({os.path.getsize(opts.out)} bytes, opset 17, dynamic batch); "
          f"ONNX vs PyTorch at batch {opts.batch + 1}: max difference {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("the ONNX graph does not match the PyTorch model")


if __name__ == "__main__":
    main()
