"""Weighted kNN classification on frozen features (Wu et al. 2018): cosine similarity, votes weighted exp(sim / T)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genaug.core.devices import resolve_device
from genaug.evaluate.linear import check_labels

DEFAULT_KS = (20, 200)
DEFAULT_T = 0.07


def _normed(x, dev: torch.device) -> torch.Tensor:
    return F.normalize(torch.as_tensor(np.asarray(x), dtype=torch.float32).to(dev), dim=1)


@torch.no_grad()
def knn_classify(
    train_x,
    train_y,
    val_x,
    val_y,
    ks: tuple[int, ...] = DEFAULT_KS,
    temperature: float = DEFAULT_T,
    chunk: int = 1024,
    device: str | None = None,
) -> dict:
    """Top-1/top-5 of weighted kNN for each k (capped at the training set's size), with the settings used."""
    ytr = check_labels(train_y, "the training split")
    yva = check_labels(val_y, "the validation split")
    dev = resolve_device(device)
    bank = _normed(train_x, dev)
    q_all = _normed(val_x, dev)
    c = int(max(ytr.max(), yva.max())) + 1
    labels = torch.as_tensor(ytr, device=dev)
    target = torch.as_tensor(yva, device=dev)
    eff = sorted({max(1, min(int(k), len(ytr))) for k in ks})
    kmax = max(eff)
    hits = {k: [[], []] for k in eff}  # per val image: top-1 and top-5 hits
    for i in range(0, len(q_all), chunk):
        q = q_all[i : i + chunk]
        sim, idx = (q @ bank.T).topk(kmax, dim=1)  # sorted, largest first
        w = (sim / temperature).exp()
        nl = labels[idx]
        for k in eff:
            votes = torch.zeros(len(q), c, device=dev).scatter_add_(1, nl[:, :k], w[:, :k])
            top = votes.topk(min(5, c), dim=1).indices
            t = target[i : i + chunk, None]
            hits[k][0].append((top[:, :1] == t).any(1).cpu())
            hits[k][1].append((top == t).any(1).cpu())
    n = len(yva)
    per_image = {f"k{k}": {"top1": torch.cat(h[0]).numpy(), "top5": torch.cat(h[1]).numpy()} for k, h in hits.items()}
    res = {name: {m: float(v.sum()) / n for m, v in d.items()} for name, d in per_image.items()}
    return {
        "results": res,
        "hits": per_image,  # per val image, for bootstrap intervals (not written to JSON)
        "top1": res[f"k{eff[0]}"]["top1"],
        "num_train": int(len(ytr)),
        "num_val": int(n),
        "num_classes": c,
        "settings": {
            "ks": list(ks),
            "ks_used": eff,
            "temperature": temperature,
            "similarity": "cosine",
            "weighting": "exp(sim/T)",
        },
    }


@torch.no_grad()
def knn_distance_score(bank_x, query_x, k: int = 50, chunk: int = 1024, device: str | None = None) -> np.ndarray:
    """OOD score of Sun et al. 2022: minus the distance to the k-th nearest normalised training feature."""
    dev = resolve_device(device)
    bank = _normed(bank_x, dev)
    q_all = _normed(query_x, dev)
    k = max(1, min(int(k), len(bank)))
    out = []
    for i in range(0, len(q_all), chunk):
        sim = (q_all[i : i + chunk] @ bank.T).topk(k, dim=1).values[:, -1]
        out.append(-torch.sqrt(torch.clamp(2 - 2 * sim, min=0)).cpu())
    return torch.cat(out).numpy().astype(np.float64)
