"""OOD metrics against hand values and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from genaug.evaluate.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_metrics


def _sk(a, b):
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    s = np.r_[a, b]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "auroc": roc_auc_score(y, s),
        "aupr_in": average_precision_score(y, s),
        "aupr_out": average_precision_score(1 - y, -s),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
    }


def test_separated_and_identical():
    a, b = np.linspace(1, 2, 50), np.linspace(-2, -1, 70)
    m = ood_metrics(a, b)
    assert m["auroc"] == 1.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0 and m["fpr95"] == 0.0
    flipped = ood_metrics(b, a)
    assert flipped["auroc"] == 0.0 and flipped["fpr95"] == 1.0
    same = np.random.default_rng(0).normal(size=100)
    assert auroc(same, same) == 0.5
    assert auroc(np.zeros(10), np.zeros(30)) == 0.5  # all tied


def test_hand_values():
    # in: 3, 1 ; out: 2, 0 -> pairs in>out: (3>2, 3>0, 1>0) = 3 of 4
    assert auroc([3, 1], [2, 0]) == 0.75
    # ranked 3(in) 2(out) 1(in) 0(out): AP_in = 1/2 * (1/1) + 1/2 * (2/3)
    assert aupr_in([3, 1], [2, 0]) == pytest.approx(0.5 + 1 / 3)
    # 95% of in kept needs threshold 1 -> out scores >= 1: just 2 -> 1/2
    assert fpr_at_tpr([3, 1], [2, 0]) == 0.5


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.5, 1, 200 + seed * 13)
    b = rng.normal(0, 1, 150 + seed * 7)
    if seed % 2:  # with ties
        a, b = np.round(a, 1), np.round(b, 1)
    ours, ref = ood_metrics(a, b), _sk(a, b)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k
    assert aupr_out(a, b) == pytest.approx(ref["aupr_out"])


def test_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        auroc([], [1.0])
    with pytest.raises(ValueError):
        auroc([np.nan], [1.0])
