"""Lease files: exclusive creation, heartbeat, takeover of stale leases, and the runner taking a stale shard over."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.generate.base import Generator, Variant, register_generator
from genaug.generate.dispatch import generate
from genaug.generate.leases import Heartbeat, is_stale, lease_path, read_lease, try_acquire
from genaug.shards.reader import iter_shard_raw
from genaug.shards.writer import read_stats
from genaug.testing.shards import write_synthetic_split


def plant(folder: Path, index: int, host: str, pid: int, age: float) -> Path:
    """A lease of another owner whose last heartbeat was `age` seconds ago."""
    path = lease_path(folder, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "token": f"{host}-{pid}-x"}))
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def test_only_one_of_many_claimants_wins(tmp_path):
    got = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        got.append(try_acquire(tmp_path, 3, timeout=60))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].owned()
    assert read_lease(lease_path(tmp_path, 3))["token"] == winners[0].token
    winners[0].release()
    assert not lease_path(tmp_path, 3).exists()
    assert try_acquire(tmp_path, 3, timeout=60) is not None  # free again


def test_fresh_lease_is_respected_and_stale_one_taken_over(tmp_path):
    plant(tmp_path, 0, "other-host", 123, age=5)
    assert not is_stale(lease_path(tmp_path, 0), timeout=60)
    assert try_acquire(tmp_path, 0, timeout=60) is None
    plant(tmp_path, 1, "other-host", 123, age=120)
    assert is_stale(lease_path(tmp_path, 1), timeout=60)
    lease = try_acquire(tmp_path, 1, timeout=60)
    assert lease is not None and read_lease(lease.path)["pid"] == os.getpid()
    assert sorted(p.name for p in lease.path.parent.iterdir()) == ["000000.lease", "000001.lease"]  # no graves left


def test_dead_process_on_this_host_is_stale_at_once(tmp_path):
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    plant(tmp_path, 0, socket.gethostname(), dead.pid, age=0)
    assert is_stale(lease_path(tmp_path, 0), timeout=3600)
    assert try_acquire(tmp_path, 0, timeout=3600) is not None


def test_heartbeat_keeps_a_lease_fresh_and_notices_theft(tmp_path):
    hb = Heartbeat(0.05)
    lease = try_acquire(tmp_path, 0, timeout=0.3)
    hb.add(lease)
    t = time.time() - 100
    os.utime(lease.path, (t, t))
    time.sleep(0.3)
    assert not is_stale(lease.path, timeout=0.3) and not lease.lost
    lease.path.write_text(json.dumps({"host": "thief", "pid": 1, "token": "thief-1-x"}))  # taken over
    time.sleep(0.3)
    assert lease.lost
    hb.stop()
    assert read_lease(lease.path)["token"] == "thief-1-x"  # a lost lease is never deleted by its old owner


# -- the runner with a cheap deterministic generator -----------------------------------------------------------------


@register_generator("test-noise")
class NoiseGenerator(Generator):
    """Row-batching test generator: image = noise from the seed + the source mean; OOM above `max_rows` rows."""

    calls: list[int] = []

    def encode(self, images):
        return [np.asarray(im, np.float32).mean() for im in images]

    def sample(self, conds, seeds):
        if len(seeds) > int(self.recipe.get("max_rows", 99)):
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        NoiseGenerator.calls.append(len(seeds))
        out = []
        for c, s in zip(conds, seeds, strict=True):
            arr = np.random.default_rng(s).integers(0, 200, (16, 16, 3)) + int(c) % 50
            out.append(Variant(Image.fromarray(arr.astype(np.uint8)), {"seed": s, "black": False}))
        return out


def noise_recipe(tmp_path: Path, **extra) -> str:
    doc = {"name": "noise", "generator": "test-noise", "k": 3, "seed": 7, "output": {"size": 16, "quality": 90},
           "runtime": {"batch_size": 8}, **extra}  # fmt: skip
    path = tmp_path / "noise.yaml"
    path.write_text(json.dumps(doc))
    return str(path)


def test_runner_takes_over_stale_and_expired_leases(tmp_path):
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=3, per_shard=2, size=16, seed=0)
    folder = root / "gen" / "noise" / "train"
    plant(folder, 0, "crashed-host", 99, age=3600)  # stale: taken over at once
    plant(folder, 2, "slow-host", 99, age=0)  # fresh: waited on, taken over once its heartbeat is 1 s old
    t = time.perf_counter()
    out = generate(model=noise_recipe(tmp_path), shards=str(root), lease_timeout=1.0, progress=False)
    assert sorted(out["shards"]) == [0, 1, 2] and time.perf_counter() - t >= 0.5
    assert not list((folder / ".leases").iterdir())


def test_oom_halves_the_batch_and_rows_fill_batches_across_images(tmp_path):
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=5, size=16, seed=0)
    NoiseGenerator.calls.clear()
    with pytest.warns(UserWarning, match="batch size now 4"):
        out = generate(model=noise_recipe(tmp_path, max_rows=5), shards=str(root), progress=False)
    # 5 images x 3 variants = 15 rows: batch 8 fails, then batches of 4 across image boundaries: 4+4+4+3
    assert NoiseGenerator.calls == [4, 4, 4, 3] and out["images"] == 15 and out["failures"] == 0
    folder = root / "gen" / "noise" / "train"
    got = list(iter_shard_raw(folder / "000000.tar"))
    assert len(got) == 5 and all(len(s) == 3 + 1 + 2 for s in got)  # 3 images, json, __key__, __shard__
    assert read_stats(folder, 0)["images"] == 15


def test_stale_leases_of_done_shards_are_cleared(tmp_path):
    from genaug.generate.leases import clear_stale_leases

    plant(tmp_path, 0, "gone-host", 5, age=999)  # done shard, stale lease: cleared
    plant(tmp_path, 1, "busy-host", 5, age=0)  # done shard, live lease: kept (its owner releases it)
    plant(tmp_path, 2, "gone-host", 5, age=999)  # shard not done: kept for the takeover path
    assert clear_stale_leases(tmp_path, {0, 1}, timeout=60) == [0]
    assert sorted(p.name for p in (tmp_path / ".leases").iterdir()) == ["000001.lease", "000002.lease"]


# -- malformed leases never crash generate; bad --lease-timeout and numeric flags are one-line errors ----------------

MALFORMED = {
    "non-utf8": lambda p: p.write_bytes(b"\xff\xfe\x00garbage\x80"),
    "bad-json": lambda p: p.write_text('{"host": "x", "pid": '),
    "not-a-dict": lambda p: p.write_text("[1, 2, 3]"),
    "huge-pid": lambda p: p.write_text(json.dumps({"host": socket.gethostname(), "pid": 10**30, "token": "t"})),
    "negative-pid": lambda p: p.write_text(json.dumps({"host": socket.gethostname(), "pid": -1, "token": "t"})),
    "zero-pid": lambda p: p.write_text(json.dumps({"host": socket.gethostname(), "pid": 0, "token": "t"})),
    "bool-pid": lambda p: p.write_text(json.dumps({"host": socket.gethostname(), "pid": True, "token": "t"})),
    "5000-digit-pid": lambda p: p.write_text('{"pid": ' + "9" * 5000 + "}"),
    "deep-nesting": lambda p: p.write_text("[" * 60000),
    "directory": lambda p: (p.mkdir(), (p / "inner").write_text("x")),
    "empty-directory": lambda p: p.mkdir(),
    "dev-zero-symlink": lambda p: p.symlink_to("/dev/zero"),
    "fifo": lambda p: os.mkfifo(p),
    "huge-file": lambda p: p.write_bytes(b" " * (1 << 20)),
}


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_lease_is_respected_while_fresh_and_taken_over_once_stale(tmp_path, kind):
    path = lease_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    MALFORMED[kind](path)
    assert isinstance(read_lease(path), dict)  # never raises, never blocks
    assert not is_stale(path, timeout=60)
    assert try_acquire(tmp_path, 0, timeout=60) is None  # fresh: someone may be writing it
    _age(path, 120)
    assert is_stale(path, timeout=60)
    lease = try_acquire(tmp_path, 0, timeout=60)
    assert lease is not None and lease.owned() and read_lease(path)["pid"] == os.getpid()
    assert sorted(p.name for p in path.parent.iterdir()) == ["000000.lease"]  # no graves left


def test_clear_stale_leases_handles_malformed_ones(tmp_path):
    from genaug.generate.leases import clear_stale_leases

    d = tmp_path / ".leases"
    d.mkdir()
    (d / "000000.lease").mkdir()
    (d / "000001.lease").write_bytes(b"\xff")
    (d / "999999999999999999999.lease").write_text("{}")
    for p in d.iterdir():
        _age(p, 999)
    assert clear_stale_leases(tmp_path, {0, 1}, timeout=60) == [0, 1]
    assert [p.name for p in d.iterdir()] == ["999999999999999999999.lease"]


def test_runner_finishes_despite_malformed_leases(tmp_path):
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=3, per_shard=2, size=16, seed=0)
    folder = root / "gen" / "noise" / "train"
    d = folder / ".leases"
    d.mkdir(parents=True)
    for i, kind in enumerate(["non-utf8", "directory", "huge-pid"]):
        MALFORMED[kind](d / f"{i:06d}.lease")
        _age(d / f"{i:06d}.lease", 3600)
    out = generate(model=noise_recipe(tmp_path), shards=str(root), lease_timeout=60.0, progress=False)
    assert sorted(out["shards"]) == [0, 1, 2] and out["failures"] == 0
    assert not list(d.iterdir())


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "x", None])
def test_check_lease_timeout(value):
    from genaug.core.errors import GenaugError
    from genaug.generate.leases import check_lease_timeout

    with pytest.raises(GenaugError, match="--lease-timeout must be a positive number of seconds"):
        check_lease_timeout(value)
    with pytest.raises(GenaugError):
        try_acquire(Path("/nonexistent"), 0, timeout=value)


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--lease-timeout", "0"),
        ("--lease-timeout", "-3"),
        ("--lease-timeout", "nan"),
        ("--steps", "0"),
        ("--k", "0"),
        ("--k", "-2"),
        ("--guidance", "nan"),
        ("--guidance", "inf"),
        ("--batch-size", "0"),
        ("--limit-shards", "0"),
    ],
)
def test_bad_numeric_generate_flags_are_one_line_errors(tmp_path, capsys, flag, value):
    from genaug.cli import main

    code = main(["generate", "--shards", str(tmp_path / "none"), "--no-progress", flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"genaug: error: {flag} ") and err.count("\n") == 1, err
    assert not (tmp_path / "none").exists()


def test_bad_numeric_recipe_values_are_refused(tmp_path):
    from genaug.core.errors import GenaugError
    from genaug.generate.recipe import resolve_recipe

    for extra, match in [
        ({"k": True}, "--k"),
        ({"k": 2.5}, "--k"),
        ({"runtime": {"batch_size": "8"}}, "--batch-size"),
        ({"sampling": {"steps": 0}}, "--steps"),
        ({"output": {"size": 16, "quality": 0}}, "output.quality"),
        ({"name": ".."}, "`name:`"),
    ]:
        with pytest.raises(GenaugError, match=match):
            resolve_recipe(noise_recipe(tmp_path, **extra))
    assert resolve_recipe(noise_recipe(tmp_path, sampling={"steps": 1, "guidance": 0.0}))["k"] == 3
