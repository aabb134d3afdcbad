"""`genaug eval` round trips: features files and encoders over real shard files, JSON results, report and chart."""

import json

import numpy as np
import pytest
from PIL import Image

from genaug.cli import main
from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from genaug.evaluate.features import FeatureSet
from genaug.testing.runs import train_tiny


def _blobs(n, seed, novel=False, d=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.eye(d)[y + (4 if novel else 0)] * 6 + rng.normal(0, 0.7, (n, d))  # novel: clusters on other axes
    return FeatureSet(x.astype(np.float32), y, [f"s000000r{i:06d}" for i in range(n)])


@pytest.fixture()
def feats(tmp_path):
    paths = {}
    for name, seed, shift in (("train", 0, False), ("val", 1, False), ("far", 2, True)):
        paths[name] = tmp_path / "feats" / f"{name}.npz"
        _blobs(120, seed, shift).save(paths[name])
    return paths


def test_knn_and_linear_from_features(feats, capsys):
    rc = main(["eval", "knn", "--train-features", str(feats["train"]), "--val-features", str(feats["val"])])
    assert rc == 0
    doc = json.loads(next((feats["train"].parent / "eval").glob("knn-val-*.json")).read_text())
    assert doc["summary"]["knn/k20/top1"] > 0.97 and doc["settings"]["temperature"] == 0.07
    assert doc["settings"]["ks_used"] == [20, 120]  # 200 capped at the training set's size
    printed = capsys.readouterr().out
    assert "knn/k20/top1" in printed and "temperature" in printed
    out = feats["train"].parent / "lin.json"
    argv = ["eval", "linear", "--train-features", str(feats["train"]), "--val-features", str(feats["val"])]
    assert main(argv + ["--epochs", "5", "--batch-size", "32", "--out", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["linear/top1"] > 0.97 and doc["settings"]["epochs"] == 5
    assert doc["settings"]["lr"] == pytest.approx(0.1 * 32 / 256)


def test_ood_and_similarity_from_features(feats, tmp_path):
    argv = [
        "eval",
        "ood",
        "--train-features",
        str(feats["train"]),
        "--in-features",
        str(feats["val"]),
        "--out-features",
        str(feats["far"]),
        "--fast",
        "--knn-k",
        "10",
        "--quiet",
    ]
    u_in, u_out = tmp_path / "u_in.npy", tmp_path / "u_out.txt"
    np.save(u_in, np.full(120, 0.2))
    np.savetxt(u_out, np.full(120, 0.9))
    argv += ["--uncertainty-in", str(u_in), "--uncertainty-out", str(u_out), "--uncertainty-higher-is-out"]
    assert main(argv) == 0
    doc = json.loads(next((feats["train"].parent / "eval").glob("ood-val-far-*.json")).read_text())
    for score in ("mahalanobis", "knn10", "uncertainty"):
        assert doc["summary"][f"ood/far/{score}/auroc"] == 1.0, score
        assert doc["summary"][f"ood/far/{score}/fpr95"] == 0.0
    assert "ood/far/msp/auroc" in doc["summary"]
    # similarity of a features file with a rotated, scaled copy of itself
    a = FeatureSet.load(feats["train"])
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))
    FeatureSet((a.features @ q * 3).astype(np.float32), a.labels, a.keys).save(tmp_path / "rot.npz")
    assert main(["eval", "similarity", str(feats["train"]), str(tmp_path / "rot.npz"), "--boot", "20", "--quiet"]) == 0
    doc = json.loads(next((feats["train"].parent / "eval").glob("similarity-val-rot-*.json")).read_text())
    assert doc["summary"]["sim/rot/cka"] == pytest.approx(1.0, abs=1e-5)
    assert doc["summary"]["sim/rot/opd"] == pytest.approx(0.0, abs=1e-5)
    assert doc["details"]["cka"]["ci_low"] <= 1.0 + 1e-9


def test_run_folder_round_trip_and_report(shard_set, tmp_path, capsys):
    """Two real training runs evaluated from their folders, reported side by side and compared."""
    runs = [train_tiny("barlow", shard_set, tmp_path / f"barlow-s{s}", seed=s) for s in (0, 1)]
    for run in runs:
        base = [str(run), "--shards", str(shard_set), "--quiet"]
        assert main(["eval", "linear", *base, "--fast"]) == 0
        assert main(["eval", "knn", *base, "--k", "5"]) == 0
        assert len(list((run / "features").glob("*.npz"))) == 2  # train and val, reused by knn
        doc = json.loads(next((run / "eval").glob("linear-val-*.json")).read_text())
        assert doc["run_info"] == {"method": "barlow", "p": 0.0, "gen_min_score": None, "gen_weighting": "uniform"}
        assert doc["encoder_id"].startswith("sha256:") and 0.0 <= doc["summary"]["linear/top1"] <= 1.0
        assert doc["preprocess"] == {
            "image_size": 16,
            "resize": 18,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "skipped_images": 0,
        }
    capsys.readouterr()
    png = tmp_path / "report.png"
    rc = main(
        ["eval", "report", *map(str, runs), "--png", str(png), "--metric", "linear/top1", "--metric", "knn/k5/top1"]
    )
    assert rc == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["run", "method", "p", "gen_min_score", "gen_weighting", "linear/top1", "knn/k5/top1"]
    assert table[2].split()[:5] == ["barlow-s0", "barlow", "0.0", "-", "uniform"] and table[3].split()[0] == "barlow-s1"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100
    argv = ["eval", "similarity", str(runs[0]), str(runs[1]), "--shards", str(shard_set), "--boot", "10", "--quiet"]
    assert main(argv) == 0
    doc = json.loads(next((runs[0] / "eval").glob("similarity-val-barlow-s1-*.json")).read_text())
    assert 0.0 < doc["summary"]["sim/barlow-s1/cka"] < 1.0


def test_user_errors(tmp_path, capsys):
    assert main(["eval", "linear"]) == 2
    assert "give a model" in capsys.readouterr().err
    assert main(["eval", "knn", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "report", str(tmp_path)]) == 2
    assert "no results" in capsys.readouterr().err


def test_ood_with_identical_sets_is_chance(shard_set, tmp_path):
    """A real H-prob run: in and out sets identical, so every score (its uncertainty too) is at chance."""
    run = train_tiny("barlow-hprob", shard_set, tmp_path / "prob")
    argv = ["eval", "ood", str(run), "--in", str(shard_set), "--out", str(shard_set)]
    assert main(argv + ["--fast", "--knn-k", "5", "--quiet"]) == 0
    doc = json.loads(next((run / "eval").glob("ood-val-set-*.json")).read_text())
    for score in ("msp", "mahalanobis", "knn5", "uncertainty"):  # uncertainty comes from the method's own sigma
        assert doc["summary"][f"ood/set/{score}/auroc"] == 0.5, score
