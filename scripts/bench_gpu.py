"""Every GPU figure genaug lacks, in one run: one JSON and one markdown table in --out DIR.

Sections (each row: device, dtype, settings, images/s, MFU or null, smoke flag):
1. generation: genaug's `sd` and `sd-unclip` generators (genaug.generate.models.sd / unclip, the shipped recipes,
   --weights DIR of a random-weight pipeline with the published component shapes) in fp16 and bf16 with SDPA
   attention, channels_last off/on, torch.compile off/on. MFU = achieved FLOP/s / peak, FLOPs = one UNet forward
   (torch.utils.flop_counter on the meta device) x steps x 2 (classifier-free guidance).
2. icgan: genaug's IC-GAN generator (res 256, full width, random official-format checkpoint) in fp16 and bf16;
   FLOPs counted over one whole generate() call (SwAV encode share + generator forwards).
3. training: genaug.train.runner.train, SimCLR with a ResNet-50 in bf16 on synthetic shards (p = 0.5, one
   generated column), colour stage in the loader workers (augment_device cpu) vs on the GPU (cuda).
4. loader: genaug.data.stream.build_train_loader samples/s, float32 views with the colour stage in the workers vs
   uint8 crops with the colour stage deferred and batched on the training device.

    bash scripts/bench_gpu.sh                 # on a CUDA machine: the full matrix (about 30-60 minutes)
    bash scripts/bench_gpu.sh --cpu-smoke     # reduced end-to-end run on CPU (tiny models); figures say "smoke"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: dense (no sparsity) fp16/bf16 tensor-core peak TFLOP/s by GPU name; the first matching substring wins
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("RTX 6000 Ada", 364.0),
    ("RTX A6000", 155.0),
    ("RTX 4090", 165.0),  # fp32 accumulate, as torch uses
    ("RTX 3090", 71.0),
    ("V100", 125.0),  # fp16 only
    ("T4", 65.0),  # fp16 only
)

SECTIONS = ("generation", "icgan", "training", "loader")


def peak_tflops(gpu_name: str | None, override: float | None = None) -> float | None:
    """Dense half-precision peak TFLOP/s of a GPU (the --peak-tflops flag wins); None when unknown or on CPU."""
    if override:
        return float(override)
    if not gpu_name:
        return None
    for key, value in PEAK_TFLOPS:
        if key.lower() in gpu_name.lower():
            return value
    return None


def mfu(images_per_s: float, flops_per_image: float | None, peak: float | None) -> float | None:
    """Achieved FLOP/s over peak FLOP/s (None without a peak or a FLOP count)."""
    if not peak or not flops_per_image:
        return None
    return images_per_s * flops_per_image / (peak * 1e12)


def sync(device: str) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class Results:
    """Rows and skipped configurations per section, written as JSON and markdown."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta
        self.sections: dict[str, dict[str, list]] = {s: {"rows": [], "skipped": []} for s in SECTIONS}
        self.failures = 0

    def add(self, section: str, row: dict) -> None:
        """Record one measured row (and print it)."""
        row = {"section": section, "smoke": bool(self.meta["smoke"]), **row}
        self.sections[section]["rows"].append(row)
        m = "null" if row.get("mfu") is None else f"{100 * row['mfu']:.1f}%"
        print(f"[{section}] {row['what']} {row['dtype']} {settings_text(row['settings'])}: "
              f"{row['images_per_s']:.3f} {row['unit']}, MFU {m}", flush=True)  # fmt: skip

    def skip(self, section: str, what: str, settings: dict, reason: str, failed: bool = False) -> None:
        """Record a configuration that was not measured, and why."""
        self.sections[section]["skipped"].append({"what": what, "settings": settings, "reason": reason})
        self.failures += int(failed)
        print(f"[{section}] {'FAILED' if failed else 'skipped'} {what} {settings_text(settings)}: {reason}", flush=True)

    def write(self, out: Path) -> tuple[Path, Path]:
        """Write results.json and results.md into `out`."""
        out.mkdir(parents=True, exist_ok=True)
        doc = {"meta": self.meta, "sections": self.sections}
        (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / "results.md").write_text(markdown(doc))
        return out / "results.json", out / "results.md"


