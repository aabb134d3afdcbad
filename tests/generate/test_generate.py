"""The generate stage with the tiny recipe on CPU: alignment, seeds, resume, several processes, failures, status."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.cli import main as cli_main
from genaug.core.errors import GenaugError
from genaug.generate.base import variant_seed
from genaug.generate.dispatch import generate
from genaug.shards.layout import make_key
from genaug.shards.manifest import read_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.writer import commit_shard, is_shard_done, read_stats
from genaug.testing.shards import write_synthetic_split

NUM_SHARDS, PER_SHARD, K = 4, 3, 2


def env() -> dict:
    """Environment of child processes: this session's tiny-model cache, one thread, this checkout first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@pytest.fixture(scope="session")
def source_set(tmp_path_factory) -> Path:
    """A labeled source split `train` of 4 shards x 3 JPEGs of 32 px."""
    root = tmp_path_factory.mktemp("shards") / "synth"
    write_synthetic_split(root, "train", num_shards=NUM_SHARDS, per_shard=PER_SHARD, size=32, seed=3)
    return root


@pytest.fixture(scope="session")
def clean_column(source_set: Path) -> dict:
    """The reference column `clean`: tiny recipe, K=2, batch size 4, one uninterrupted in-process run."""
    return generate(model="tiny", shards=str(source_set), column="clean", k=K, batch_size=4, progress=False)


def col_dir(root: Path, column: str) -> Path:
    return root / "gen" / column / "train"


def tar_bytes(root: Path, column: str) -> list[bytes]:
    return [(col_dir(root, column) / f"{i:06d}.tar").read_bytes() for i in range(NUM_SHARDS)]


def pixels(root: Path, column: str, shards: int = NUM_SHARDS) -> dict[tuple[str, int], np.ndarray]:
    out = {}
    for i in range(shards):
        for s in iter_shard_raw(col_dir(root, column) / f"{i:06d}.tar"):
            for k in range(K):
                out[s["__key__"], k] = np.asarray(Image.open(io.BytesIO(s[f"gen_{k}.jpg"])).convert("RGB"), np.int16)
    return out


def test_column_aligns_with_source(source_set, clean_column):
    folder = col_dir(source_set, "clean")
    man = read_manifest(folder)
    assert man["kind"] == "generated" and man["k"] == K and man["source_split"] == "train"
    assert man["recipe"]["name"] == "tiny" and man["recipe"]["k"] == K and len(man["recipe_hash"]) == 16
    assert man["shards"] == [f"{i:06d}.tar" for i in range(NUM_SHARDS)] and man["genaug_version"]
    assert clean_column["images"] == NUM_SHARDS * PER_SHARD * K and clean_column["failures"] == 0
    for i in range(NUM_SHARDS):
        assert is_shard_done(folder, i)
        src = [s["__key__"] for s in iter_shard_raw(source_set / "train" / f"{i:06d}.tar")]
        gen = list(iter_shard_raw(folder / f"{i:06d}.tar"))
        assert [s["__key__"] for s in gen] == src == [make_key(i, r) for r in range(PER_SHARD)]
        for s in gen:
            assert sorted(f for f in s if not f.startswith("__")) == ["gen_0.jpg", "gen_1.jpg", "json"]
            meta = json.loads(s["json"])
            assert meta["failed"] is None and meta["recipe_hash"] == man["recipe_hash"]
            assert meta["seeds"] == [variant_seed(0, s["__key__"], k) for k in range(K)]
            for k in range(K):
                img = Image.open(io.BytesIO(s[f"gen_{k}.jpg"]))
                assert img.format == "JPEG" and img.size == (32, 32)
            # two seeds -> two different images
            a, b = (np.asarray(Image.open(io.BytesIO(s[f"gen_{k}.jpg"]))) for k in range(K))
            assert np.abs(a.astype(int) - b).mean() > 1
        stats = read_stats(folder, i)
        assert stats["count"] == PER_SHARD and stats["images"] == PER_SHARD * K and stats["failures"] == []
    # a rerun finds everything done, loads no model and changes nothing
    before = tar_bytes(source_set, "clean")
    again = generate(model="tiny", shards=str(source_set), column="clean", k=K, batch_size=4, progress=False)
    assert again["shards"] == [] and again["load_seconds"] == 0.0 and tar_bytes(source_set, "clean") == before


