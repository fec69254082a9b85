#!/usr/bin/python3
"""The plain-PyTorch twin of `pixelpost bench train`'s step: the same DiT over the same TAEF2
decoder, the same weights, batch, timesteps and noise (read from the file that
`pixelpost bench train --save-step FILE` writes), the same losses.

It first checks that it computes what PixelPost computed (latent term, pixel term, loss and the
gradient norm, to a relative 1e-3: the pixel term's gradient through the decoder is only
good to about 1e-4 in float32 in either library, measured against float64), then times the four rows of the comparison: a latent-only
training step, a latent + pixel step (lambda 8), the decoder's forward, and its forward + backward
to its input. Each row is the median of --iters runs after 2 warm-up runs. See bench/README.md for
how to run it against the OpenBLAS that PixelPost loads.
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(arr.copy())
    return out, meta


# ---------------------------------------------------------------- the denoiser (PixArt-style DiT)

def timestep_features(t, dim=256):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000) / half))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(t.dtype)


def sincos_2d(d, grid):
    quarter = d // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    out = np.zeros((grid * grid, d), dtype=np.float32)
    for r in range(grid):
        for c in range(grid):
            i = r * grid + c
            out[i, :quarter] = np.sin(c * omega)
            out[i, quarter:2 * quarter] = np.cos(c * omega)
            out[i, 2 * quarter:3 * quarter] = np.sin(r * omega)
            out[i, 3 * quarter:] = np.cos(r * omega)
    return torch.from_numpy(out)[None]


def attention(q, k, v, heads, mask=None):
    b, n, inner = q.shape
    t, d = k.shape[1], inner // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, t, heads, d).transpose(1, 2)
    v = v.reshape(b, t, heads, d).transpose(1, 2)
    w = q @ k.transpose(-2, -1) / math.sqrt(d)
    if mask is not None:
        w = w.masked_fill(~mask[:, None, None, :], float("-inf"))
    return (w.softmax(-1) @ v).transpose(1, 2).reshape(b, n, inner)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class Block(nn.Module):
    def __init__(self, d, heads, mlp_ratio):
        super().__init__()
        self.heads = heads
        self.attn = nn.ModuleDict({"qkv": nn.Linear(d, 3 * d), "proj": nn.Linear(d, d)})
        self.cross_attn = nn.ModuleDict({"q_linear": nn.Linear(d, d), "kv_linear": nn.Linear(d, 2 * d), "proj": nn.Linear(d, d)})
        h = int(d * mlp_ratio)
        self.mlp = nn.ModuleDict({"fc1": nn.Linear(d, h), "fc2": nn.Linear(h, d)})
        self.scale_shift_table = nn.Parameter(torch.zeros(6, d))

    def forward(self, x, y, mask, t6):
        b, _, d = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.scale_shift_table[None] + t6.reshape(b, 6, d)).chunk(6, 1)
        h = modulate(F.layer_norm(x, (d,), eps=1e-6), shift_msa, scale_msa)
        q, k, v = self.attn["qkv"](h).chunk(3, 2)
        x = x + gate_msa * self.attn["proj"](attention(q, k, v, self.heads))
        k, v = self.cross_attn["kv_linear"](y).chunk(2, 2)
        x = x + self.cross_attn["proj"](attention(self.cross_attn["q_linear"](x), k, v, self.heads, mask))
        h = modulate(F.layer_norm(x, (d,), eps=1e-6), shift_mlp, scale_mlp)
        return x + gate_mlp * self.mlp["fc2"](F.gelu(self.mlp["fc1"](h), approximate="tanh"))


class DiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, p = c["hidden_size"], c["patch_size"]
        self.c = c
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(c["in_channels"], d, p, p)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.y_embedder = nn.Module()
        self.y_embedder.y_proj = nn.ModuleDict({"fc1": nn.Linear(c["caption_channels"], d), "fc2": nn.Linear(d, d)})
        self.blocks = nn.ModuleList(Block(d, c["num_heads"], c["mlp_ratio"]) for _ in range(c["depth"]))
        self.final_layer = nn.Module()
        self.final_layer.linear = nn.Linear(d, p * p * c["out_channels"])
        self.final_layer.scale_shift_table = nn.Parameter(torch.zeros(2, d))
        self.register_buffer("pos", sincos_2d(d, c["sample_size"] // p), persistent=False)

    def forward(self, z_t, t, tokens, mask):
        b, p, c, d = z_t.shape[0], self.c["patch_size"], self.c["out_channels"], self.c["hidden_size"]
        h, w = z_t.shape[2] // p, z_t.shape[3] // p
        x = self.x_embedder.proj(z_t).flatten(2).transpose(1, 2) + self.pos
        t_emb = self.t_embedder.mlp(timestep_features(t))
        t6 = self.t_block(t_emb)
        y = self.y_embedder.y_proj["fc2"](F.gelu(self.y_embedder.y_proj["fc1"](tokens), approximate="tanh"))
        for blk in self.blocks:
            x = blk(x, y, mask, t6)
        shift, scale = (self.final_layer.scale_shift_table[None] + t_emb[:, None]).chunk(2, 1)
        x = self.final_layer.linear(modulate(F.layer_norm(x, (d,), eps=1e-6), shift, scale))
        return x.reshape(b, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * p, w * p)


# ---------------------------------------------------------------- the TAEF2 decoder

def conv(n_in, n_out, bias=True):
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class TaeBlock(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.conv = nn.Sequential(conv(64, 64), nn.ReLU(), conv(64, 64), nn.ReLU(), conv(64, 64))
        self.pool = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.GroupNorm(4, 256), nn.ReLU(),
                                  nn.Conv2d(256, 64, 1, bias=False)) if pool else None

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return F.relu(self.conv(x) + x)


def taef2_decoder(latent_channels=32):
    layers = [Clamp(), conv(latent_channels, 64), nn.ReLU()]
    for stage in range(3):
        layers += [TaeBlock(stage == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), conv(64, 64, bias=False)]
    layers += [TaeBlock(False), conv(64, 3)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- the step

def sft_loss(model, decoder, alpha_bar, z, tokens, mask, t, eps, lam):
    a = alpha_bar[t.long()].view(-1, 1, 1, 1)
    sa, sb = a.sqrt(), (1 - a).sqrt()
    z_t = sa * z + sb * eps
    eps_hat = model(z_t, t, tokens, mask)
    latent = (eps_hat - eps).square().flatten(1).mean(1)
    terms = {"latent": latent.mean()}
    loss = latent.mean()
    if lam:
        with torch.no_grad():
            target = decoder(z_t)
        pred = decoder(sa * z + sb * eps_hat)
        pixel = (pred - target).square().flatten(1).mean(1) * 4  # images compared in [-1, 1]
        terms["pixel"] = pixel.mean()
        loss = loss + lam * pixel.mean()
    terms["loss"] = loss
    return loss, {k: v.item() for k, v in terms.items()}


def loaded_blas():
    """The BLAS library this process has loaded (from /proc/self/maps), to show which one is timed."""
    try:
        with open("/proc/self/maps") as f:
            return sorted({l.split()[-1] for l in f if "blas" in l.rsplit("/", 1)[-1]})
    except OSError:
        return []


def median_ms(fn, iters, warmup=2):
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", help="the file `pixelpost bench train --save-step FILE` wrote")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (PixelPost: one per core)")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--profile", metavar="OUT.txt", help="write torch.profiler's table of one pixel step")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    w, meta = read_safetensors(args.step)
    cfg = json.loads(meta["config"])
    model, decoder = DiT(cfg), taef2_decoder(cfg["in_channels"])
    model.load_state_dict({k[len("denoiser."):]: v for k, v in w.items() if k.startswith("denoiser.")}, strict=True)
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in w.items() if k.startswith("decoder.")}, strict=True)
    decoder.requires_grad_(False)
    z, tokens, mask, t, eps = w["z"], w["tokens"], w["mask"] > 0.5, w["t"], w["eps"]
    alpha_bar, lam = w["alpha_bar"], float(meta["lambda"])

    # 1. the same step as PixelPost's
    loss, terms = sft_loss(model, decoder, alpha_bar, z, tokens, mask, t, eps, lam)
    loss.backward()
    terms["grad_norm"] = math.sqrt(sum(p.grad.square().sum().item() for p in model.parameters() if p.grad is not None))
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    per_param = sorted(((k, ((g - w["grad.denoiser." + k]).norm() / w["grad.denoiser." + k].norm().clamp_min(1e-30)).item())
                        for k, g in grads.items() if "grad.denoiser." + k in w), key=lambda kv: -kv[1])
    for k, rel in per_param[:5]:
        print(f"gradient of {k}: relative difference {rel:.2e}", file=sys.stderr)
    worst = 0.0
    for k, v in terms.items():
        ref = float(meta[k])
        rel = abs(v - ref) / max(abs(ref), 1e-12)
        worst = max(worst, rel)
        print(f"{k:10s} pytorch {v:.9g}  pixelpost {ref:.9g}  relative difference {rel:.2e}", file=sys.stderr)
    if worst > 1e-3:
        sys.exit(f"pytorch_twin: the two steps differ (worst relative difference {worst:.2e}); timings would compare different work")
    if args.check_only:
        return

    # 2. the timed rows, as `pixelpost bench train` times them
    opt = torch.optim.AdamW(model.parameters(), lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-6)
    gen = torch.Generator().manual_seed(0)
    b = z.shape[0]

    def step(lam_):
        tt = torch.randint(len(alpha_bar), (b,), generator=gen).float()
        e = torch.randn(z.shape, generator=gen)
        loss_, _ = sft_loss(model, decoder, alpha_bar, z, tokens, mask, tt, e, lam_)
        loss_.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    r = torch.randn(b, 3, z.shape[2] * 8, z.shape[3] * 8)

    def decode_backward():
        zi = z.detach().requires_grad_(True)
        (decoder(zi) * r).sum().backward()

    def decode():
        with torch.no_grad():
            decoder(z)

    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "blas": loaded_blas(), "batch": b,
           "latent_ms": median_ms(lambda: step(0.0), args.iters),
           "pixel_ms": median_ms(lambda: step(lam), args.iters),
           "decode_ms": median_ms(decode, args.iters),
           "decode_backward_ms": median_ms(decode_backward, args.iters)}
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}
    if args.profile:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(lam)
        with open(args.profile, "w") as f:
            f.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k:20s} {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
