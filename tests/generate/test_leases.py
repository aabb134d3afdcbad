"""Lease files: exclusive creation, heartbeat, takeover of stale leases, and the runner taking a stale shard over."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.generate.base import Generator, Variant, register_generator
from genaug.generate.leases import Heartbeat, is_stale, lease_path, read_lease, try_acquire
from genaug.generate.runner import generate
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
