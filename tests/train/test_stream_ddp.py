"""2 ranks x 2 workers under torchrun (gloo on CPU): every sample exactly once per epoch; uneven shards never hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream_fixtures import write_gen_column  # noqa: E402

from genaug.shards.layout import parse_key  # noqa: E402
from genaug.shards.progress import note_committed  # noqa: E402
from genaug.shards.writer import read_stats  # noqa: E402
from genaug.testing.shards import write_synthetic_split  # noqa: E402

WORKER = Path(__file__).with_name("stream_ddp_worker.py")
ELASTIC = Path(__file__).with_name("stream_elastic_worker.py")


def _torchrun(root: Path, out: Path, *extra: str) -> list[dict]:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(WORKER), str(root), str(out), *extra]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun did not finish in 240 s: the ranks hung")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _keys(root: Path) -> set[str]:
    from genaug.shards.reader import iter_shard_raw

    return {s["__key__"] for p in sorted((root / "train").glob("*.tar")) for s in iter_shard_raw(p)}


def test_two_ranks_two_workers_see_every_sample_once(tmp_path):
    write_synthetic_split(tmp_path, "train", num_shards=8, per_shard=8, size=16)
    col = write_gen_column(tmp_path, "train", "sd", k=2)
    for i in (0, 2, 5):  # --gen-partial: the column's progress record lists 3 of its 8 shards
        note_committed(col, f"{i:06d}.tar", read_stats(col, i), "sd")
    ranks = _torchrun(tmp_path, tmp_path, "partial")
    seen = ranks[0]["keys"] + ranks[1]["keys"]
    assert ranks[0]["steps"] == ranks[1]["steps"] == ranks[0]["steps_per_epoch"] == 8
    assert len(seen) == len(set(seen)) == 64
    assert set(seen) == _keys(tmp_path)
    # rank 0 looked and broadcast: both ranks' epoch uses the same 3 shards; only their samples had variants
    assert ranks[0]["sets"] == ranks[1]["sets"] == ["000000.tar", "000002.tar", "000005.tar"]
    assert ranks[0]["coverage"] == ranks[1]["coverage"] == 3 / 8
    replaced = {parse_key(k)[0] for r in ranks for k in r["replaced"]}
    assert replaced and replaced <= {0, 2, 5}


def test_uneven_shards_do_not_hang(tmp_path):
    write_synthetic_split(tmp_path, "train", num_shards=5, per_shard=3, size=16)
    write_synthetic_split(tmp_path / "big", "train", num_shards=1, per_shard=17, size=16, seed=9)
    os.replace(tmp_path / "big" / "train" / "000000.tar", tmp_path / "train" / "000004.tar")
    os.replace(tmp_path / "big" / "train" / "000000.json", tmp_path / "train" / "000004.json")
    write_gen_column(tmp_path, "train", "sd", k=1)
    ranks = _torchrun(tmp_path, tmp_path)
    # 4 x 3 + 17 = 29 samples -> 29 // (2 x 4) = 3 steps on each rank, whichever worker got the big shard
    assert ranks[0]["steps"] == ranks[1]["steps"] == ranks[0]["steps_per_epoch"] == 3


def _elastic_run(root: Path, nproc: int, phase: str, workers: int, steps: int = 0) -> list[dict]:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(nproc), str(ELASTIC), str(root), str(root)]
    try:
        proc = subprocess.run(cmd + [phase, str(workers), str(steps)], env=env, capture_output=True, text=True,
                              timeout=240)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"torchrun {phase} on {nproc} x {workers} did not finish in 240 s: the ranks hung")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((root / f"{phase}-rank{r}.json").read_text()) for r in range(nproc)]


@pytest.mark.slow  # 3 torchrun launches; tests/train/test_stream_elastic.py checks the same in one process
def test_elastic_resume_under_torchrun(tmp_path):
    """2 ranks x 2 workers checkpoint 3 steps into the epoch; 1 x 3 and 3 x 1 each finish it: every key once."""
    write_synthetic_split(tmp_path, "train", num_shards=12, per_shard=4, size=16, record=True)
    write_gen_column(tmp_path, "train", "sd", k=1)
    saved = _elastic_run(tmp_path, 2, "save", workers=2, steps=3)
    before = saved[0]["keys"] + saved[1]["keys"]
    assert len(before) == 2 * 3 * 2
    for nproc, workers in ((1, 3), (3, 1)):
        ranks = _elastic_run(tmp_path, nproc, "resume", workers=workers)
        assert len({r["steps"] for r in ranks}) == 1  # (the all-reduce per step would have hung otherwise)
        seen = before + [k for r in ranks for k in r["keys"]]
        assert len(seen) == len(set(seen)) == 48, (nproc, workers)  # each key of the epoch once, none missing
        assert set(seen) == _keys(tmp_path)
