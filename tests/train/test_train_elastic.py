"""`genaug train` resumed on another number of processes and workers (torchrun, gloo on CPU): the run's global
batch, lr and schedule are kept, the interrupted epoch is finished with each of its samples once, the next epoch is
the one a fresh run on the new size draws. The keys come from the trainer's own keys log (loop.log_keys)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genaug.core.errors import GenaugError
from genaug.testing.shards import write_synthetic_split
from genaug.train.checkpoint import list_checkpoints

SHARDS, PER_SHARD, BATCH, STEPS = 8, 6, 6, 5  # 48 samples; 2 processes x 6 = a global batch of 12: 4 steps an epoch
TINY_SETS = {
    "views.preset": "small",
    "backbone.width": 4,
    "method_args.proj_hidden": 16,
    "method_args.proj_out": 8,
    "loop.log_keys": True,
}


def _torchrun(root: Path, out: Path, nproc: int, workers: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", "genaug", "train", "--method", "simclr", "--shards", str(root), "--out", str(out),
        "--steps", str(STEPS), "--batch-size", str(BATCH), "--workers", str(workers), "--log-every", "1",
        "--backbone", "tiny", "--image-size", "16", "--quiet", "--no-probe", *extra,
    ] + [a for k, v in TINY_SETS.items() for a in ("--set", f"{k}={v}")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"torchrun on {nproc} x {workers} did not finish in 300 s: the ranks hung")


def _all_keys(root: Path) -> set[str]:
    from genaug.shards.reader import iter_shard_raw

    return {s["__key__"] for p in sorted((root / "train").glob("*.tar")) for s in iter_shard_raw(p)}


def _rows(run: Path) -> list[dict]:
    """Every rank's keys-log rows, each with its rank."""
    out = []
    for path in sorted((run / "keys").glob("rank*.jsonl")):
        rank = int(path.stem[4:])
        out += [{**json.loads(line), "rank": rank} for line in path.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, Path]:
    """A 2 processes x 2 workers run stopped (checkpointed) after its first step: (shard set, run folder)."""
    base = tmp_path_factory.mktemp("train-elastic")
    root = base / "set"
    write_synthetic_split(root, "train", num_shards=SHARDS, per_shard=PER_SHARD, size=16, seed=3, record=True)
    run = base / "run"
    proc = _torchrun(root, run, 2, 2, "--stop-after", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [s for s, _ in list_checkpoints(run)] == [1]
    return root, run


def _resume_and_check(interrupted, tmp_path, nproc: int, workers: int, batch: int, accum: int, *extra: str) -> None:
    root, saved = interrupted
    run = tmp_path / "run"
    shutil.copytree(saved, run)
    proc = _torchrun(root, run, nproc, workers, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())["resolved"]
    # the run's plan kept: global batch, lr, steps; this session's share of the global batch recorded
    assert resolved["global_batch"] == 2 * BATCH and resolved["total_steps"] == STEPS
    assert resolved["steps_per_epoch"] == SHARDS * PER_SHARD // (2 * BATCH)
    assert (resolved["world_size"], resolved["batch_size"], resolved["grad_accum"]) == (nproc, batch, accum)
    assert resolved["history"] == [
        {"from_step": 0, "world_size": 2, "workers": 2, "batch_size": BATCH, "grad_accum": 1},
        {"from_step": 1, "world_size": nproc, "workers": workers, "batch_size": batch, "grad_accum": accum},
    ]
    rows = _rows(run)
    # every optimizer step took the global batch, on every process
    for step in range(1, STEPS + 1):
        assert sum(len(r["keys"]) for r in rows if r["step"] == step) == 2 * BATCH, step
    # the interrupted epoch (steps 1-4): each of its 48 samples once, none missing, across the change
    seen = [k for r in rows if r["epoch"] == 0 for k in r["keys"]]
    assert {r["step"] for r in rows if r["epoch"] == 0} == {1, 2, 3, 4}
    assert len(seen) == len(set(seen)) == SHARDS * PER_SHARD and set(seen) == _all_keys(root)
    # the next epoch is the one a fresh run on nproc x workers (batch, accum) draws
    from genaug.data.stream import build_train_loader

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    for rank in range(nproc):
        fresh = build_train_loader(
            root, "train", views_recipe=recipe["views"], batch_size=batch, num_workers=workers, seed=0, rank=rank,
            world_size=nproc, shuffle_buffer=recipe["data"]["shuffle_buffer"], epoch=1,
        )  # fmt: skip
        it = iter(fresh)
        want = [k for _ in range(accum) for k in next(it)["key"]]
        del it
        assert [k for r in rows if r["epoch"] == 1 and r["rank"] == rank for k in r["keys"]] == want, rank
    # the lr schedule goes on where it stopped: step s logs the run's lr x its cosine factor at s - 1
    from genaug.train.optim import cosine_factor

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    for m in metrics:
        want = resolved["lr"] * cosine_factor(m["step"] - 1, STEPS, resolved["warmup_steps"], 0.0)
        assert m["lr"] == pytest.approx(want, rel=1e-6)
    assert (run / "backbone.safetensors").exists()


def test_two_by_two_resumes_on_three_by_one(interrupted, tmp_path):
    """2 x 2 -> 3 processes x 1 worker: each process takes 12 / 3 = 4 samples a step, grad_accum 1."""
    _resume_and_check(interrupted, tmp_path, 3, 1, batch=4, accum=1)


@pytest.mark.slow  # a third torchrun launch; the fast suite checks 2 x 2 -> 3 x 1 above
def test_two_by_two_resumes_on_one_by_three_accumulating(interrupted, tmp_path):
    """2 x 2 -> 1 process x 3 workers with --grad-accum 2 (memory): 2 micro-batches of 6 make the step's 12."""
    _resume_and_check(interrupted, tmp_path, 1, 3, 6, 2, "--grad-accum", "2")


def test_a_process_count_that_cannot_share_the_global_batch_is_one_line(tmp_path):
    from genaug.train.resume_plan import continue_plan, share

    first = {"batch_size": 6, "world_size": 2, "grad_accum": 1}
    saved = {
        "resolved": {"global_batch": 12, "lr": 0.1, "total_steps": 5, "world_size": 2},  # recorded before histories
        "data": {"batch_size": 6, "num_workers": 2},
        "loop": {},
    }
    line = r"--batch-size 6 x 2 processes x grad_accum 1\), which 5 processes cannot share evenly: resume on 1, 2, 3"
    with pytest.raises(GenaugError, match=line):
        continue_plan(saved, {"loop": {"grad_accum": 1}}, 5, tmp_path)
    assert share(12, 3, 1, tmp_path, first) == (4, 1)
    assert share(12, 1, 1, tmp_path, first) == (12, 1)  # the same micro-batch over the world: losses see 12
    assert share(12, 1, 2, tmp_path, first) == (6, 2)  # --grad-accum 2 on resume: half the memory
    with pytest.warns(UserWarning, match="grad_accum 5 does not divide the 12"):
        assert share(12, 1, 5, tmp_path, first) == (2, 6)  # the next divisor of 12 / 1 above 5
    plan = continue_plan(saved, {"loop": {"grad_accum": 1}, "data": {"num_workers": 3}}, 4, tmp_path)
    assert plan["lr"] == 0.1 and plan["total_steps"] == 5 and (plan["batch_size"], plan["workers"]) == (3, 3)


@pytest.mark.slow  # a torchrun launch that fails at once; the plan's rule is checked in the fast test above
def test_resuming_on_a_count_that_cannot_share_the_global_batch_exits_2(tmp_path):
    """A 1-process run of --batch-size 3 (global batch 3) relaunched on 2 processes: each rank says why, exit 2."""
    from genaug.train.runner import train

    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=4, per_shard=3, size=16, seed=3)
    run = tmp_path / "run"
    over = {k: v for k, v in TINY_SETS.items() if k != "loop.log_keys"}
    kw = dict(steps=2, backbone="tiny", image_size=16, workers=0, progress_bar=False, probe=False, overrides=over)
    train("simclr", shards=root, out=run, batch_size=3, stop_after=1, **kw)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "genaug",
        "train", "--method", "simclr", "--shards", str(root), "--out", str(run), "--steps", "2", "--batch-size", "3",
        "--workers", "0", "--backbone", "tiny", "--image-size", "16", "--quiet", "--no-probe",
    ] + [a for k, v in over.items() for a in ("--set", f"{k}={v}")]  # fmt: skip
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("genaug: error:")]
    assert len(lines) == 2 and "which 2 processes cannot share evenly: resume on 1, 3 processes" in lines[0], lines
    assert "exitcode  : 2" in proc.stderr  # torchrun's report of each rank's exit status