def settings_text(settings: dict) -> str:
    """`k=v, k=v` of a settings dict."""
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def markdown(doc: dict) -> str:
    """One table with a row per measured configuration, skipped ones listed below it."""
    meta = doc["meta"]
    lines = [
        f"# genaug GPU benchmarks ({'CPU SMOKE RUN, not GPU figures' if meta['smoke'] else 'GPU'})",
        "",
        f"{meta['date']}; device {meta['device_name']}; peak {meta['peak_tflops'] or 'n/a'} TFLOP/s; "
        f"torch {meta['torch']}, diffusers {meta['diffusers']}, genaug {meta['genaug']}; `{meta['command']}`",
        "",
        "| section | what | device | dtype | settings | images/s | MFU | smoke |",
        "|---|---|---|---|---|---|---|---|",
    ]
    skipped = []
    for name, sec in doc["sections"].items():
        for r in sec["rows"]:
            m = "null" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
            lines.append(
                f"| {name} | {r['what']} | {r['device']} | {r['dtype']} | {settings_text(r['settings'])} | "
                f"{r['images_per_s']:.3f} {r['unit']} | {m} | {'smoke' if r['smoke'] else 'no'} |"
            )
        skipped += [f"- {name}: {s['what']} {settings_text(s['settings'])}: {s['reason']}" for s in sec["skipped"]]
    lines += ["", "images/s: generated images/s (generation, icgan), source samples/s with 2 views each (training,",
              "loader). MFU: achieved FLOP/s over the peak above; null on CPU or for an unknown GPU.", ""]  # fmt: skip
    if skipped:
        lines += ["Not measured:", "", *skipped, ""]
    return "\n".join(lines)


