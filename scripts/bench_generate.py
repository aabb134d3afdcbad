"""Benchmark of `genaug generate` against the paper code's way of making variants, on the same model and images.

Baseline: a plain loop over the source images calling the same diffusers StableDiffusionImageVariationPipeline once
per variant (the image re-encoded by CLIP every time), seeded by the same variant_seed, resized to the output size
and saved as JPEG files. genaug: `genaug.generate.generate()` on the same shards. Prints images/s of both, the ratio,
genaug's overhead (its wall time over the time inside its pipeline calls) and the largest pixel difference between
the two outputs (same seeds: the outputs must match within a couple of levels).

CPU, tiny random model (default):   OMP_NUM_THREADS=1 python scripts/bench_generate.py
GPU, SD-1.x-sized random UNet/VAE/CLIP in fp16:   python scripts/bench_generate.py --real-size --device cuda \
    --dtype fp16 --images 32 --k 10 --steps 50 --batch-size 32
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def real_size_pipeline(folder: Path, dtype: torch.dtype) -> Path:
    """Save a random-weight image-variation pipeline with SD 1.x shapes (UNet 860M, VAE, CLIP ViT-L/14 vision)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImageVariationPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # diffusers defaults = SD 1.x layout
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    enc = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=24,
            image_size=224,
            patch_size=14,
            projection_dim=768,
        )  # fmt: skip
    )
    pipe = StableDiffusionImageVariationPipeline(
        vae=vae, image_encoder=enc, unet=unet, scheduler=PNDMScheduler(skip_prk_steps=True), safety_checker=None,
        feature_extractor=CLIPImageProcessor(), requires_safety_checker=False,
    )  # fmt: skip
    pipe.to(dtype).save_pretrained(folder, safe_serialization=True)
    return folder


def baseline(weights: str, recipe: dict, src: Path, out: Path, device: str) -> dict:
    """The paper code's loop: one pipeline call per variant, the image re-encoded each time, one JPEG file each."""
    from diffusers import StableDiffusionImageVariationPipeline

    from genaug.generate.base import variant_seed
    from genaug.generate.models.diffusion import torch_dtype
    from genaug.generate.models.sd import model_card_preprocess
    from genaug.shards.reader import decode_image, iter_shard_raw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pipe = StableDiffusionImageVariationPipeline.from_pretrained(
            weights, torch_dtype=torch_dtype(recipe["dtype"]), safety_checker=None, requires_safety_checker=False
        ).to(device)
    pipe.set_progress_bar_config(disable=True)
    s, size, q = recipe["sampling"], recipe["output"]["size"], recipe["output"]["quality"]
    res = int(s["resolution"])

    def call(inp, seed):
        t = time.perf_counter()
        img = pipe(inp, height=res, width=res, num_inference_steps=int(s["steps"]), guidance_scale=float(s["guidance"]),
                   generator=torch.Generator().manual_seed(seed)).images[0]  # fmt: skip
        return img, time.perf_counter() - t

    samples = [r for p in sorted(src.glob("*.tar")) for r in iter_shard_raw(p)]
    warm = model_card_preprocess([decode_image(samples[0]["jpg"])], recipe["preprocess"], device)
    call(warm, 0)  # warm-up, not timed
    out.mkdir(parents=True, exist_ok=True)
    inside, n, t0 = 0.0, 0, time.perf_counter()
    for raw in samples:
        key, image = raw["__key__"], decode_image(raw["jpg"])
        for k in range(int(recipe["k"])):
            inp = model_card_preprocess([image], recipe["preprocess"], device)
            img, dt = call(inp, variant_seed(recipe["seed"], key, k))
            inside += dt
            img.resize((size, size), Image.BICUBIC).save(out / f"{key}_{k}.jpg", quality=q)
            n += 1
    wall = time.perf_counter() - t0
    return {"images": n, "seconds": wall, "inside": inside}


