"""Files a user was handed never run code: checkpoints with pickled payloads and recipes naming a module."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genaug.testing.runs import train_tiny
from genaug.testing.shards import write_synthetic_split


class _Payload:
    """Unpickling this calls os.system: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    shards = root / "set"
    write_synthetic_split(shards, "train", num_shards=2, per_shard=8, size=24, num_classes=2, seed=0)
    write_synthetic_split(shards, "val", num_shards=1, per_shard=8, size=24, num_classes=2, seed=1)
    return train_tiny("simclr", shards, root / "run"), shards


def _genaug(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ""}  # nothing but the installed genaug and the cwd python adds itself
    return subprocess.run([sys.executable, "-m", "genaug", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_pickled_payload_in_a_checkpoint_never_runs(run, tmp_path):
    folder, shards = run
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil"
    bad.mkdir()
    (bad / "recipe.yaml").write_text((folder / "recipe.yaml").read_text())
    with open(bad / "checkpoint-00000009.pt", "wb") as f:
        pickle.dump({"model": _Payload(marker), "step": 9}, f)
    for args in (
        ["train", "--method", "simclr", "--shards", str(shards), "--resume", str(bad / "checkpoint-00000009.pt"),
         "--out", str(tmp_path / "out"), "--backbone", "tiny", "--workers", "0", "--batch-size", "8"],
        ["eval", "linear", str(bad / "checkpoint-00000009.pt"), "--shards", str(shards), "--fast"],
        ["eval", "knn", str(bad), "--shards", str(shards)],
    ):  # fmt: skip
        r = _genaug(args, tmp_path)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.count("\n") == 1 and "cannot be read safely" in r.stderr, r.stderr
        assert not marker.exists(), "the checkpoint's payload ran"


def test_a_recipe_naming_a_module_in_the_cwd_is_refused(run, tmp_path):
    folder, shards = run
    marker = tmp_path / "pwned"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    bad = tmp_path / "downloaded-run"
    bad.mkdir()
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["module"] = "evilmod"
    (bad / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (bad / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    r = _genaug(["eval", "linear", str(bad), "--shards", str(shards), "--fast"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a genaug module" in r.stderr, r.stderr
    assert not marker.exists(), "the recipe's module ran"
    # trusting it by name is the user's explicit choice (and still refused when it sits in the cwd unasked)
    r = _genaug(["train", "--method", str(bad / "recipe.yaml"), "--shards", str(shards), "--steps", "1"], tmp_path)
    assert r.returncode == 2 and not marker.exists(), r.stderr


def test_checkpoints_of_this_version_load_with_weights_only(run):
    import torch

    from genaug.ssl.artifacts import latest_checkpoint_file

    folder, _ = run
    doc = torch.load(latest_checkpoint_file(folder), map_location="cpu", weights_only=True)
    assert doc["step"] == 4 and "rng" in doc


def test_flipped_bytes_in_a_generated_shard_are_not_trained_on(tmp_path):
    """A generated shard whose bytes no longer match its recorded checksum: training uses the source images of that
    shard, warns, and counts the samples in metrics.jsonl (gen_fallback); every other shard keeps its variants."""
    import json

    from genaug.data.stream import build_train_loader
    from genaug.generate.dispatch import generate
    from genaug.shards.layout import shard_name

    shards = tmp_path / "set"
    write_synthetic_split(shards, "train", num_shards=2, per_shard=8, size=24, num_classes=2, seed=0)
    generate(model="tiny", shards=str(shards), split="train", k=1, progress=False)
    col = shards / "gen" / "tiny" / "train"
    tar = col / shard_name(1)
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a generated JPEG: it may still decode
    tar.write_bytes(bytes(data))
    loader = build_train_loader(shards, gen_columns=["tiny"], p=1.0, views_recipe={"size": 16}, batch_size=4,
                                num_workers=0, seed=0)  # fmt: skip
    with pytest.warns(UserWarning, match="does not match its recorded checksum"):
        batches = list(loader)
    replaced = torch_cat([b["replaced"] for b in batches])
    keys = [k for b in batches for k in b["key"]]
    for key, rep in zip(keys, replaced, strict=True):
        assert bool(rep.any()) == key.startswith("s000000"), key  # p=1: only the intact shard's views are variants
    assert loader.gen_fallback == 8
    run = train_tiny_on(shards, tmp_path / "run")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["gen_fallback"] > 0


def torch_cat(xs):
    import torch

    return torch.cat(xs)


def train_tiny_on(shards: Path, out: Path) -> Path:
    """A tiny SimCLR run at p=0.5 on `shards`' tiny column."""
    from genaug.testing.runs import tiny_overrides
    from genaug.train.runner import train

    train("simclr", shards=shards, p=0.5, gen=["tiny"], out=out, steps=4, batch_size=8, backbone="tiny",
          image_size=16, workers=0, log_every=1, overrides=tiny_overrides("simclr"), progress_bar=False)  # fmt: skip
    return out


def _png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header claims width x height pixels while its data is a few bytes (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_eval_skips_a_corrupt_image_and_a_decompression_bomb(run, tmp_path, capsys):
    """A split written by another tool holds a truncated JPEG and a PNG bomb: evaluation skips both with a warning
    naming the key and scores the rest, as training does."""
    import io
    import json

    from PIL import Image

    from genaug.cli import main
    from genaug.shards.manifest import write_manifest
    from genaug.shards.writer import commit_shard

    folder, shards = run
    bad = tmp_path / "set"
    import shutil

    shutil.copytree(shards / "train", bad / "train")
    val = bad / "val"
    val.mkdir(parents=True)
    samples = []
    for r in range(6):
        buf = io.BytesIO()
        Image.new("RGB", (24, 24), (40 * r, 10, 200 - 30 * r)).save(buf, format="JPEG")
        samples.append({"__key__": f"s000000r{r:06d}", "jpg": buf.getvalue(), "cls": str(r % 2)})
    samples[2]["jpg"] = samples[2]["jpg"][:40]  # truncated
    samples[4] = {"__key__": "s000000r000004", "png": _png_bomb(), "cls": "0"}
    commit_shard(val, 0, samples, (), {"failures": []})
    write_manifest(val, {"kind": "source", "split": "val", "classes": ["a", "b"], "shards": ["000000.tar"],
                         "plan_hash": "x"})  # fmt: skip
    with pytest.warns(UserWarning, match="skipping corrupt sample"):
        assert main(["eval", "knn", str(folder), "--shards", str(bad), "--k", "3", "--quiet"]) == 0
    doc = json.loads(next((folder / "eval").glob("knn-val-*.json")).read_text())
    assert doc["summary"]["knn/k3/top1"] >= 0.0 and doc["preprocess"]["skipped_images"] == 2
    feats = sorted((folder / "features").glob("val-*.npz"))
    import numpy as np

    keys = list(np.load(feats[-1], allow_pickle=False)["keys"])
    assert "s000000r000002" not in keys and "s000000r000004" not in keys and len(keys) == 4
