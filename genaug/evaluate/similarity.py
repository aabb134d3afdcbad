"""Representation similarity of two encoders on the same images: linear CKA, orthogonal Procrustes distance, bootstrap.

Features are rows (one per image); each is centred per dimension before comparison.
- Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited", eq. 5):
  CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F); 1 for identical features, invariant to orthogonal maps
  and isotropic scaling.
- Orthogonal Procrustes distance (Ding, Denain and Steinhardt 2021, "Grounding Representation Similarity with
  Statistical Testing", sec. 2): with X and Y centred and scaled to unit Frobenius norm,
  d(X, Y) = min_R ||X R - Y||_F^2 over orthogonal R = 2 - 2 ||X^T Y||_* (nuclear norm); in [0, 2], 0 for rotated copies.
  (Dimensions of different width are compared by zero-padding, which the nuclear norm formula does implicitly.)
"""

from __future__ import annotations

import numpy as np
import torch


def _centred(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if t.ndim != 2:
        raise ValueError(f"features must be a 2-d array (images x dims), got shape {tuple(t.shape)}")
    return t - t.mean(0, keepdim=True)


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if len(x) != len(y):
        raise ValueError(f"the two feature sets hold {len(x)} and {len(y)} images: they must be the same images")
    if len(x) < 2:
        raise ValueError("similarity needs at least 2 images")


def linear_cka(x, y) -> float:
    """Linear CKA of two feature matrices of the same images (rows), after centring each dimension."""
    xc, yc = _centred(x), _centred(y)
    _check(xc, yc)
    if xc.shape[1] + yc.shape[1] > 2 * len(xc):  # wide features: use the n x n Gram matrices
        kx, ky = xc @ xc.T, yc @ yc.T
        num = (kx * ky).sum()
        den = torch.linalg.norm(kx) * torch.linalg.norm(ky)
    else:
        num = torch.linalg.norm(yc.T @ xc) ** 2
        den = torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc)
    if float(den) == 0.0:
        return float("nan")
    return float(num / den)


def procrustes_distance(x, y) -> float:
    """Orthogonal Procrustes distance of Ding et al. 2021 (centred, unit Frobenius norm): 2 - 2 ||X^T Y||_*."""
    xc, yc = _centred(x), _centred(y)
    _check(xc, yc)
    nx, ny = torch.linalg.norm(xc), torch.linalg.norm(yc)
    if float(nx) == 0.0 or float(ny) == 0.0:
        return float("nan")
    xc, yc = xc / nx, yc / ny
    m = xc.T @ yc if min(xc.shape[1], yc.shape[1]) <= len(xc) else (xc @ xc.T, yc @ yc.T)
    if isinstance(m, tuple):  # ||X^T Y||_* = sum of sqrt(eig(X^T Y Y^T X)) = trace((Kx^1/2 Ky Kx^1/2)^1/2)
        kx, ky = m
        w, v = torch.linalg.eigh(kx)
        sq = (v * w.clamp(min=0).sqrt()) @ v.T
        ev = torch.linalg.eigvalsh(sq @ ky @ sq).clamp(min=0)
        nuc = ev.sqrt().sum()
    else:
        nuc = torch.linalg.matrix_norm(m, ord="nuc")
    return float(max(0.0, 2.0 - 2.0 * float(nuc)))


METRICS = {"cka": linear_cka, "opd": procrustes_distance}


def bootstrap(x, y, fn, n_boot: int = 200, ci: float = 0.95, seed: int = 0) -> dict:
    """The value of fn(x, y) and a percentile bootstrap confidence interval over images (rows resampled)."""
    xa, ya = np.asarray(x), np.asarray(y)
    if len(xa) != len(ya):
        raise ValueError(f"the two feature sets hold {len(xa)} and {len(ya)} images: they must be the same images")
    value = fn(xa, ya)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(xa), len(xa))
        vals.append(fn(xa[idx], ya[idx]))
    vals = np.asarray(vals, np.float64)
    lo, hi = np.quantile(vals, [(1 - ci) / 2, 1 - (1 - ci) / 2]) if n_boot > 0 else (np.nan, np.nan)
    return {
        "value": value,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "ci": ci,
        "n_boot": n_boot,
        "boot_std": float(vals.std()) if n_boot > 1 else float("nan"),
    }


def compare(x, y, n_boot: int = 200, ci: float = 0.95, seed: int = 0) -> dict:
    """Linear CKA and orthogonal Procrustes distance of two feature sets, each with its bootstrap CI."""
    return {name: bootstrap(x, y, fn, n_boot, ci, seed) for name, fn in METRICS.items()} | {"num_images": len(x)}
