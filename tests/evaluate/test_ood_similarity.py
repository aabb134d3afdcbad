"""OOD scores and representation similarity: invariances and known values."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from genaug.evaluate.knn import knn_distance_score
from genaug.evaluate.linear import ProbeConfig, train_probe
from genaug.evaluate.ood import Mahalanobis, Score, evaluate_scores, feature_scores
from genaug.evaluate.similarity import bootstrap, compare, linear_cka, procrustes_distance


def _blobs(n, shift, seed, d=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.eye(3, d) * 5
    return (centers[y] + shift + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_feature_scores_separate_far_ood():
    xtr, ytr = _blobs(300, 0, 0)
    xin, _ = _blobs(100, 0, 1)
    xout, _ = _blobs(100, 30, 2)
    probe = train_probe(xtr, ytr, 3, ProbeConfig(solver="ridge"))
    res = evaluate_scores(feature_scores(xtr, ytr, xin, xout, probe=probe, knn_k=10))
    assert set(res) == {"msp", "mahalanobis", "knn10"}
    assert res["mahalanobis"]["auroc"] == 1.0 and res["knn10"]["auroc"] > 0.95
    # identical distributions: chance
    xsame, _ = _blobs(100, 0, 3)
    res = evaluate_scores(feature_scores(xtr, ytr, xin, xsame, which=("mahalanobis",)))
    assert abs(res["mahalanobis"]["auroc"] - 0.5) < 0.12


def test_mahalanobis_hand():
    x = np.array([[1.0, 0], [-1, 0], [0, 2], [0, -2]] * 10)
    m = Mahalanobis(x, None, shrinkage=0.0)
    # covariance diag(0.5*40/39, 2*40/39); point (1, 0): distance^2 = 1 / (20/39)
    assert m.score([[1.0, 0.0]])[0] == pytest.approx(-39 / 20)


def test_knn_distance_score_hand():
    bank = np.array([[1.0, 0], [0, 1]])
    s = knn_distance_score(bank, np.array([[2.0, 0], [1, 1]]), k=1)
    assert s == pytest.approx([0.0, -np.sqrt(2 - np.sqrt(2))], abs=1e-6)


def test_named_score_direction():
    sig_in, sig_out = np.full(10, 0.1), np.full(10, 0.9)
    assert evaluate_scores([Score("uncertainty", sig_in, sig_out, higher_is_in=False)])["uncertainty"]["auroc"] == 1.0
    assert evaluate_scores([Score("uncertainty", sig_in, sig_out, higher_is_in=True)])["uncertainty"]["auroc"] == 0.0


def test_cka_opd_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))  # anisotropic
    q = ortho_group.rvs(12, random_state=1)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.7 * x @ q + 5.0) == pytest.approx(1.0)
    assert procrustes_distance(x, x @ q) == pytest.approx(0.0, abs=1e-9)
    assert procrustes_distance(x, 2 * x @ q - 1) == pytest.approx(0.0, abs=1e-9)
    # a non-isotropic scaling is not invisible
    assert linear_cka(x, x * np.linspace(0.1, 3, 12)) < 0.99
    # independent features: near 0 CKA, large OPD
    y = rng.normal(size=(4000, 6))
    z = rng.normal(size=(4000, 6))
    assert linear_cka(y, z) < 0.01
    assert procrustes_distance(y, z) > 1.5


def test_wide_features_match_tall_formulas():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 50))
    y = x[:, :40] + 0.5 * rng.normal(size=(30, 40))
    xc, yc = x - x.mean(0), y - y.mean(0)
    cka = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(cka)
    xn, yn = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    assert procrustes_distance(x, y) == pytest.approx(2 - 2 * np.linalg.norm(xn.T @ yn, "nuc"))


def test_bootstrap_ci_brackets_value():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 5))
    y = x + rng.normal(size=(150, 5))
    res = compare(x, y, n_boot=50)
    for name in ("cka", "opd"):
        r = res[name]
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["ci_high"] - r["ci_low"] > 0
    assert bootstrap(x, y, linear_cka, n_boot=20, seed=5) == bootstrap(x, y, linear_cka, n_boot=20, seed=5)
    with pytest.raises(ValueError, match="same images"):
        compare(x, y[:10])
