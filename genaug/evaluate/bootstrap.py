"""Percentile bootstrap intervals of an accuracy over test images: each resample draws as many images as the test
split holds, with replacement (seeded), and the interval is the (1-ci)/2 and 1-(1-ci)/2 quantiles of the resampled
accuracies. Resamples are drawn in blocks, so memory stays bounded on large test sets."""

from __future__ import annotations

import numpy as np

DEFAULT_BOOT = 1000
DEFAULT_CI = 0.95


def accuracy_interval(
    hits: np.ndarray, n_boot: int = DEFAULT_BOOT, ci: float = DEFAULT_CI, seed: int = 0, block: int = 2**22
) -> list[float] | None:
    """[low, high] percentile-bootstrap interval of mean(hits) (one 0/1 entry per test image); None if n_boot is 0."""
    x = np.asarray(hits, dtype=np.float64).reshape(-1)
    n = len(x)
    if n_boot <= 0 or n == 0:
        return None
    rng = np.random.default_rng(seed)
    per = max(1, block // n)  # resamples per block: block images drawn at a time
    means = []
    for start in range(0, n_boot, per):
        idx = rng.integers(0, n, size=(min(per, n_boot - start), n))
        means.append(x[idx].mean(axis=1))
    lo, hi = np.quantile(np.concatenate(means), [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return [float(lo), float(hi)]


def bootstrap_settings(n_boot: int, ci: float, seed: int) -> dict:
    """How the intervals of a result were computed (recorded in its settings)."""
    return {"n_boot": int(n_boot), "ci": float(ci), "seed": int(seed), "over": "test images", "kind": "percentile"}