def test_batch_size_one_matches_batch_four(source_set, clean_column):
    generate(model="tiny", shards=str(source_set), column="bs1", k=K, batch_size=1, limit_shards=2, progress=False)
    a, b = pixels(source_set, "clean", 2), pixels(source_set, "bs1", 2)
    assert a.keys() == b.keys() and len(a) == 2 * PER_SHARD * K
    diff = np.array([np.abs(a[x] - b[x]).max() for x in a])
    # float kernels differ across batch sizes at ~1e-6; after uint8 rounding and JPEG: a couple of levels at most
    assert diff.max() <= 4, diff
    assert (
        read_manifest(col_dir(source_set, "bs1"))["recipe_hash"]
        == read_manifest(col_dir(source_set, "clean"))["recipe_hash"]
    )


def test_kill_and_resume_equals_clean_run(source_set, clean_column):
    folder = col_dir(source_set, "resumed")
    cmd = [sys.executable, "-m", "genaug", "generate", "--shards", str(source_set), "--column", "resumed",
           "--k", str(K), "--batch-size", "4", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (folder / "000000.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [i for i in range(NUM_SHARDS) if is_shard_done(folder, i)]
    assert 0 in done and len(done) < NUM_SHARDS, done
    todo = max(set(range(NUM_SHARDS)) - set(done))
    # leftovers as a crash mid-commit leaves them: a temp tar and a renamed tar without its stats file
    (folder / f"{todo:06d}.tar.tmp-otherhost-1").write_bytes(b"partial")
    (folder / f"{todo:06d}.tar").write_bytes(b"truncated tar")
    if not list((folder / ".leases").glob("*.lease")):  # killed between two shards: leave what a mid-shard kill leaves
        lease = folder / ".leases" / f"{todo:06d}.lease"
        lease.write_text(json.dumps({"host": socket.gethostname(), "pid": proc.pid, "token": "killed"}))
    out = generate(model="tiny", shards=str(source_set), column="resumed", k=K, batch_size=4, progress=False)
    assert set(out["shards"]) == set(range(NUM_SHARDS)) - set(done)
    assert tar_bytes(source_set, "resumed") == tar_bytes(source_set, "clean")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".leases", "complete.json", "manifest.json", "progress.json", "progress.json.lock"]
        + [f"{i:06d}.{e}" for i in range(NUM_SHARDS) for e in ("tar", "json", "idx.json")]
    )
    left = [(p.name, p.read_text()) for p in (folder / ".leases").iterdir()]
    assert not left
    # the progress record (train --gen-partial) lists every shard, those of the killed run and of the resumed one
    assert sorted(json.loads((folder / "progress.json").read_text())["shards"]) == [
        f"{i:06d}.tar" for i in range(NUM_SHARDS)
    ]


def test_two_processes_share_shards_without_duplicates(source_set, clean_column):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "genaug",
           "generate", "--shards", str(source_set), "--column", "duo", "--k", str(K), "--batch-size", "4",
           "--no-progress"]  # fmt: skip
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    made = [int(n) for n in re.findall(r"this process made (\d+) shards", res.stdout)]
    assert len(made) == 2 and sum(made) == NUM_SHARDS, res.stdout
    # 1 process vs 2 processes: the same bytes (same batch size and thread count)
    assert tar_bytes(source_set, "duo") == tar_bytes(source_set, "clean")
    pids = {read_stats(col_dir(source_set, "duo"), i)["pid"] for i in range(NUM_SHARDS)}
    assert len(pids) == len([m for m in made if m])
    record = json.loads((col_dir(source_set, "duo") / "progress.json").read_text())["shards"]
    assert sorted(record) == [f"{i:06d}.tar" for i in range(NUM_SHARDS)]  # both processes' commits, none lost
    assert all(record[f"{i:06d}.tar"]["sha256"] == read_stats(col_dir(source_set, "duo"), i)["sha256"] for i in (0, 1))


def test_failing_image_is_recorded_and_skipped(tmp_path):
    root = tmp_path / "bad"
    src = root / "train"
    write_synthetic_split(root, "train", num_shards=1, per_shard=3, size=32, seed=1)
    samples = list(iter_shard_raw(src / "000000.tar"))
    for s in samples:
        s.pop("__shard__")
    samples[1]["jpg"] = b"\xff\xd8 this is not a jpeg"
    commit_shard(src, 0, samples, ("jpg", "json"), {"failures": []})
    out = generate(model="tiny", shards=str(root), k=K, batch_size=4, progress=False)
    assert out["failures"] == 1 and out["images"] == 2 * K
    got = list(iter_shard_raw(col_dir(root, "tiny") / "000000.tar"))
    assert [s["__key__"] for s in got] == [s["__key__"] for s in samples]
    bad = got[1]
    assert sorted(f for f in bad if not f.startswith("__")) == ["json"]
    meta = json.loads(bad["json"])
    assert meta["failed"] and "UnidentifiedImageError" in meta["failed"] and len(meta["seeds"]) == K
    assert all(f"gen_{k}.jpg" in got[j] for j in (0, 2) for k in range(K))
    stats = read_stats(col_dir(root, "tiny"), 0)
    assert [f["key"] for f in stats["failures"]] == [bad["__key__"]] and stats["failures"][0]["source"]


