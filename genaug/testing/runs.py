"""Tiny training runs made the way a user makes them (train() or torchrun), for tests, the demo and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from genaug.core.recipes import recipe_path

# small heads for every method; only the keys a method's shipped recipe has are used
TINY_HEADS = {
    "proj_hidden": 32, "proj_out": 16, "pred_hidden": 16, "queue_size": 32, "out_dim": 32, "head_hidden": 32,
    "bottleneck": 16, "n_prototypes": 8, "queue_length": 16, "queue_start_epoch": 1, "freeze_prototypes_steps": 1,
    "samples": 2, "z_dim": 8, "width": 8, "hidden": 16, "image_size": 16,
}  # fmt: skip


def tiny_overrides(method: str) -> dict:
    """Dotted recipe overrides that shrink `method` to a tiny backbone, heads and multi-crop views."""
    doc = yaml.safe_load(recipe_path("trainers", method).read_text(encoding="utf-8"))
    args = doc.get("method_args") or {}
    out = {f"method_args.{k}": v for k, v in TINY_HEADS.items() if k in args}
    out["backbone.width"] = 4
    if method in ("dino", "swav"):
        out["views.local.n"] = 2
        out["views.local.size"] = 8
    return out


def train_tiny(
    method: str, shards: str | os.PathLike, out: str | os.PathLike, nproc: int = 1, steps: int = 4, seed: int = 0
) -> Path:
    """Train `method` tiny for `steps` steps (checkpoints every 2) in-process or under torchrun; the run folder."""
    from genaug.train.runner import train

    over = tiny_overrides(method)
    if nproc == 1:
        train(
            method, shards=shards, out=out, steps=steps, batch_size=8, backbone="tiny", image_size=16, workers=0,
            ckpt_every=2, log_every=1, seed=seed, overrides=over, progress_bar=False,
        )  # fmt: skip
        return Path(out)
    args = ["train", "--method", method, "--shards", str(shards), "--out", str(out), "--steps", str(steps)]
    args += ["--backbone", "tiny", "--image-size", "16", "--batch-size", "8", "--workers", "0", "--quiet"]
    args += ["--ckpt-every", "2", "--log-every", "1", "--seed", str(seed)]
    for k, v in over.items():
        args += ["--set", f"{k}={v}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "-m", "genaug", *args]
    rc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    if rc.returncode != 0:
        raise RuntimeError(f"torchrun training of {method} failed:\n{rc.stderr[-3000:]}")
    return Path(out)
