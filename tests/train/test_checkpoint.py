"""Checkpoint files: atomic commit, rotation, leftovers of a killed writer, RNG round trip, resume resolution."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from genaug.core.errors import GenaugError
from genaug.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from genaug.train.loop import MetricsLogger


def test_save_is_atomic_rotates_and_removes_stale_temporaries(tmp_path):
    stale = tmp_path / "checkpoint-00000003.pt.tmp-otherhost-123"
    stale.write_bytes(b"half a checkpoint")  # what a killed writer leaves
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.full((2,), float(step))}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 6]
    assert not stale.exists() and not list(tmp_path.glob("*.tmp-*"))
    assert load_checkpoint(latest_checkpoint(tmp_path))["w"].tolist() == [6.0, 6.0]


def test_rng_state_round_trip():
    st = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(st)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_resolve_resume_and_errors(tmp_path):
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(GenaugError, match="holds no checkpoint"):
        resolve_resume(tmp_path, tmp_path)
    with pytest.raises(GenaugError, match="does not exist"):
        resolve_resume(tmp_path / "nope.pt", tmp_path)
    p = save_checkpoint(tmp_path, 1, {"step": 1})
    assert resolve_resume(tmp_path, tmp_path / "other") == p and resolve_resume(None, tmp_path) == p
    bad = tmp_path / "checkpoint-00000009.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(GenaugError, match="cannot be read"):
        load_checkpoint(bad)


def test_metrics_logger_drops_rows_past_the_checkpoint_and_torn_lines(tmp_path):
    rows = [{"step": s, "loss": float(s)} for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "lo')
    log = MetricsLogger(tmp_path, resume_step=2, tensorboard=False, wandb=False, config={})
    log.log({"step": 3, "loss": 30.0})
    log.close()
    got = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in got] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("step,epoch,loss")
