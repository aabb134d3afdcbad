"""`genaug fit-generator`: exact resume after SIGKILL, the saved folder loads in img2img, bad inputs are one line;
and the class consistency of a digits model the test fits (small settings) at the shipped strength."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genaug.cli import main as cli_main
from genaug.fit.run import fit_generator
from genaug.generate.recipe import resolve_recipe
from genaug.shards.manifest import write_manifest
from genaug.shards.writer import commit_shard
from genaug.testing.shards import write_synthetic_split

SMALL = ["--size", "8", "--widths", "8,16", "--steps", "30", "--batch-size", "8", "--ckpt-every", "10"]
SMALL_KW = {"size": 8, "widths": [8, 16], "steps": 30, "batch_size": 8}


def env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


@pytest.fixture()
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels as the OMP_NUM_THREADS=1 child: bitwise-equal float sums
    yield
    torch.set_num_threads(old)


def test_resume_after_sigkill_equals_uninterrupted_fit(tmp_path, one_thread):
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=8, size=16, seed=1)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "genaug", "fit-generator", "--shards", str(root), "--out", str(killed),
           "--no-progress", *SMALL]  # fmt: skip
    r = subprocess.run(cmd, env=env(GENAUG_FAULT="fit-step:17"), capture_output=True, text=True, timeout=600)
    assert r.returncode == -9, r.stderr[-2000:]  # SIGKILLed at step 17, 7 steps after its last checkpoint
    assert [p.name for p in (killed / "checkpoints").glob("*.pt")] == ["checkpoint-00000010.pt"]
    assert not (killed / "model").exists()
    # the resume and the reference run each in a fresh process, as a user's would (in-process state of earlier
    # tests, e.g. oneDNN's choices after other thread counts, must not enter the comparison)
    for out, trained in ((killed, 20), (tmp_path / "clean", 30)):
        cmd = [sys.executable, "-m", "genaug", "fit-generator", "--shards", str(root), "--out", str(out),
               "--no-progress", *SMALL]  # fmt: skip
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        # the resume continues from its checkpoint at step 10 (a fit restarted from step 0 would give the same bytes)
        assert f": {trained} steps on 8 images" in r.stdout, r.stdout
    resumed = json.loads((killed / "fit.json").read_text())
    clean = json.loads((tmp_path / "clean" / "fit.json").read_text())
    assert resumed["done"] and clean["done"] and clean["log"] == resumed["log"] and clean["log"][-1]["step"] == 30
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (killed / "model" / weights).read_bytes() == (tmp_path / "clean" / "model" / weights).read_bytes()
    # done: a rerun trains nothing; other settings in the same folder are refused with the way out
    assert fit_generator(str(root), killed, progress=False, **SMALL_KW)["cached"]
    assert cli_main(["fit-generator", "--shards", str(root), "--out", str(killed), *SMALL[:-2], "--lr", "0.01"]) == 2
    # the saved folder is what `generate --model img2img-ddpm --weights` loads
    from genaug.generate.base import generator_class

    gen = generator_class("img2img")(resolve_recipe("img2img-ddpm", k=1), "cpu", str(killed / "model"))
    assert gen.res == 8 and gen.channels == 3


def test_two_processes_fit_one_model(tmp_path):
    """torchrun with 2 CPU processes: one gloo group (each rank its share of a step's rows), one model saved."""
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=8, size=16, seed=1)
    out = tmp_path / "duo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "genaug",
           "fit-generator", "--shards", str(root), "--out", str(out), "--no-progress", *SMALL]  # fmt: skip
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "fit.json").read_text())
    assert doc["done"] and doc["processes"] == 2 and doc["log"][-1]["step"] == 30, doc
    assert r.stdout.count("fit-generator: ") == 1, r.stdout  # one process reports
    assert (out / "model" / "model_index.json").is_file() and not (out / "checkpoints").exists()


def test_bad_inputs_are_one_line(tmp_path, capsys):
    def err(args: list[str], needle: str) -> None:
        assert cli_main(["fit-generator", "--out", str(tmp_path / "o"), *SMALL, *args]) == 2  # the last flag wins
        text = capsys.readouterr().err
        assert text.count("\n") == 1 and text.startswith("genaug: error: ") and needle in text, text

    err(["--shards", str(tmp_path / "nowhere")], "nowhere")
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=2, size=16)
    err(["--shards", str(root), "--split", "val"], "no split 'val'")
    # a split whose samples carry no image (labels and metadata only)
    folder = root / "labels"
    folder.mkdir()
    write_manifest(folder, {"kind": "source", "split": "labels", "shards": ["000000.tar"], "num_shards": 1})
    commit_shard(folder, 0, [{"__key__": "000000_000000", "cls": "1", "json": json.dumps({"a": 1})}], ("json",),
                 {"failures": []})  # fmt: skip
    err(["--shards", str(root), "--split", "labels"], "holds no images")
    # a split folder that holds a generated column's manifest: not source images
    gen = root / "variants"
    gen.mkdir()
    write_manifest(gen, {"kind": "generated", "split": "variants", "shards": [], "num_shards": 0})
    err(["--shards", str(root), "--split", "variants"], "not source images")
    err(["--shards", str(root), "--widths", "8,x"], "--widths")
