"""img2img (SDEdit) on random-weight folders in the real diffusers layouts: a StableDiffusionImg2ImgPipeline and a
DDPMPipeline (UNet2DModel + scheduler, what fit-generator saves): seeds per (key, k) at batch 1 and 4 and in 1 vs 2
processes, kill -9 and resume, fidelity scores, strength."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.cli import main as cli_main
from genaug.generate.base import variant_seed
from genaug.generate.dispatch import generate
from genaug.shards.manifest import read_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.writer import is_shard_done
from genaug.testing.img2img import save_tiny_ddpm, save_tiny_sd_img2img
from genaug.testing.shards import write_synthetic_split

NUM_SHARDS, PER_SHARD, K = 3, 2, 2
SMALL = {
    "img2img-sd": {"sampling.resolution": 32, "sampling.steps": 4, "sampling.guidance": 3.0, "output.size": 32,
                   "dtype": "fp32"},
    "img2img-ddpm": {"sampling.steps": 10, "output.size": 32},
}  # fmt: skip


def env() -> dict:
    """Child processes: one thread, this checkout first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("img2img-weights")
    return {"img2img-sd": save_tiny_sd_img2img(root / "sd"), "img2img-ddpm": save_tiny_ddpm(root / "ddpm")}


@pytest.fixture(scope="module")
def source_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("img2img-set") / "synth"
    write_synthetic_split(root, "train", num_shards=NUM_SHARDS, per_shard=PER_SHARD, size=32, seed=4)
    return root


def run(model: str, root: Path, w: dict, column: str, batch_size: int, **kw) -> dict:
    return generate(model=model, shards=str(root), weights=str(w[model]), column=column, k=K, batch_size=batch_size,
                    overrides={**SMALL[model], **kw.pop("overrides", {})}, progress=False, **kw)  # fmt: skip


def folder(root: Path, column: str) -> Path:
    return root / "gen" / column / "train"


def pixels(root: Path, column: str) -> dict:
    out = {}
    for i in range(NUM_SHARDS):
        for s in iter_shard_raw(folder(root, column) / f"{i:06d}.tar"):
            for k in range(K):
                out[s["__key__"], k] = np.asarray(Image.open(io.BytesIO(s[f"gen_{k}.jpg"])).convert("RGB"), np.int16)
    return out


def tar_bytes(root: Path, column: str) -> list[bytes]:
    return [(folder(root, column) / f"{i:06d}.tar").read_bytes() for i in range(NUM_SHARDS)]


def same_pixels(a: dict, b: dict) -> None:
    """The same variants: the in-process reference and the CLI runs agree to JPEG rounding (float kernels ~1e-6)."""
    assert a.keys() == b.keys() and len(a) == NUM_SHARDS * PER_SHARD * K
    assert max(np.abs(a[x] - b[x]).max() for x in a) <= 4


def small_recipe(model: str, folder: Path) -> Path:
    """The shipped recipe with SMALL applied, as a YAML file: the CLI runs what run() runs in-process."""
    import yaml

    from genaug.core.recipes import apply_overrides, load_recipe

    path = folder / f"{model}-small.yaml"
    path.write_text(yaml.safe_dump(apply_overrides(load_recipe("pipelines", model), SMALL[model])))
    return path


