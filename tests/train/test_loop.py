"""The training loop end to end on a synthetic shard set: resume equality, a real kill, torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genaug.core.errors import GenaugError
from genaug.ssl.artifacts import load_trained
from genaug.testing.shards import write_synthetic_split
from genaug.train.checkpoint import list_checkpoints, load_checkpoint
from genaug.train.runner import train

TINY = {
    "views.preset": "small",
    "backbone.width": 4,
    "method_args.proj_hidden": 32,
    "method_args.proj_out": 16,
}
TINY_ARGS = ["--backbone", "tiny", "--image-size", "16", "--batch-size", "8", "--quiet"] + [
    a for k, v in TINY.items() for a in ("--set", f"{k}={v}")
]


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loop") / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=16, size=24, num_classes=3, seed=0)
    return root


def _train(shard_set, out, method="mocov2", steps=6, **kw):
    extra = {"method_args.queue_size": 32} if method == "mocov2" else {}
    return train(
        method,
        shards=shard_set,
        out=out,
        steps=steps,
        batch_size=8,
        backbone="tiny",
        image_size=16,
        workers=0,
        log_every=1,
        ckpt_every=2,
        overrides={**TINY, **extra},
        progress_bar=False,
        **kw,
    )


def _losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["probe_loss"]) for r in rows]


def test_stopped_and_resumed_run_equals_uninterrupted(shard_set, tmp_path):
    # mocov2 carries the most state: EMA key encoder, queue + pointer, online probe, optimizer momentum
    full = _train(shard_set, tmp_path / "full")
    assert full["step"] == 6
    part = _train(shard_set, tmp_path / "part", stop_after=3)  # a preemption after step 3
    assert part["step"] == 3 and not (tmp_path / "part" / "backbone.safetensors").exists()
    again = _train(shard_set, tmp_path / "part")  # auto-resume from the run directory
    assert again["step"] == 6
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full")  # bitwise equal on CPU
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    st = load_checkpoint(list_checkpoints(tmp_path / "part")[-1][1])
    assert {"model", "optimizer", "scheduler", "rng", "data", "step"} <= st.keys()
    assert "queue" in "".join(st["model"]) and st["data"][0]["loader"]["step"] >= 0
    method, recipe = load_trained(tmp_path / "full")
    assert recipe["resolved"]["total_steps"] == 6
    assert method.encode(torch.randn(2, 3, 16, 16)).shape == (2, method.feat_dim)


def test_run_stopped_right_at_an_epoch_end_resumes_with_the_next_epoch(shard_set, tmp_path):
    # 32 samples, batch 8: 4 steps per epoch; stopped after epoch 0, the resumed run must go on with epoch 1 (the
    # loop once re-selected the finished epoch at the next boundary and repeated it)
    full = _train(shard_set, tmp_path / "full", method="simclr", steps=12)
    _train(shard_set, tmp_path / "part", method="simclr", steps=12, stop_after=4)
    again = _train(shard_set, tmp_path / "part", method="simclr", steps=12)
    assert full["step"] == again["step"] == 12
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full")


def test_a_run_stopped_at_an_epoch_end_resumes_exactly(shard_set, tmp_path):
    """Stopped right after an epoch's last batch (4 steps of 8 of 32 samples): the resumed run starts the next epoch
    once, as the uninterrupted run does (it once replayed that epoch twice), and keeps its plan and keys log."""
    kw = dict(steps=10, batch_size=8, backbone="tiny", image_size=16, workers=0, log_every=1, progress_bar=False)
    kw["overrides"] = {**TINY, "loop.log_keys": True, "loop.ckpt_every": 2}
    train("simclr", shards=shard_set, out=tmp_path / "full", **kw)
    train("simclr", shards=shard_set, out=tmp_path / "part", stop_after=4, **kw)
    shutil.copytree(tmp_path / "part", tmp_path / "older")
    train("simclr", shards=shard_set, out=tmp_path / "part", **kw)
    # resumed from its older checkpoint (step 2): the keys and metrics rows of steps 3-4 are dropped and redone
    train(
        "simclr", shards=shard_set, out=tmp_path / "older", resume=tmp_path / "older" / "checkpoint-00000002.pt", **kw
    )
    for run in ("part", "older"):
        assert _losses(tmp_path / run) == _losses(tmp_path / "full"), run
        rows = [(tmp_path / r / "keys" / "rank0.jsonl").read_text() for r in ("full", run)]
        assert rows[0] == rows[1] and rows[0].count("\n") == 10, run
    import yaml

    resolved = yaml.safe_load((tmp_path / "part" / "recipe.yaml").read_text())["resolved"]
    assert resolved["history"] == [{"from_step": 0, "world_size": 1, "workers": 0, "batch_size": 8, "grad_accum": 1}]


def test_killed_process_resumes_exactly(shard_set, tmp_path):
    args = [
        "--method",
        "simclr",
        "--shards",
        str(shard_set),
        "--steps",
        "40",
        "--workers",
        "0",
        "--log-every",
        "1",
        "--ckpt-every",
        "1",
        "--set",
        "loop.log_keys=true",
    ] + TINY_ARGS
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "genaug", "train", "--out", str(killed), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list_checkpoints(killed)) < 2:
        time.sleep(0.01)
    if list_checkpoints(killed) and list_checkpoints(killed)[-1][0] >= 2 and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert list_checkpoints(killed)
    kw = dict(
        method="simclr",
        shards=shard_set,
        steps=40,
        workers=0,
        log_every=1,
        ckpt_every=1,
        backbone="tiny",
        image_size=16,
        batch_size=8,
        overrides={**TINY, "loop.log_keys": True},
        progress_bar=False,
    )
    assert train(out=killed, **kw)["step"] == 40  # the rerun resumes from the newest complete checkpoint
    train(out=tmp_path / "full", **kw)
    assert _losses(killed) == _losses(tmp_path / "full")
    # the keys log: the rows the killed process wrote past its checkpoint were dropped, so it lists the same samples
    keys = [(run / "keys" / "rank0.jsonl").read_text() for run in (killed, tmp_path / "full")]
    assert keys[0] == keys[1] and keys[0].count("\n") == 40
    assert not list(killed.glob("*.tmp-*"))


def test_torchrun_two_processes_on_cpu(shard_set, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "genaug",
        "train",
        "--method",
        "barlow",
        "--shards",
        str(shard_set),
        "--steps",
        "3",
        "--workers",
        "0",
        "--log-every",
        "1",
        "--out",
        str(out),
        *TINY_ARGS,
    ]
    rc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr[-3000:]
    assert rc.stdout.count("trained 3 steps") == 1  # printed by the main process only
    st = load_checkpoint(list_checkpoints(out)[-1][1])
    assert st["world_size"] == 2 and len(st["rng"]) == 2 and len(st["data"]) == 2
    assert st["data"][0]["loader"]["rank"] == 0 and st["data"][1]["loader"]["rank"] == 1
    assert (out / "backbone.safetensors").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["images_per_s"] > 0 for r in rows)


def test_bad_input_is_a_one_line_error(shard_set, tmp_path):
    with pytest.raises(GenaugError, match="unknown --method"):
        train("nope", shards=shard_set, out=tmp_path / "x")
    with pytest.raises(GenaugError, match=r"--p must lie in \[0, 1\]"):
        train("simclr", shards=shard_set, p=1.5)
    with pytest.raises(GenaugError, match="does not exist"):
        train("simclr", shards=tmp_path / "missing")
    with pytest.raises(GenaugError, match="generated column 'sd'"):
        train("simclr", shards=shard_set, gen="sd", p=0.5, workers=0)
    with pytest.raises(GenaugError, match="lower --batch-size"):
        train("simclr", shards=shard_set, batch_size=64, workers=0)
    with pytest.raises(GenaugError, match="method_args"):
        train("simclr", shards=shard_set, workers=0, batch_size=8, backbone="tiny", overrides={"method_args.nope": 1})


def test_grad_accumulation_bf16_autocast_lr_scaling_and_generated_views(shard_set, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from stream_fixtures import write_gen_column  # the data-stream tests' generated-column writer

    write_gen_column(shard_set, "train", "fake", k=2)
    over = {**TINY, "data.range_reads": "on"}
    kw = dict(backbone="tiny", image_size=16, workers=0, log_every=1, overrides=over, progress_bar=False)
    res = train(
        "byol",
        shards=shard_set,
        out=tmp_path / "acc",
        steps=2,
        batch_size=4,
        grad_accum=2,
        precision="bf16",
        gen="fake",
        p=1.0,
        **kw,
    )
    assert res["step"] == 2 and res["metrics"]["loss"] == res["metrics"]["loss"]  # finite, not NaN
    assert res["metrics"]["replaced"] == 1.0  # p = 1: every view came from the generated column
    io = res["metrics"]  # this epoch's I/O so far (the variants read by ranges: data.range_reads on)
    assert io["io_epoch"] == 0 and io["bytes_fetched"] >= io["bytes_used"] > 0 and io["bytes_from_cache"] == 0
    import yaml

    resolved = yaml.safe_load((tmp_path / "acc" / "recipe.yaml").read_text())["resolved"]
    assert resolved["global_batch"] == 8 and resolved["precision"] == "bf16"
    assert resolved["lr"] == pytest.approx(0.2 * 8 / 256)  # BYOL: 0.2 x B / 256
    assert resolved["steps_per_epoch"] == 4  # 32 samples / 4 per micro-batch / 2 micro-batches
