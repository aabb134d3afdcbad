"""The linear probe reports accuracy on the validation split, never on the training one: every test here draws val
from another distribution than train (labels shifted by one class), so train accuracy reported as val fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genaug.cli import main
from genaug.evaluate.features import FeatureSet
from genaug.evaluate.linear import ProbeConfig, linear_probe


def _blobs(n: int, seed: int, shift: int = 0, c: int = 4, d: int = 16):
    """Separable blobs around fixed centres; `shift` relabels blob y as (y + shift) % c (another distribution)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(0, 1, (c, d)) * 4
    y = rng.integers(0, c, n)
    return (centers[y] + rng.normal(0, 0.5, (n, d))).astype(np.float32), (y + shift) % c


@pytest.mark.parametrize("solver", ["sgd", "ridge"])
def test_probe_accuracy_is_measured_on_val(solver):
    xtr, ytr = _blobs(300, 1)
    xva, yva = _blobs(200, 2, shift=1)  # same inputs, labels moved: a probe that fits train is wrong on all of val
    res, _ = linear_probe(xtr, ytr, xva, yva, ProbeConfig(solver=solver, epochs=20, batch_size=64))
    assert res["train_top1"] >= 0.98
    assert res["top1"] <= 0.05 and res["num_val"] == 200


def test_eval_linear_reads_the_val_features_it_is_given(tmp_path, capsys):
    paths = {}
    for name, seed, shift in (("train", 1, 0), ("val", 2, 1)):
        x, y = _blobs(200, seed, shift)
        paths[name] = tmp_path / f"{name}.npz"
        FeatureSet(x, y, [f"s{seed:06d}r{i:06d}" for i in range(len(y))], {}, {}).save(paths[name])
    out = tmp_path / "linear.json"
    argv = ["eval", "linear", "--train-features", str(paths["train"]), "--val-features", str(paths["val"]), "--fast",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["linear/top1"] <= 0.05 and doc["details"]["top1"] <= 0.05
    assert doc["details"]["train_top1"] >= 0.98
