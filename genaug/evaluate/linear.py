"""The linear probe on frozen features: SGD or LARS with a cosine schedule, or a closed-form ridge fit (--fast)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from genaug.core.devices import resolve_device
from genaug.core.errors import GenaugError
from genaug.ssl.lars import LARS


@dataclass
class ProbeConfig:
    """Settings of the linear probe (defaults: the standard protocol on precomputed features)."""

    solver: str = "sgd"  # sgd | lars | ridge (closed form, the --fast option)
    epochs: int = 100
    batch_size: int = 256
    lr: float | None = None  # None: 0.1 x batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    batchnorm: bool = False  # BatchNorm1d without affine parameters before the linear layer
    ridge: float = 1e-3  # L2 strength of the closed-form solver, relative to the mean feature energy
    seed: int = 0
    device: str | None = None

    def resolved(self) -> dict:
        """The settings as a dict, with the learning rate filled in."""
        d = asdict(self)
        d["lr"] = self.effective_lr()
        d.pop("device")
        drop = ("epochs", "batch_size", "lr", "momentum", "weight_decay") if self.solver == "ridge" else ("ridge",)
        return {k: v for k, v in d.items() if k not in drop}

    def effective_lr(self) -> float:
        """The learning rate used: the given one, or 0.1 x batch_size / 256."""
        return float(self.lr) if self.lr is not None else 0.1 * self.batch_size / 256


class LinearProbe(nn.Module):
    """Optional non-affine batch norm followed by one linear layer; predicts class logits from features."""

    def __init__(self, dim: int, num_classes: int, batchnorm: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False) if batchnorm else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(self.bn(x))

    @torch.no_grad()
    def logits(self, x, batch_size: int = 4096) -> torch.Tensor:
        """Logits of feature array x in eval mode, batched."""
        self.eval()
        dev = self.fc.weight.device
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        return torch.cat([self(x[i : i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])

    def max_softmax(self, x) -> np.ndarray:
        """Maximum softmax probability of each row of x (the baseline OOD score of Hendrycks and Gimpel 2017)."""
        return self.logits(x).softmax(1).max(1).values.numpy()


def check_labels(labels, what: str) -> np.ndarray:
    """Labels as an int64 array; unlabeled samples (-1) are a user error."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.size == 0:
        raise GenaugError(f"{what} has no samples")
    if (y < 0).any():
        raise GenaugError(f"{what} has unlabeled samples (no `cls` field): the probe and kNN need a labeled split")
    return y


def train_probe(features, labels, num_classes: int | None = None, config: ProbeConfig | None = None) -> LinearProbe:
    """Fit a linear probe on frozen features and return it (in eval mode)."""
    cfg = config or ProbeConfig()
    y = check_labels(labels, "the probe's training set")
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    if x.ndim != 2 or len(x) != len(y):
        raise GenaugError(f"features of shape {tuple(x.shape)} do not match {len(y)} labels")
    c = int(num_classes or int(y.max()) + 1)
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    probe = LinearProbe(x.shape[1], c, cfg.batchnorm).to(dev)
    yt = torch.as_tensor(y)
    if cfg.solver == "ridge":
        _fit_ridge(probe, x, yt, c, cfg)
        return probe.eval()
    if cfg.solver not in ("sgd", "lars"):
        raise GenaugError(f"--solver {cfg.solver!r} is unknown: choose sgd, lars or ridge")
    params = list(probe.parameters())
    lr = cfg.effective_lr()
    if cfg.solver == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = LARS(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    n = len(x)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)  # drop the last partial batch (batch norm dislikes tiny batches)
    total = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    gen = torch.Generator().manual_seed(cfg.seed)
    xd, yd = x.to(dev), yt.to(dev)
    loss_fn = nn.CrossEntropyLoss()
    probe.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        for i in range(steps_per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            loss = loss_fn(probe(xd[idx]), yd[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return probe.eval()


@torch.no_grad()
def _fit_ridge(probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, c: int, cfg: ProbeConfig) -> None:
    """Closed-form least squares onto centred one-hot targets (the fast probe)."""
    x64 = x.double()
    if cfg.batchnorm:  # the non-affine batch norm becomes a fixed standardisation by the training set's statistics
        probe.bn.running_mean.copy_(x64.mean(0).float())
        probe.bn.running_var.copy_(x64.var(0).float())
        x64 = (x64 - x64.mean(0)) / torch.sqrt(x64.var(0) + probe.bn.eps)
    mu = x64.mean(0)
    xc = x64 - mu
    t = torch.nn.functional.one_hot(y, c).double()
    tmu = t.mean(0)
    d = xc.shape[1]
    lam = cfg.ridge * float((xc**2).sum()) / max(1, d)
    if d <= len(xc):
        w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(d, dtype=torch.float64), xc.T @ (t - tmu))
    else:  # dual form when there are more dimensions than samples
        k = xc @ xc.T
        w = xc.T @ torch.linalg.solve(k + lam * torch.eye(len(xc), dtype=torch.float64), t - tmu)
    b = tmu - mu @ w
    probe.fc.weight.copy_(w.T.float().to(probe.fc.weight.device))
    probe.fc.bias.copy_(b.float().to(probe.fc.bias.device))


def topk_hits(logits: torch.Tensor, labels, ks: tuple[int, ...] = (1, 5)) -> dict[str, np.ndarray]:
    """Per-image top-k hits (k capped at the number of classes): {"top1": bool array, ...}."""
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return {f"top{k}": (logits.topk(min(k, logits.shape[1]), dim=1).indices == y[:, None]).any(1).numpy() for k in ks}


def topk_accuracy(logits: torch.Tensor, labels, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies (k capped at the number of classes), as fractions in [0, 1]."""
    return {k: float(v.mean()) for k, v in topk_hits(logits, labels, ks).items()}


def linear_probe(train_x, train_y, val_x, val_y, config: ProbeConfig | None = None) -> tuple[dict, LinearProbe]:
    """Train a probe on (train_x, train_y), report top-1/top-5 on (val_x, val_y); return (results, probe)."""
    cfg = config or ProbeConfig()
    ytr = check_labels(train_y, "the training split")
    yva = check_labels(val_y, "the validation split")
    c = int(max(ytr.max(), yva.max())) + 1
    probe = train_probe(train_x, ytr, c, cfg)
    hits = topk_hits(probe.logits(val_x), yva)
    val = {k: float(v.mean()) for k, v in hits.items()}
    train = topk_accuracy(probe.logits(train_x), ytr)
    results = {
        "top1": val["top1"],
        "top5": val["top5"],
        "hits": hits,  # per val image, for bootstrap intervals (not written to JSON)
        "train_top1": train["top1"],
        "num_train": int(len(ytr)),
        "num_val": int(len(yva)),
        "num_classes": c,
        "feature_dim": int(np.asarray(train_x).shape[1]),
        "settings": cfg.resolved(),
    }
    return results, probe