def max_pixel_diff(root: Path, column: str, base_dir: Path, k: int) -> int:
    """Largest per-pixel difference between genaug's variants and the baseline's files (decoded JPEGs)."""
    from genaug.shards.reader import iter_shard_raw

    worst = 0
    for tar in sorted((root / "gen" / column / "train").glob("*.tar")):
        for s in iter_shard_raw(tar):
            for j in range(k):
                a = np.asarray(Image.open(io.BytesIO(s[f"gen_{j}.jpg"])).convert("RGB"), np.int16)
                b = np.asarray(Image.open(base_dir / f"{s['__key__']}_{j}.jpg").convert("RGB"), np.int16)
                worst = max(worst, int(np.abs(a - b).max()))
    return worst


def main() -> None:
    """Run both and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32, help="source images (4 per shard)")
    ap.add_argument("--per-shard", type=int, default=8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--steps", type=int, default=None, help="default: the recipe's (tiny: 2)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="fp32, fp16, bf16 (default: the recipe's)")
    ap.add_argument("--real-size", action="store_true", help="SD-1.x-sized random UNet/VAE/CLIP (for a GPU)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from genaug.generate.dispatch import generate
    from genaug.generate.recipe import resolve_recipe
    from genaug.testing.shards import write_synthetic_split
    from genaug.testing.tiny import cache_home, tiny_variation_dir

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-generate-"))
    model = "sd" if args.real_size else "tiny"
    over = {"sampling.steps": args.steps, "dtype": args.dtype or ("fp16" if args.real_size else None)}
    recipe = resolve_recipe(model, k=args.k, batch_size=args.batch_size, compile=args.compile or None, overrides=over)
    if args.real_size:
        weights = str(real_size_pipeline(cache_home() / f"bench-sd-random-{recipe['dtype']}", torch.float16))
    else:
        weights = str(tiny_variation_dir(recipe))
    root = work / "set"
    n_shards = max(1, args.images // args.per_shard)
    if not (root / "train" / "manifest.json").exists():
        write_synthetic_split(root, "train", num_shards=n_shards, per_shard=args.per_shard, size=64, seed=0)
        write_synthetic_split(root, "warm", num_shards=1, per_shard=args.per_shard, size=64, seed=1)
    common = dict(model=model, shards=str(root), weights=weights, k=args.k, batch_size=args.batch_size,
                  device=args.device, progress=False, overrides=over, compile=args.compile or None)  # fmt: skip
    generate(split="warm", column="warm", **common)  # warm-up (kernels, allocator), not timed
    t = time.perf_counter()
    g = generate(split="train", column="bench", **common)
    g_wall = time.perf_counter() - t - g["load_seconds"]
    b = baseline(weights, recipe, root / "train", work / "baseline", args.device)
    diff = max_pixel_diff(root, "bench", work / "baseline", args.k)

    n = g["images"]
    base_rate, gen_rate = b["images"] / b["seconds"], n / g_wall
    kind = "real-size random" if args.real_size else "tiny random"
    print(
        f"device {args.device}, torch threads {torch.get_num_threads()} (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}), model {model} ({kind}), dtype {recipe['dtype']}, "
        f"steps {recipe['sampling']['steps']}, resolution {recipe['sampling']['resolution']}, "
        f"{n // args.k} images x K={args.k}, batch {args.batch_size}"
    )
    print(
        f"baseline (paper-code loop, 1 call per variant): {b['images']} images in {b['seconds']:.2f} s = "
        f"{base_rate:.2f} images/s (inside pipeline calls {b['inside']:.2f} s)"
    )
    print(
        f"genaug generate:                               {n} images in {g_wall:.2f} s = {gen_rate:.2f} images/s "
        f"(inside pipeline calls {g['model_seconds']:.2f} s; model load {g['load_seconds']:.2f} s not counted)"
    )
    print(f"ratio genaug / baseline: {gen_rate / base_rate:.2f}x")
    print(
        f"genaug overhead: wall / inside-pipeline = {g_wall / g['model_seconds']:.3f} "
        f"({100 * (g_wall / g['model_seconds'] - 1):.1f}% overhead; goal < 5%)"
    )
    print(f"largest pixel difference genaug vs baseline (same seeds, decoded JPEGs): {diff} levels")


if __name__ == "__main__":
    main()
