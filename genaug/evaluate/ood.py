"""OOD detection from frozen features: max softmax, Mahalanobis, kNN distance and any named per-sample score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genaug.evaluate.knn import knn_distance_score
from genaug.evaluate.linear import LinearProbe
from genaug.evaluate.metrics import ood_metrics


@dataclass
class Score:
    """A named per-sample score on the in- and out-of-distribution test sets, and its direction."""

    name: str
    score_in: np.ndarray
    score_out: np.ndarray
    higher_is_in: bool = True

    def oriented(self) -> tuple[np.ndarray, np.ndarray]:
        """The scores flipped if needed so that higher means in-distribution."""
        a, b = np.asarray(self.score_in, np.float64), np.asarray(self.score_out, np.float64)
        return (a, b) if self.higher_is_in else (-a, -b)


class Mahalanobis:
    """Class-conditional Gaussians with one shared covariance (Lee et al. 2018); score = -min_c distance^2."""

    def __init__(self, features, labels=None, shrinkage: float = 1e-6) -> None:
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        y = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels, np.int64)
        if (y < 0).any():
            y = np.zeros(len(x), np.int64)  # unlabeled: one Gaussian
        classes = np.unique(y)
        yt = torch.as_tensor(y)
        self.means = torch.stack([x[yt == c].mean(0) for c in classes])
        centred = x - self.means[torch.as_tensor(np.searchsorted(classes, y))]
        cov = centred.T @ centred / max(1, len(x) - len(classes))
        cov += shrinkage * float(torch.trace(cov)) / cov.shape[0] * torch.eye(cov.shape[0], dtype=torch.float64)
        self.precision = torch.linalg.pinv(cov, hermitian=True)

    def score(self, features, chunk: int = 4096) -> np.ndarray:
        """Minus the smallest squared Mahalanobis distance to a class mean (higher = in-distribution)."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        pm = self.means @ self.precision
        mm = (pm * self.means).sum(1)
        out = []
        for i in range(0, len(x), chunk):
            xi = x[i : i + chunk]
            m = ((xi @ self.precision) * xi).sum(1, keepdim=True) - 2 * xi @ pm.T + mm[None]
            out.append(-m.min(1).values)
        return torch.cat(out).numpy()


def feature_scores(
    train_x,
    train_y,
    in_x,
    out_x,
    probe: LinearProbe | None = None,
    knn_k: int = 50,
    which: tuple[str, ...] = ("msp", "mahalanobis", "knn"),
    device: str | None = None,
) -> list[Score]:
    """The feature-based scores that apply: msp (needs a probe), mahalanobis, knn."""
    out = []
    for name in which:
        if name == "msp":
            if probe is None:
                continue
            out.append(Score("msp", probe.max_softmax(in_x), probe.max_softmax(out_x)))
        elif name == "mahalanobis":
            m = Mahalanobis(train_x, train_y)
            out.append(Score("mahalanobis", m.score(in_x), m.score(out_x)))
        elif name == "knn":
            out.append(
                Score(
                    f"knn{knn_k}",
                    knn_distance_score(train_x, in_x, knn_k, device=device),
                    knn_distance_score(train_x, out_x, knn_k, device=device),
                )
            )
        else:
            raise ValueError(f"unknown OOD score {name!r}: choose msp, mahalanobis or knn")
    return out


def evaluate_scores(scores: list[Score]) -> dict[str, dict]:
    """AUROC, AUPR-in/out and FPR@95 of each score, by name."""
    res = {}
    for s in scores:
        a, b = s.oriented()
        res[s.name] = ood_metrics(a, b) | {
            "higher_is_in": s.higher_is_in,
            "num_in": int(a.size),
            "num_out": int(b.size),
        }
    return res
