"""Shard leases kept in an S3 store by conditional PUT, against a real moto server: claims, heartbeats, takeovers,
and two processes generating one column in the bucket with no shared filesystem."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from genaug.generate.leases import Heartbeat, clear_stale_leases, lease_home, try_acquire
from genaug.generate.leases.objects import ObjectLease, object_lease_path, supports_conditional_put
from genaug.shards.storage import as_location
from genaug.testing.shards import write_synthetic_split

NUM_SHARDS, PER_SHARD, K = 4, 3, 2


def _objects(bucket: str, prefix: str = "") -> list[str]:
    return sorted(p.split("/", 1)[1] for p in as_location(f"s3://{bucket}").fs.find(f"{bucket}/{prefix}"))


def test_store_honours_conditions_so_leases_live_next_to_the_column(s3):
    col = as_location(f"s3://{s3}/set/gen/tiny/train")
    assert supports_conditional_put(col)
    assert lease_home(col, None, in_store=True) == col  # in the store: every machine sees them
    assert lease_home(col, None) != col and not isinstance(lease_home(col, None), type(col))  # the Ray engine's
    assert _objects(s3) == []  # the probe object is gone


def test_one_claim_wins_heartbeat_keeps_it_release_frees_it(s3):
    col = as_location(f"s3://{s3}/set/gen/tiny/train")
    a = try_acquire(col, 3, timeout=30)
    assert isinstance(a, ObjectLease) and a.owned()
    assert try_acquire(col, 3, timeout=30) is None  # a live lease: refused
    before = a.etag
    a.touch()
    assert not a.lost and a.etag != before and a.owned()  # the heartbeat re-PUT moved its ETag and Last-Modified
    a.release()
    assert _objects(s3) == []
    b = try_acquire(col, 3, timeout=30)
    assert b is not None
    b.release()


def test_stale_lease_is_taken_over_once_and_the_old_owner_notices(s3):
    col = as_location(f"s3://{s3}/set/gen/tiny/train")
    old = try_acquire(col, 0, timeout=1.0, owner={"rank": 0})
    time.sleep(2.2)  # Last-Modified has one-second resolution: older than the 1 s timeout by the store's clock
    new = try_acquire(col, 0, timeout=1.0, owner={"rank": 1})
    assert new is not None and new.owned() and not old.owned()
    assert try_acquire(col, 0, timeout=1.0) is None  # just taken over: live again
    old.touch()
    assert old.lost  # its conditional heartbeat failed: it will not commit over the new owner
    old.release()
    assert object_lease_path(col, 0).exists()  # releasing a lost lease leaves the new owner's alone
    new.release()


def test_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(s3):
    col = as_location(f"s3://{s3}/set/gen/tiny/train")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    lease = try_acquire(col, 1, timeout=300)
    lease.doc["pid"] = pid  # the record a process that has since exited would have left
    lease.touch()
    assert try_acquire(col, 1, timeout=300) is not None


def test_stale_leases_of_done_shards_are_cleared(s3):
    col = as_location(f"s3://{s3}/set/gen/tiny/train")
    try_acquire(col, 2, timeout=1.0)
    try_acquire(col, 3, timeout=1.0)
    time.sleep(2.2)
    assert clear_stale_leases(col, {2}, timeout=1.0) == [2]
    assert [n.rsplit("/", 1)[1] for n in _objects(s3)] == ["000003.lease"]


def test_heartbeat_thread_beats_object_leases(s3):
    col = as_location(f"s3://{s3}/set/gen/tiny/train")
    hb = Heartbeat(0.3)
    lease = try_acquire(col, 5, timeout=2.0)
    hb.add(lease)
    first = lease.etag
    time.sleep(1.0)
    assert lease.etag != first and not lease.lost
    hb.stop()  # releases what it still holds
    assert _objects(s3) == []


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_two_processes_generate_into_s3_with_leases_in_the_bucket(s3, tmp_path):
    """torchrun 2 processes, no --lease-dir, no shared filesystem: shards split between them, bytes equal one run."""
    from genaug.generate.dispatch import generate

    local = tmp_path / "local"
    write_synthetic_split(local, "train", num_shards=NUM_SHARDS, per_shard=PER_SHARD, size=32, seed=3)
    fs = as_location(f"s3://{s3}").fs
    fs.put(str(local / "train"), f"{s3}/set/train", recursive=True)
    ref = generate(model="tiny", shards=str(local), column="tiny", k=K, batch_size=4, progress=False)
    assert len(ref["shards"]) == NUM_SHARDS
    url = f"s3://{s3}/set"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "genaug",
           "generate", "--shards", url, "--column", "tiny", "--k", str(K), "--batch-size", "4",
           "--no-progress"]  # fmt: skip
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    made = [int(n) for n in re.findall(r"this process made (\d+) shards", res.stdout)]
    assert len(made) == 2 and sum(made) == NUM_SHARDS, res.stdout
    for i in range(NUM_SHARDS):
        name = f"{i:06d}.tar"
        assert fs.cat(f"{s3}/set/gen/tiny/train/{name}") == (local / "gen" / "tiny" / "train" / name).read_bytes()
    assert not [k for k in _objects(s3, "set/") if ".leases" in k]  # every lease released, the probe deleted
    assert not lease_home(as_location(f"{url}/gen/tiny/train"), None).exists()  # none went to the local cache
    assert "does not honour conditional PUT" not in res.stderr


def test_status_reads_leases_in_the_bucket(s3, tmp_path):
    """`generate --status` on an s3:// column sees the conditional-PUT leases, and writes nothing."""
    from genaug.generate.dispatch import generate
    from genaug.generate.status import column_status

    local = tmp_path / "local"
    write_synthetic_split(local, "train", num_shards=NUM_SHARDS, per_shard=PER_SHARD, size=32, seed=3)
    fs = as_location(f"s3://{s3}").fs
    fs.put(str(local / "train"), f"{s3}/set/train", recursive=True)
    url = f"s3://{s3}/set"
    generate(model="tiny", shards=url, column="tiny", k=K, batch_size=4, progress=False)
    col = as_location(f"{url}/gen/tiny/train")
    for i in (2, 3):
        fs.rm(f"{s3}/set/gen/tiny/train/{i:06d}.json")  # not done any more
    lease = try_acquire(col, 2, timeout=300)
    before = _objects(s3)
    st = column_status(url, "tiny", lease_timeout=300)
    assert (st["done"], st["in_progress"], st["pending"], st["processes"]) == ([0, 1], [2], [3], 1)
    assert _objects(s3) == before
    lease.release()