def test_recipe_mismatch_is_refused(source_set, clean_column, capsys):
    with pytest.raises(GenaugError, match="--column NEWNAME"):
        generate(model="tiny", shards=str(source_set), column="clean", k=K, steps=3, progress=False)
    with pytest.raises(GenaugError, match="recipe hash"):
        generate(model="tiny", shards=str(source_set), column="clean", k=K + 1, progress=False)
    rc = cli_main(["generate", "--shards", str(source_set), "--column", "clean", "--k", "3", "--no-progress"])
    assert rc == 2 and "genaug: error:" in capsys.readouterr().err
    # batch size, compile and device are not part of the identity of a column
    generate(model="tiny", shards=str(source_set), column="clean", k=K, batch_size=2, progress=False)


def test_status_reports_progress(source_set, clean_column, capsys):
    rc = cli_main(["generate", "--shards", str(source_set), "--column", "clean", "--status", "--json"])
    assert rc == 0
    st = json.loads(capsys.readouterr().out)
    assert st["done"] == list(range(NUM_SHARDS)) and st["pending"] == [] and st["in_progress"] == []
    assert st["images"] == NUM_SHARDS * PER_SHARD * K and st["remaining_images"] == 0 and st["failures"] == 0
    assert st["images_per_second"] > 0
    rc = cli_main(["generate", "--shards", str(source_set), "--column", "nope", "--status"])
    assert rc == 2 and "no generated column 'nope'" in capsys.readouterr().err


def test_dtype_and_split_errors(source_set):
    with pytest.raises(GenaugError, match=r"--dtype \(recipe key dtype\) must be one of 'fp32', 'fp16', 'bf16', got 'fp8'"):  # noqa: E501
        generate(model="tiny", shards=str(source_set), column="x8", dtype="fp8", progress=False)
    with pytest.raises(GenaugError, match="no model_index.json"):
        generate(model="tiny", shards=str(source_set), column="w", weights=str(source_set), progress=False)
    with pytest.raises(GenaugError, match="no split 'val'"):
        generate(model="tiny", shards=str(source_set), split="val", progress=False)


def test_sd_recipe_with_local_weights(tmp_path):
    """The `sd` recipe (model-card preprocessing, guidance 3) on weights saved locally in the diffusers layout."""
    from genaug.generate.recipe import resolve_recipe
    from genaug.testing.tiny import tiny_variation_dir

    weights = tiny_variation_dir(resolve_recipe("tiny"))
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=2, size=48, seed=5)
    small = {"preprocess.size": 32, "sampling.resolution": 32, "sampling.steps": 2, "dtype": "fp32", "output.size": 40}
    out = generate(model="sd", shards=str(root), weights=str(weights), k=2, overrides=small, progress=False)
    assert out["images"] == 4 and out["column"] == "sd"
    man = read_manifest(col_dir(root, "sd"))
    assert man["recipe"]["model"] == {"id": "lambdalabs/sd-image-variations-diffusers", "revision": "v2.0",
                                      "variant": None}  # fmt: skip
    assert man["recipe"]["sampling"]["guidance"] == 3.0
    s = next(iter(iter_shard_raw(col_dir(root, "sd") / "000000.tar")))
    assert Image.open(io.BytesIO(s["gen_0.jpg"])).size == (40, 40)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model_index.json").unlink(), "no model_index.json"),
        (lambda d: shutil.rmtree(d / "unet"), "component unet/ is missing"),
        (lambda d: (d / "vae" / "diffusion_pytorch_model.safetensors").unlink(), "vae/ holds no weights file"),
        (lambda d: (d / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\\0" * 10), "cannot be loaded"),
    ],
)
def test_partly_downloaded_weights_are_one_line(damage, message, tmp_path, capsys):
    """A --weights folder missing a component or a file (a partial download) is one line naming it, exit 2."""
    from genaug.cli import main
    from genaug.generate.recipe import resolve_recipe
    from genaug.testing.tiny import tiny_variation_dir

    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=2, size=32, num_classes=2)
    weights = tmp_path / "weights"
    shutil.copytree(tiny_variation_dir(resolve_recipe("tiny")), weights)
    damage(weights)
    assert main(["generate", "--model", "sd", "--shards", str(root), "--weights", str(weights), "--k", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
