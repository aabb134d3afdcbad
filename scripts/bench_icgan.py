"""Benchmark: IC-GAN images/s (full-size architecture, random weights) and SwAV feature extraction images/s.

Baseline: the generator as the paper's code ran it, one image per forward (its config: batch_size 1) with the
official eval-mode spectral norm, which redoes the power-iteration step on every forward. genaug: batches of
--batch with the normalised weights computed once (`freeze()`), in --dtype. Also reports the SwAV ResNet-50 rate
(one forward per source image) and the end-to-end rate per generated image at k variants per source image.

  OMP_NUM_THREADS=2 python scripts/bench_icgan.py --model icgan-128 --device cpu --dtype fp32 --n 8
  python scripts/bench_icgan.py --model icgan-128 --device cuda --dtype fp16 --batch 64 --n 512
"""

from __future__ import annotations

import argparse
import time

import torch

from genaug.core.recipes import load_recipe
from genaug.generate.models.icgan.generator import resolve_dtype, truncated_noise
from genaug.generate.models.icgan.model import ICGANConfig, ICGANGenerator
from genaug.generate.models.icgan.swav import SwAVFeatures
from genaug.testing.icgan import randomize_


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def rate(fn, n: int, batch: int, device: str, warmup: int = 1) -> float:
    """Images/s of fn(batch) over n images (after `warmup` untimed calls)."""
    for _ in range(warmup):
        fn(batch)
    _sync(device)
    t = time.perf_counter()
    done = 0
    while done < n:
        b = min(batch, n - done)
        fn(b)
        done += b
    _sync(device)
    return n / (time.perf_counter() - t)


def main() -> None:
    """Run the benchmark and print baseline, genaug, and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="icgan-128", help="recipe (icgan-64, icgan-128, icgan, icgan-256-half)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on CPU)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n", type=int, default=8, help="images timed for genaug (the baseline times max(2, n/4))")
    ap.add_argument("--k", type=int, default=10, help="variants per source image for the end-to-end figure")
    args = ap.parse_args()
    dev = args.device
    dtype = resolve_dtype(args.dtype or ("fp16" if dev.startswith("cuda") else "fp32"))
    cfg = ICGANConfig.from_dict(load_recipe("pipelines", args.model)["model"])
    gen = randomize_(ICGANGenerator(cfg), 0)
    feats = torch.nn.functional.normalize(torch.randn(max(args.batch, 1), 2048), dim=1)
    z = torch.stack([truncated_noise(s, cfg.z_dim_used, 0.7) for s in range(max(args.batch, 1))])

    base_g = gen.to(dev)  # fp32, SN recomputed every forward, batch 1 (the paper's code)
    n_base = max(2, args.n // 4)
    base = rate(lambda b: base_g(z[:b].to(dev), feats[:b].to(dev)), n_base, 1, dev)
    fast_g = gen.freeze().to(dev, dtype)
    zd, fd = z.to(dev, dtype), feats.to(dev, dtype)
    fast = rate(lambda b: fast_g(zd[:b], fd[:b]), args.n, args.batch, dev)
    swav = SwAVFeatures().to(dev, dtype)
    x = torch.randn(args.batch, 3, 224, 224, device=dev, dtype=dtype)
    feat_rate = rate(lambda b: swav(x[:b]), max(args.batch, args.n // 4), args.batch, dev)
    e2e = 1.0 / (1.0 / fast + 1.0 / (args.k * feat_rate))
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else f"cpu x{torch.get_num_threads()} threads"
    print(f"IC-GAN {args.model} (res {cfg.resolution}, G_ch {cfg.G_ch}) on {name}")
    print(f"baseline (batch 1, fp32, SN power iteration every forward): {base:.3f} images/s")
    dt = str(dtype).replace("torch.", "")
    print(f"genaug (batch {args.batch}, {dt}, SN weights frozen once): {fast:.3f} images/s")
    print(f"ratio: {fast / base:.2f}x")
    print(
        f"SwAV ResNet-50 features: {feat_rate:.3f} source images/s; "
        f"end to end at k={args.k}: {e2e:.3f} generated images/s"
    )


if __name__ == "__main__":
    main()
