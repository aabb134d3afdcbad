"""OOD detection metrics on scores where higher means in-distribution: AUROC, AUPR-in/out, FPR at 95% TPR."""

from __future__ import annotations

import numpy as np


def _as_1d(x) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).reshape(-1)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError("scores hold NaN or inf")
    return a


def _curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct threshold, scores sorted descending."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.where(np.diff(s))[0]
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def _split(score_in, score_out) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_1d(score_in), _as_1d(score_out)
    if a.size == 0 or b.size == 0:
        raise ValueError("both the in-distribution and the out-of-distribution scores must be non-empty")
    return a, b


def auroc(score_in, score_out) -> float:
    """Area under the ROC curve, in-distribution as positives: P(s_in > s_out) + 0.5 P(s_in = s_out)."""
    a, b = _split(score_in, score_out)
    allv = np.concatenate([a, b])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty(allv.size, dtype=np.float64)
    # average ranks over ties (Mann-Whitney U)
    starts = np.r_[0, np.where(np.diff(sorted_v))[0] + 1]
    ends = np.r_[starts[1:], allv.size]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def average_precision(labels, scores) -> float:
    """Average precision (step-wise area under precision-recall), as scikit-learn's average_precision_score."""
    y = _as_1d(labels).astype(bool)
    s = _as_1d(scores)
    if not y.any():
        raise ValueError("average precision needs at least one positive")
    tps, fps = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def aupr_in(score_in, score_out) -> float:
    """Area under precision-recall with in-distribution samples as positives (higher score = in)."""
    a, b = _split(score_in, score_out)
    return average_precision(np.r_[np.ones(a.size), np.zeros(b.size)], np.r_[a, b])


def aupr_out(score_in, score_out) -> float:
    """Area under precision-recall with out-of-distribution samples as positives (lower score = out)."""
    a, b = _split(score_in, score_out)
    return average_precision(np.r_[np.zeros(a.size), np.ones(b.size)], -np.r_[a, b])


def fpr_at_tpr(score_in, score_out, tpr: float = 0.95) -> float:
    """Fraction of OOD samples accepted at the loosest threshold where at least `tpr` of in-distribution is kept."""
    a, b = _split(score_in, score_out)
    y = np.r_[np.ones(a.size), np.zeros(b.size)]
    tps, fps = _curve(y, np.r_[a, b])
    tpr_curve = tps / a.size
    i = int(np.searchsorted(tpr_curve, tpr - 1e-12, side="left"))
    return float(fps[min(i, fps.size - 1)] / b.size)


def ood_metrics(score_in, score_out) -> dict[str, float]:
    """AUROC, AUPR-in, AUPR-out and FPR@95 of one score (higher = in-distribution)."""
    return {
        "auroc": auroc(score_in, score_out),
        "aupr_in": aupr_in(score_in, score_out),
        "aupr_out": aupr_out(score_in, score_out),
        "fpr95": fpr_at_tpr(score_in, score_out, 0.95),
    }