def guarded(res: Results, section: str, what: str, settings: dict, fn: Callable[[], None]) -> None:
    """Run one configuration; an exception becomes a FAILED entry and the run goes on."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a benchmark matrix reports a broken cell and continues
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        res.skip(section, what, settings, f"failed: {type(e).__name__}: {first}", failed=True)
        traceback.print_exc()
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def source_images(n: int, size: int) -> list:
    """n random RGB PIL images of size x size (the generators' conditioning inputs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def time_generator(gen: Any, rows: int, k: int, batch: int, device: str, src_size: int) -> tuple[float, float]:
    """(images/s, seconds) of gen.generate() over `rows` variants, k per source image, after one warm-up batch."""
    from genaug.generate.base import variant_seed

    n_src = math.ceil(rows / k)
    images = source_images(n_src, src_size)
    keys = [f"s{i}" for i in range(n_src)]
    seeds = [[variant_seed(0, key, j) for j in range(k)] for key in keys]
    left = rows - k * (n_src - 1)
    seeds[-1] = seeds[-1][:left]
    warm_n = math.ceil(batch / k)
    warm_seeds = [[variant_seed(1, key, j) for j in range(k)] for key in keys[:warm_n]]
    warm_seeds[-1] = warm_seeds[-1][: batch - k * (warm_n - 1)]
    gen.generate(images[:warm_n], keys[:warm_n], warm_seeds)  # warm-up (kernels, autotune, compile), not timed
    sync(device)
    t = time.perf_counter()
    out = gen.generate(images, keys, seeds)
    sync(device)
    secs = time.perf_counter() - t
    assert sum(len(v) for v in out) == rows
    return rows / secs, secs


# ----------------------------------------------------------------------------------------------- 1. generation
def bench_generation(res: Results, args: argparse.Namespace, device: str, peak: float | None) -> None:
    """Images/s and MFU of genaug's sd and sd-unclip generators over dtype x channels_last x compile."""
    from bench_gpu_models import native_resolution, pipeline_dir, unet_flops_per_image

    from genaug.generate.recipe import resolve_recipe

    smoke = args.cpu_smoke
    for model in args.models:
        try:
            weights = pipeline_dir(model, smoke, args.cache)
        except Exception as e:  # noqa: BLE001 - e.g. a full disk: report it, time the other model
            res.skip(
                "generation", model, {}, f"failed: cannot build the random pipeline: {type(e).__name__}: {e}", True
            )
            continue
        over: dict[str, Any] = {"runtime.attention": "sdpa"}
        if smoke:  # the tiny pipeline's sizes (genaug.testing.tiny.TINY_DEFAULTS)
            over.update({"sampling.steps": 2, "sampling.resolution": 32, "output.size": 32, "k": 2})
            if model == "sd":
                over["preprocess.size"] = 32
        elif args.gen_steps:
            over["sampling.steps"] = args.gen_steps
        base = resolve_recipe(model, overrides=over)
        res_px = int(base["sampling"].get("resolution") or native_resolution(weights))
        steps, guidance = int(base["sampling"]["steps"]), float(base["sampling"]["guidance"])
        cfg = 2 if guidance > 1.0 else 1
        unet_flops = unet_flops_per_image(weights, res_px)
        per_image = unet_flops * steps * cfg
        batch = args.gen_batch or int(base["runtime"]["batch_size"])
        rows = batch * args.gen_calls
        for dtype in args.dtypes:
            for cl in (False, True):
                for comp in (False, True):
                    settings = {"attention": "sdpa", "channels_last": cl, "compile": comp, "steps": steps,
                                "guidance": guidance, "resolution": res_px, "batch": batch,
                                "k": int(base["k"])}  # fmt: skip
                    what = f"{model} ({'tiny random' if smoke else 'real-size random'})"
                    if comp and args.no_compile:
                        why = "smoke: torch.compile skipped" if smoke else "--no-compile"
                        res.skip("generation", what, {"dtype": dtype, **settings}, why)
                        continue
                    cell = {"model": model, "weights": weights, "over": {**over, "runtime.channels_last": cl},
                            "dtype": dtype, "compile": comp, "batch": batch, "rows": rows, "device": device,
                            "src_size": 48 if smoke else 256, "settings": settings, "what": what,
                            "per_image": per_image, "unet_flops": unet_flops, "peak": peak}  # fmt: skip
                    guarded(res, "generation", what, {"dtype": dtype, **settings}, partial(generation_cell, res, cell))


def generation_cell(res: Results, c: dict) -> None:
    """Load genaug's generator for one (model, dtype, channels_last, compile) cell and time it."""
    from genaug.generate.base import generator_class
    from genaug.generate.recipe import resolve_recipe

    recipe = resolve_recipe(c["model"], batch_size=c["batch"], dtype=c["dtype"], compile=c["compile"],
                            overrides=c["over"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = generator_class(recipe["generator"])(recipe, device=c["device"], weights=str(c["weights"]))
    try:
        ips, secs = time_generator(gen, c["rows"], int(recipe["k"]), c["batch"], c["device"], c["src_size"])
    finally:
        gen.close()
    res.add("generation", {
        "what": c["what"], "device": c["device"], "dtype": c["dtype"], "settings": c["settings"],
        "images_per_s": ips, "unit": "images/s", "mfu": mfu(ips, c["per_image"], c["peak"]),
        "images": c["rows"], "seconds": secs, "unet_gflop_per_forward": c["unet_flops"] / 1e9,
        "model_gflop_per_image": c["per_image"] / 1e9,
    })  # fmt: skip


# ----------------------------------------------------------------------------------------------- 2. IC-GAN
def bench_icgan(res: Results, args: argparse.Namespace, device: str, peak: float | None) -> None:
    """Images/s (and MFU) of genaug's IC-GAN generator, random official-format checkpoint, per dtype."""
    from torch.utils.flop_counter import FlopCounterMode

    from genaug.generate.models.icgan.generator import ICGAN
    from genaug.generate.models.icgan.model import ICGANConfig
    from genaug.generate.recipe import resolve_recipe
    from genaug.testing.icgan import write_random_checkpoint

    smoke = args.cpu_smoke
    model = "icgan-64" if smoke else "icgan"
    over: dict[str, Any] = {"model.G_ch": 4, "features.width_per_group": 8, "k": 2} if smoke else {}
    base = resolve_recipe(model, overrides=over)
    cfg = ICGANConfig.from_dict(base["model"])
    exp = base["checkpoint"]["experiment_name"]
    root = Path(args.cache) / f"bench-gpu-{model}-{'tiny' if smoke else 'real'}"
    if not (root / exp / "G_ema_best1.pth").is_file():
        tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
        write_random_checkpoint(tmp, cfg, exp, seed=0, feature_width=int(base["features"]["width_per_group"]))
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    batch = args.icgan_batch or int(base["runtime"]["batch_size"])
    rows = batch * args.icgan_calls
    for dtype in args.icgan_dtypes:
        settings = {"resolution": cfg.resolution, "G_ch": cfg.G_ch, "batch": batch, "k": int(base["k"]),
                    "truncation": base["sampling"]["truncation"]}  # fmt: skip
        what = f"{model} ({'tiny random' if smoke else 'full-size random'})"

        def run(dtype=dtype, settings=settings, what=what) -> None:
            recipe = resolve_recipe(model, batch_size=batch, dtype=dtype, overrides=over)
            gen = ICGAN(recipe, device, str(root))
            k = int(recipe["k"])
            try:
                img = source_images(1, 64)
                with FlopCounterMode(display=False) as fc:
                    gen.generate(img, ["f"], [list(range(k))])
                per_image = fc.get_total_flops() / k  # generator forward + 1/k of the SwAV encode
                ips, secs = time_generator(gen, rows, k, batch, device, 256 if not smoke else 64)
            finally:
                gen.close()
            res.add("icgan", {
                "what": what, "device": device, "dtype": dtype, "settings": settings, "images_per_s": ips,
                "unit": "images/s", "mfu": mfu(ips, per_image, peak), "images": rows, "seconds": secs,
                "model_gflop_per_image": per_image / 1e9,
            })  # fmt: skip

        guarded(res, "icgan", what, {"dtype": dtype, **settings}, run)


# ----------------------------------------------------------------------------------------------- data for 3 and 4
def write_shards(root: Path, n_shards: int, per_shard: int, size: int, k: int = 2) -> Path:
    """Synthetic source shards plus a generated column `bench` with k variants per image (re-encoded copies)."""
    import io

    from PIL import Image

    from genaug.shards.manifest import read_manifest, write_manifest
    from genaug.shards.reader import iter_shard_raw
    from genaug.shards.writer import commit_shard
    from genaug.testing.shards import write_synthetic_split

    write_synthetic_split(root, "train", num_shards=n_shards, per_shard=per_shard, size=size, seed=0)
    src = root / "train"
    gen = root / "gen" / "bench" / "train"
    gen.mkdir(parents=True)
    man = read_manifest(src)
    write_manifest(gen, {"kind": "generated", "k": k, "source_split": "train", "shards": man["shards"]})
    for name in man["shards"]:
        samples = []
        for raw in iter_shard_raw(src / name):
            img = Image.open(io.BytesIO(raw["jpg"])).convert("RGB")
            variants = {}
            for j in range(k):
                buf = io.BytesIO()
                img.rotate(90 * (j + 1)).save(buf, format="JPEG", quality=90)
                variants[f"gen_{j}.jpg"] = buf.getvalue()
            samples.append({"__key__": raw["__key__"], "json": '{"failed": null}', **variants})
        commit_shard(gen, int(name[:6]), samples)
    return root


# ----------------------------------------------------------------------------------------------- 3. training
def backbone_train_flops(name: str, size: int) -> int:
    """FLOPs of one forward + backward of backbone `name` on one size x size image (meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    from genaug.ssl.backbones import build_backbone

    with torch.device("meta"):
        net, _ = build_backbone(name, size)
        with FlopCounterMode(display=False) as fc:
            net(torch.zeros(1, 3, size, size)).sum().backward()
    return int(fc.get_total_flops())


def bench_training(
    res: Results, args: argparse.Namespace, device: str, shards: Path, peak: float | None = None
) -> None:
    """Samples/s of genaug's trainer (SimCLR, ResNet-50) with the colour stage in the workers vs on the GPU."""
    from genaug.train.runner import train

    smoke = args.cpu_smoke
    backbone = args.train_backbone or "resnet50"
    precision = "bf16"
    size = args.view_size
    log_every = 2 if smoke else 10
    steps = log_every * max(2, math.ceil((args.train_steps or (2 * log_every if smoke else 6 * log_every)) / log_every))
    per_sample = 2 * backbone_train_flops(backbone, size)  # 2 views; projector, loss and optimizer left out
    for aug in ("cpu", "cuda"):
        settings = {"method": "simclr", "backbone": backbone, "augment_device": aug, "batch": args.train_batch,
                    "view_size": size, "workers": args.workers, "p": 0.5, "steps_timed": steps - log_every}  # fmt: skip
        what = f"train {backbone}"
        if aug == "cuda" and not device.startswith("cuda"):
            res.skip("training", what, {"dtype": precision, **settings}, "augment_device cuda needs a CUDA device")
            continue

        def run(aug=aug, settings=settings, what=what) -> None:
            out = Path(tempfile.mkdtemp(prefix=f"train-{aug}-", dir=args.work))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                train(method="simclr", shards=str(shards), p=0.5, gen=["bench"], out=out, steps=steps,
                      batch_size=args.train_batch, backbone=backbone, image_size=size, workers=args.workers,
                      precision=precision, augment_device=aug, log_every=log_every, ckpt_every=0,
                      progress_bar=False, probe=False, overrides={"loop.tensorboard": False})  # fmt: skip
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
            rows = [r for r in rows if "images_per_s" in r][1:]  # the first window (warm-up) is dropped
            if not rows:
                raise RuntimeError("no timed log window in metrics.jsonl")
            n = args.train_batch * log_every
            secs = sum(n / r["images_per_s"] for r in rows)
            ips = n * len(rows) / secs
            wait = sum(r["data_wait"] * n / r["images_per_s"] for r in rows) / secs
            res.add("training", {
                "what": what, "device": device, "dtype": precision, "settings": settings, "images_per_s": ips,
                "unit": "samples/s", "mfu": mfu(ips, per_sample, peak), "seconds": secs, "data_wait_fraction": wait,
                "model_gflop_per_sample": per_sample / 1e9,
            })  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)

        guarded(res, "training", what, {"dtype": precision, **settings}, run)


# ----------------------------------------------------------------------------------------------- 4. loader
def bench_loader(res: Results, args: argparse.Namespace, device: str, shards: Path) -> None:
    """Samples/s of build_train_loader: float32 views (colour stage in workers) vs uint8 + deferred colour stage."""
    views = {"preset": "byol", "size": args.view_size}
    for deferred in (False, True):
        stage = f"deferred, batched on {device}" if deferred else "in workers"
        dtype = "uint8" if deferred else "float32"
        settings = {"views": f"byol {args.view_size}px x2", "colour_stage": stage, "batch": args.loader_batch,
                    "workers": args.workers, "p": 0.5, "epochs": args.loader_epochs}  # fmt: skip
        what = "build_train_loader"

        cell = {"deferred": deferred, "dtype": dtype, "settings": settings, "what": what, "views": views}
        guarded(
            res, "loader", what, {"dtype": dtype, **settings}, partial(loader_cell, res, args, device, shards, cell)
        )


def loader_cell(res: Results, args: argparse.Namespace, device: str, shards: Path, c: dict) -> None:
    """Samples/s of one loader configuration over --loader-epochs epochs (first batch of each not timed)."""
    from genaug.data.stream import build_train_loader

    deferred = c["deferred"]
    n = 0
    secs = 0.0
    for epoch in range(args.loader_epochs):
        loader = build_train_loader(
            shards, "train", ["bench"], p=0.5, views_recipe=c["views"], batch_size=args.loader_batch,
            num_workers=args.workers, seed=epoch, shuffle_buffer=256, gpu_augment=deferred,
            device=device if deferred else None, pin_memory=device.startswith("cuda") and deferred,
        )  # fmt: skip
        t0 = None
        for b in loader:
            if deferred:
                sync(device)
            if t0 is None:  # the first batch (worker start-up) is not timed
                t0 = time.perf_counter()
                continue
            n += b["views"][0].shape[0]
        secs += time.perf_counter() - (t0 or time.perf_counter())
    if n == 0:
        raise RuntimeError("the loader gave fewer than 2 batches: write more shards")
    res.add("loader", {
        "what": c["what"], "device": device if deferred else "cpu", "dtype": c["dtype"], "settings": c["settings"],
        "images_per_s": n / secs, "unit": "samples/s", "mfu": None, "samples": n, "seconds": secs,
    })  # fmt: skip


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (defaults differ between the GPU run and --cpu-smoke)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default ./bench-gpu-<date>/)")
    ap.add_argument("--cpu-smoke", action="store_true", help="reduced CPU run of every section (tiny models)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s for MFU (default: by GPU name)")
    ap.add_argument("--device", default=None, help="default cuda (cpu with --cpu-smoke)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of " + ", ".join(SECTIONS))
    ap.add_argument("--models", default="sd,sd-unclip", help="diffusion recipes to time")
    ap.add_argument("--dtypes", default=None, help="generation dtypes (default fp16,bf16; smoke fp32,bf16)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--gen-batch", type=int, default=None, help="variants per pipeline call (default: recipe's)")
    ap.add_argument("--gen-calls", type=int, default=None, help="timed pipeline calls per row (default 4; smoke 1)")
    ap.add_argument("--gen-steps", type=int, default=None, help="sampling steps (default: the recipe's)")
    ap.add_argument("--icgan-batch", type=int, default=None)
    ap.add_argument("--icgan-calls", type=int, default=None, help="timed generator calls (default 32; smoke 1)")
    ap.add_argument("--train-batch", type=int, default=None, help="default 256 (smoke 8)")
    ap.add_argument("--train-steps", type=int, default=None, help="default 60, the first 10 untimed (smoke 4)")
    ap.add_argument("--train-backbone", default=None, help="default resnet50")
    ap.add_argument("--loader-batch", type=int, default=None, help="default 256 (smoke 8)")
    ap.add_argument("--loader-epochs", type=int, default=None, help="default 2 (smoke 1)")
    ap.add_argument("--view-size", type=int, default=None, help="view size, default 224 (smoke 32)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default min(8, CPUs); smoke 2)")
    ap.add_argument("--shards", type=int, default=None, help="synthetic shards (default 64; smoke 4)")
    ap.add_argument("--per-shard", type=int, default=None, help="images per shard (default 128; smoke 16)")
    ap.add_argument("--cache", type=Path, default=None, help="where random weights are saved (default genaug cache)")
    a = ap.parse_args(argv)
    s = a.cpu_smoke
    a.device = a.device or ("cpu" if s else "cuda")
    a.sections = [x.strip() for x in a.sections.split(",") if x.strip()]
    bad = [x for x in a.sections if x not in SECTIONS]
    if bad:
        ap.error(f"unknown section {bad[0]!r}: choose from {', '.join(SECTIONS)}")
    a.models = [x.strip() for x in a.models.split(",") if x.strip()]
    a.dtypes = [x.strip() for x in (a.dtypes or ("fp32,bf16" if s else "fp16,bf16")).split(",") if x.strip()]
    a.icgan_dtypes = a.dtypes
    a.no_compile = a.no_compile or s  # smoke: compile rows are listed as skipped
    a.gen_calls = a.gen_calls or (1 if s else 4)
    a.icgan_calls = a.icgan_calls or (1 if s else 32)
    a.train_batch = a.train_batch or (8 if s else 256)
    a.loader_batch = a.loader_batch or (8 if s else 256)
    a.loader_epochs = a.loader_epochs or (1 if s else 2)
    a.view_size = a.view_size or (32 if s else 224)
    a.workers = a.workers or (2 if s else min(8, os.cpu_count() or 1))
    a.shards = a.shards or (4 if s else 64)
    a.per_shard = a.per_shard or (16 if s else 128)
    if s and not a.train_backbone:
        a.train_backbone = "resnet18"
    return a


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections and write results.json and results.md; 2 when no GPU and no --cpu-smoke."""
    args = parse_args(argv)
    if not args.cpu_smoke and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        print("bench_gpu: error: a CUDA GPU is needed for these figures (none found); "
              "run with --cpu-smoke for a reduced CPU check", file=sys.stderr)  # fmt: skip
        return 2
    import diffusers
    import transformers

    import genaug

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    from genaug.core.files import cache_home

    t_start = time.perf_counter()
    today = dt.date.today().isoformat()
    out = args.out or Path(f"bench-gpu-{today}")
    own_cache = args.cache is None and args.cpu_smoke  # smoke weights are tiny: rebuilt each run, then removed
    args.cache = args.cache or (Path(tempfile.mkdtemp(prefix="bench-gpu-cache-")) if own_cache else cache_home())
    device = args.device
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    peak = peak_tflops(gpu, args.peak_tflops) if gpu else None
    res = Results({
        "date": dt.datetime.now().isoformat(timespec="seconds"), "smoke": bool(args.cpu_smoke), "device": device,
        "device_name": gpu or f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "peak_tflops": peak, "torch": torch.__version__, "diffusers": diffusers.__version__,
        "genaug": genaug.__version__, "cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
        "command": "bash scripts/bench_gpu.sh " + " ".join(sys.argv[1:] if argv is None else argv),
    })  # fmt: skip
    if gpu and peak is None:
        print(f"bench_gpu: no peak TFLOP/s known for {gpu!r}: MFU is null (pass --peak-tflops)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        args.work = work
        shards = None
        if "training" in args.sections or "loader" in args.sections:
            shards = write_shards(Path(work) / "set", args.shards, args.per_shard, 40 if args.cpu_smoke else 256)
        if "generation" in args.sections:
            bench_generation(res, args, device, peak)
        if "icgan" in args.sections:
            bench_icgan(res, args, device, peak)
        if "training" in args.sections:
            bench_training(res, args, device, shards, peak)
        if "loader" in args.sections:
            bench_loader(res, args, device, shards)
    if own_cache:
        shutil.rmtree(args.cache, ignore_errors=True)
    res.meta["seconds"] = round(time.perf_counter() - t_start, 1)
    js, md = res.write(out)
    print(f"wrote {js} and {md} in {res.meta['seconds']} s ({res.failures} failed configurations)")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
