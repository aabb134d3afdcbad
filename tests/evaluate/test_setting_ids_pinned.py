"""A result's file name and rerun command stay what they were: the setting id (a hash of every result-changing
option, in the result's file name) and the printed command of representative settings of each eval command are
pinned to the values the code computed before the options moved into typed models (issue 23), so results already
on disk keep being found and are never duplicated under a new name.

The id hashes absolute paths, so the test folder is written as /data in what is hashed and printed."""

import json

import numpy as np
import pytest

import genaug.evaluate.run as run
from genaug.cli import main
from genaug.core.hashing import stable_hash
from genaug.evaluate.features import FeatureSet
from genaug.evaluate.options import KnnOptions, LinearOptions, OodOptions, SimilarityOptions


def _set(n: int, seed: int, shift: float = 0.0, d: int = 5) -> FeatureSet:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.eye(d)[y] * 1.5 + rng.normal(shift, 1.0, (n, d))
    return FeatureSet(x.astype(np.float32), y, [f"k{i:04d}" for i in range(n)])


@pytest.fixture()
def data(tmp_path, monkeypatch):
    """Feature files under tmp_path; the id hashes and commands name tmp_path as /data."""
    roots = sorted({str(tmp_path.resolve()), str(tmp_path)}, key=len, reverse=True)

    def norm(v):
        if isinstance(v, str):
            for r in roots:
                v = v.replace(r, "/data")
            return v
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    monkeypatch.setattr(run, "stable_hash", lambda obj: stable_hash(norm(obj)))
    files = {}
    sets = (("train", 90, 0, 0.0), ("val", 60, 1, 0.0), ("far", 60, 2, 4.0), ("other", 60, 3, 0.0))
    for name, n, seed, shift in sets:
        files[name] = str(tmp_path / "f" / f"{name}.npz")
        _set(n, seed, shift).save(files[name])
    files["norm"] = norm
    return files


def _call(func, options, **kw) -> dict:
    """Run an eval function as a Python caller does."""
    return func(options(quiet=True, **kw))


def _check(doc: dict, data: dict, sid: str, command: str | None, stem: str) -> None:
    assert doc["setting_id"] == sid
    assert data["norm"](doc.get("command")) == command
    assert data["norm"](doc["path"]) == f"/data/f/eval/{stem}-{sid}.json"


LINEAR = [  # (options, setting id, command)
    ({"fast": True}, "e94c8c866f",
     "genaug eval linear --train-features /data/f/train.npz --val-features /data/f/val.npz --fast"),
    ({"epochs": 7, "batch_size": 32, "batchnorm": True, "seed": 3, "weight_decay": 1e-4, "n_boot": 50, "ci": 0.9,
      "lr": 0.5},
     "3b453d7cda",
     "genaug eval linear --train-features /data/f/train.npz --val-features /data/f/val.npz --epochs 7 "
     "--batch-size 32 --lr 0.5 --weight-decay 0.0001 --batchnorm --seed 3 --boot 50 --ci 0.9"),
    ({"solver": "ridge", "limit": 40, "workers": 1, "extract_batch_size": 16}, "2d26048e35",
     "genaug eval linear --train-features /data/f/train.npz --val-features /data/f/val.npz --solver ridge "
     "--limit 40"),
]  # fmt: skip


@pytest.mark.parametrize("i", range(len(LINEAR)))
def test_linear_ids_and_commands_are_pinned(data, i):
    kw, sid, command = LINEAR[i]
    doc = _call(run.eval_linear, LinearOptions, train_features=data["train"], val_features=data["val"], **kw)
    _check(doc, data, sid, command, "linear-val")


KNN = [
    ({}, "e76c5cb817",
     "genaug eval knn --train-features /data/f/train.npz --val-features /data/f/val.npz"),
    ({"ks": [5, 7], "temperature": 0.1, "seed": 2, "n_boot": 30}, "3c33e157dd",
     "genaug eval knn --train-features /data/f/train.npz --val-features /data/f/val.npz --seed 2 --k 5 --k 7 "
     "--temperature 0.1 --boot 30"),
]  # fmt: skip


@pytest.mark.parametrize("i", range(len(KNN)))
def test_knn_ids_and_commands_are_pinned(data, i):
    kw, sid, command = KNN[i]
    doc = _call(run.eval_knn, KnnOptions, train_features=data["train"], val_features=data["val"], **kw)
    _check(doc, data, sid, command, "knn-val")


OOD = [
    ({"fast": True}, "9eb888efee"),
    ({"scores": ["mahalanobis", "knn"], "knn_k": 9, "split": "test", "uncertainty_higher_is_in": False},
     "1678586fbf"),
]  # fmt: skip


@pytest.mark.parametrize("i", range(len(OOD)))
def test_ood_ids_are_pinned(data, i):
    kw, sid = OOD[i]
    doc = _call(run.eval_ood, OodOptions, train_features=data["train"], in_features=data["val"],
                out_features=[data["far"]], **kw)  # fmt: skip
    assert doc["setting_id"] == sid
    assert data["norm"](doc["path"]) == f"/data/f/eval/ood-{kw.get('split', 'val')}-far-{sid}.json"
    want = (
        {"scores": ["msp", "mahalanobis", "knn", "uncertainty"], "knn_k": 50, "probe": "ridge"}
        if i == 0
        else {"scores": ["mahalanobis", "knn"], "knn_k": 9, "probe": "sgd 100 ep", "uncertainty_higher_is_in": False}
    )
    assert {k: doc["settings"][k] for k in want} == want  # the options reach the scores


SIMILARITY = [({}, "442f225c20"), ({"n_boot": 20, "ci": 0.8, "seed": 4}, "e52ea6e3d5")]


@pytest.mark.parametrize("i", range(len(SIMILARITY)))
def test_similarity_ids_are_pinned(data, i):
    kw, sid = SIMILARITY[i]
    doc = _call(run.eval_similarity, SimilarityOptions, a=data["val"], b=data["other"], **kw)
    assert doc["setting_id"] == sid
    assert data["norm"](doc["path"]) == f"/data/f/eval/similarity-val-other-{sid}.json"


def test_the_cli_names_a_result_as_python_does(data, capsys):
    """`genaug eval linear ... --fast` lands on the file of eval_linear(fast=True) (LINEAR[0]), with its command."""
    assert main(["eval", "linear", "--train-features", data["train"], "--val-features", data["val"], "--fast"]) == 0
    printed = capsys.readouterr().out
    path = next(line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("results: "))
    _check({**json.loads(open(path).read()), "path": path}, data, LINEAR[0][1], LINEAR[0][2], "linear-val")


def test_the_probe_runs_with_the_options_it_is_given(data):
    """Every probe option of LINEAR[1] reaches the probe: the result's settings are the probe's resolved ones."""
    kw = LINEAR[1][0]
    doc = _call(run.eval_linear, LinearOptions, train_features=data["train"], val_features=data["val"], **kw)
    assert doc["settings"] == {
        "solver": "sgd", "epochs": 7, "batch_size": 32, "lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4,
        "batchnorm": True, "seed": 3, "bootstrap": doc["settings"]["bootstrap"],
    }  # fmt: skip
    assert doc["intervals"]["linear/top1"] is not None
    assert doc["settings"]["bootstrap"] == {"n_boot": 50, "ci": 0.9, "seed": 3, "over": "test images",
                                             "kind": "percentile"}  # fmt: skip