def cli_args(model: str, root: Path, w: dict, column: str) -> list[str]:
    return ["generate", "--model", str(small_recipe(model, root.parent)), "--shards", str(root), "--weights",
            str(w[model]), "--column", column, "--k", str(K), "--batch-size", "4", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("model", ["img2img-sd", "img2img-ddpm"])
def test_variants_seeded_per_key_and_scored(model, weights, source_set):
    out = run(model, source_set, weights, f"{model}-b4", 4)
    assert out["images"] == NUM_SHARDS * PER_SHARD * K and out["failures"] == 0
    run(model, source_set, weights, f"{model}-b1", 1)
    a, b = pixels(source_set, f"{model}-b4"), pixels(source_set, f"{model}-b1")
    assert a.keys() == b.keys() and len(a) == NUM_SHARDS * PER_SHARD * K
    assert max(np.abs(a[x] - b[x]).max() for x in a) <= 4  # float kernels differ at ~1e-6 across batch sizes
    man = read_manifest(folder(source_set, f"{model}-b4"))
    assert man["recipe"]["generator"] == "img2img" and man["fidelity"]["space"] == "pixel-corr"
    assert man["fidelity"]["summary"]["n"] == NUM_SHARDS * PER_SHARD * K
    assert man["recipe_hash"] == read_manifest(folder(source_set, f"{model}-b1"))["recipe_hash"]
    for s in iter_shard_raw(folder(source_set, f"{model}-b4") / "000000.tar"):
        meta = json.loads(s["json"])
        assert meta["seeds"] == [variant_seed(0, s["__key__"], k) for k in range(K)]
        fid = meta["fidelity"]
        assert fid["space"] == "pixel-corr" and len(fid["scores"]) == K and all(-1 <= x <= 1 for x in fid["scores"])
        imgs = [np.asarray(Image.open(io.BytesIO(s[f"gen_{k}.jpg"])), np.int16) for k in range(K)]
        assert imgs[0].shape == (32, 32, 3) and np.abs(imgs[0] - imgs[1]).mean() > 1  # two seeds, two variants


def test_strength_sets_how_far_from_the_source(weights, source_set):
    """At a small strength a variant stays near its source; at strength 1 it is a fresh sample (random model)."""
    run("img2img-ddpm", source_set, weights, "weak", 4, overrides={"sampling.strength": 0.1}, limit_shards=1)
    run("img2img-ddpm", source_set, weights, "full", 4, overrides={"sampling.strength": 1.0}, limit_shards=1)
    weak, full = (
        [json.loads(s["json"])["fidelity"]["scores"] for s in iter_shard_raw(folder(source_set, c) / "000000.tar")]
        for c in ("weak", "full")
    )
    assert np.mean(weak) > 0.8 and np.mean(weak) > np.mean(full) + 0.3, (weak, full)


@pytest.mark.parametrize("model", ["img2img-sd", "img2img-ddpm"])
def test_two_processes_and_kill_resume_equal_one_run(model, weights, source_set):
    ref = f"{model}-b4"
    if not (folder(source_set, ref) / "manifest.json").exists():
        run(model, source_set, weights, ref, 4)
    # 1 vs 2 processes: the same variants
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "genaug",
           *cli_args(model, source_set, weights, f"{model}-duo")]  # fmt: skip
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sum(int(n) for n in re.findall(r"this process made (\d+) shards", res.stdout)) == NUM_SHARDS
    same_pixels(pixels(source_set, f"{model}-duo"), pixels(source_set, ref))
    # kill -9 after the first shard, then resume: the same variants as the uninterrupted run
    col = folder(source_set, f"{model}-kill")
    proc = subprocess.Popen([sys.executable, "-m", "genaug", *cli_args(model, source_set, weights, f"{model}-kill")],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 300
    while not (col / "000000.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [i for i in range(NUM_SHARDS) if is_shard_done(col, i)]
    assert 0 in done
    assert cli_main(cli_args(model, source_set, weights, f"{model}-kill")) == 0
    same_pixels(pixels(source_set, f"{model}-kill"), pixels(source_set, ref))
    # the same command, batch size and threads per process: the killed-and-resumed column has the 2-process run's bytes
    assert tar_bytes(source_set, f"{model}-kill") == tar_bytes(source_set, f"{model}-duo")


def test_unet_recipe_without_weights_is_one_line(source_set, capsys):
    assert cli_main(["generate", "--model", "img2img-ddpm", "--shards", str(source_set), "--k", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs --weights DIR" in err and "fit-generator" in err, err
    assert cli_main(["generate", "--model", "img2img-ddpm", "--shards", str(source_set), "--strength", "1.5"]) == 2
    assert "--strength" in capsys.readouterr().err
