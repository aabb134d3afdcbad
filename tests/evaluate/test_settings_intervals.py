"""One set of numbers: eval results are written per setting (never overwriting another setting's file), carry
percentile-bootstrap intervals over test images, and record the command that reproduces them."""

import json
import shlex

import numpy as np
import pytest

from genaug.cli import main
from genaug.evaluate.bootstrap import accuracy_interval
from genaug.evaluate.features import FeatureSet


def _noisy(n, seed, d=6):
    """Three overlapping clusters: accuracies well inside (0, 1), so intervals have width."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.eye(d)[y] * 1.2 + rng.normal(0, 1.0, (n, d))
    return FeatureSet(x.astype(np.float32), y, [f"s000000r{i:06d}" for i in range(n)])


@pytest.fixture()
def feats(tmp_path):
    out = {}
    for name, seed, n in (("train", 0, 300), ("val", 1, 200)):
        out[name] = tmp_path / "feats" / f"{name}.npz"
        _noisy(n, seed).save(out[name])
    return out


def _run(argv: list[str], capsys) -> tuple[dict, str]:
    assert main(argv) == 0
    printed = capsys.readouterr().out
    path = next(line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("results: "))
    return {**json.loads(open(path).read()), "path": path}, printed


def test_each_setting_has_its_own_file_and_rerunning_the_printed_command_gives_the_same_figure(feats, capsys):
    base = ["eval", "linear", "--train-features", str(feats["train"]), "--val-features", str(feats["val"])]
    a, printed = _run([*base, "--epochs", "20", "--batchnorm"], capsys)
    b, _ = _run([*base, "--epochs", "5"], capsys)
    files = sorted((feats["train"].parent / "eval").glob("linear-val-*.json"))
    assert len(files) == 2 and a["path"] != b["path"] and a["setting_id"] != b["setting_id"]
    assert json.loads(open(a["path"]).read())["summary"] == a["summary"]  # b did not overwrite a
    # the printed command is the result's own; rerunning it lands on the same file with the same figure
    assert f"rerun: {a['command']}" in printed and "--batchnorm" in a["command"] and "--epochs 20" in a["command"]
    again, _ = _run(shlex.split(a["command"])[1:], capsys)
    assert again["path"] == a["path"] and again["summary"] == a["summary"]
    knn, _ = _run(["eval", "knn", "--train-features", str(feats["train"]), "--val-features", str(feats["val"])], capsys)
    knn5, _ = _run(["eval", "knn", *shlex.split(knn["command"])[3:], "--k", "5"], capsys)
    assert knn["path"] != knn5["path"] and len(list((feats["train"].parent / "eval").glob("knn-val-*.json"))) == 2


def test_linear_and_knn_carry_bootstrap_intervals_over_images(feats, capsys):
    lin, printed = _run(
        ["eval", "linear", "--train-features", str(feats["train"]), "--val-features", str(feats["val"]), "--fast"],
        capsys,
    )
    lo, hi = lin["intervals"]["linear/top1"]
    top1 = lin["summary"]["linear/top1"]
    assert lo < top1 < hi and 0.03 < hi - lo < 0.25, (lo, top1, hi)  # 200 images near 60%: about +-7 points
    assert "95% CI" in printed and lin["settings"]["bootstrap"]["over"] == "test images"
    knn, _ = _run(["eval", "knn", "--train-features", str(feats["train"]), "--val-features", str(feats["val"])], capsys)
    for k in ("k20", "k200"):
        lo, hi = knn["intervals"][f"knn/{k}/top1"]
        assert lo <= knn["summary"][f"knn/{k}/top1"] <= hi and hi > lo


def test_accuracy_interval_is_the_percentile_bootstrap():
    hits = np.r_[np.ones(300), np.zeros(100)]  # 75% of 400 images: the bootstrap sd is sqrt(.75 * .25 / 400)
    lo, hi = accuracy_interval(hits, n_boot=4000, seed=1)
    half = 1.96 * np.sqrt(0.75 * 0.25 / 400)
    assert abs((hi - lo) / 2 - half) < 0.006 and abs((hi + lo) / 2 - 0.75) < 0.006
    assert accuracy_interval(hits, n_boot=500, seed=3) == accuracy_interval(hits, n_boot=500, seed=3)  # seeded
    small_blocks = accuracy_interval(hits, n_boot=500, seed=3, block=1000)  # blocks change memory, not draws
    assert small_blocks == accuracy_interval(hits, n_boot=500, seed=3)
    assert accuracy_interval(np.ones(50)) == [1.0, 1.0] and accuracy_interval(hits, n_boot=0) is None


def test_ood_results_are_per_setting_too(feats, capsys):
    base = ["eval", "ood", "--train-features", str(feats["train"]), "--in-features", str(feats["val"])]
    base += ["--out-features", str(feats["val"]), "--fast", "--score", "knn"]
    a, _ = _run([*base, "--knn-k", "5"], capsys)
    b, _ = _run([*base, "--knn-k", "9"], capsys)
    assert a["path"] != b["path"] and json.loads(open(a["path"]).read())["settings"]["knn_k"] == 5
