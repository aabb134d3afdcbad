"""Probabilistic SSL on scikit-learn digits (CPU, minutes): linear probe vs random init, and OOD AUROC of the score.

Each method (a Z-prob, an H-prob, SimVAE) is built from its shipped recipe through the trainer's registry, shrunk to
a tiny CPU model, and trained by the trainer's loop on two augmented views (random affine: shift, scale, rotation)
of the 16 px digits of a train split. Then, on frozen features (method.encode): a logistic-regression probe on the
train split scored on the held-out split, against the same model at its random init; and the AUROC of
method.uncertainty (mean sigma, higher = in-distribution) separating the held-out digits from two OOD sets made
here: uniform noise and inverted digits (1 - x).

    python scripts/digits_prob.py [--steps 100] [--methods barlow-zprob,vicreg-hprob,simvae]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from genaug.core.recipes import load_recipe
from genaug.ssl.methods import build_method
from genaug.train.loop import LoopConfig, Trainer
from genaug.train.optim import WarmupCosine, build_optimizer, param_groups

SIZE = 16  # the digits are 8 px; 16 px keeps the run to minutes on a shared 2-core CPU


def digits() -> tuple[torch.Tensor, np.ndarray]:
    """The 1797 digits as [N, 3, SIZE, SIZE] floats in [0, 1], and their labels."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=SIZE, mode="bilinear", align_corners=False).clamp(0, 1)
    return x.repeat(1, 3, 1, 1), d.target


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random affine view per image: rotation +-15 deg, scale 0.85-1.15, shift +-3 px."""
    b = x.shape[0]
    ang = (torch.rand(b, generator=g) - 0.5) * math.radians(30)
    sc = 0.85 + 0.3 * torch.rand(b, generator=g)
    sh = (torch.rand(b, 2, generator=g) - 0.5) * (6 / SIZE) * 2
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1), torch.stack([sin, cos, sh[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros").clamp(0, 1)


class ViewLoader:
    """Epochs of shuffled batches of two augmented views, deterministic in (seed, epoch)."""

    def __init__(self, x: torch.Tensor, batch: int, seed: int = 0) -> None:
        self.x, self.batch, self.seed, self.epoch = x, batch, seed, 0
        self.steps_per_epoch = len(x) // batch

    def set_epoch(self, epoch: int) -> None:  # noqa: D102
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        perm = torch.randperm(len(self.x), generator=g)
        for i in range(self.steps_per_epoch):
            xb = self.x[perm[i * self.batch : (i + 1) * self.batch]]
            yield {"views": [augment(xb, g), augment(xb, g)]}


def tiny_recipe(name: str) -> dict:
    """The shipped recipe with a CPU-sized model."""
    r = load_recipe("trainers", name)
    r["backbone"] = {"name": "tiny", "width": 8}
    r.setdefault("data", {})["image_size"] = SIZE
    args = dict(r.get("method_args") or {})
    if name == "simvae":
        args.update(image_size=SIZE, z_dim=16, width=16, hidden=64)
    else:
        args.update(proj_hidden=128, proj_out=64, samples=2)
    r["method_args"] = args
    return r


@torch.no_grad()
def features(method, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features and uncertainty scores, in eval mode, in batches."""
    method.eval()
    f = torch.cat([method.encode(x[i : i + 256]) for i in range(0, len(x), 256)])
    u = torch.cat([method.uncertainty(x[i : i + 256]) for i in range(0, len(x), 256)])
    return f.numpy(), u.numpy()


def evaluate(method, xtr, ytr, xte, yte, ood: dict[str, torch.Tensor]) -> dict:
    """Linear-probe accuracy on held-out digits and AUROC (in-distribution = positive) of the score per OOD set."""
    ftr, _ = features(method, xtr)
    fte, ute = features(method, xte)
    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(max_iter=3000).fit(sc.transform(ftr), ytr)
    out = {"acc": float((clf.predict(sc.transform(fte)) == yte).mean())}
    for name, xo in ood.items():
        _, uo = features(method, xo)
        labels = np.r_[np.ones(len(ute)), np.zeros(len(uo))]
        out[name] = float(roc_auc_score(labels, np.r_[ute, uo]))
    return out


def main() -> None:
    """Train each method, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--methods", default="barlow-zprob,vicreg-hprob,simvae")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x, y = digits()
    g = torch.Generator().manual_seed(1234)
    perm = torch.randperm(len(x), generator=g).numpy()
    tr, te = perm[:1200], perm[1200:]
    xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    ood = {"noise": torch.rand(len(xte), 3, SIZE, SIZE, generator=g), "inverted": 1.0 - xte}
    rows = []
    for name in a.methods.split(","):
        torch.manual_seed(a.seed)
        rec = tiny_recipe(name)
        base = evaluate(build_method(rec), xtr, ytr, xte, yte, ood)
        torch.manual_seed(a.seed)
        method = build_method(rec)
        loader = ViewLoader(xtr, a.batch, a.seed)

        def opt(module):
            return build_optimizer(param_groups(module.named_parameters(), a.lr, 1e-5, True), {"name": "adamw"})

        cfg = LoopConfig(total_steps=a.steps, steps_per_epoch=loader.steps_per_epoch, log_every=50,
                         progress_bar=False, tensorboard=False)  # fmt: skip
        with tempfile.TemporaryDirectory() as run_dir:
            t0 = time.perf_counter()
            trainer = Trainer(method, loader, opt, lambda o: WarmupCosine(o, a.steps, a.steps // 10), cfg,
                              Path(run_dir))  # fmt: skip
            last = trainer.fit()
            secs = time.perf_counter() - t0
        got = evaluate(trainer.module.method, xtr, ytr, xte, yte, ood)
        rows.append((name, base, got, secs, last.get("loss", float("nan"))))
        print(f"{name}: trained {a.steps} steps in {secs:.0f} s, final loss {last.get('loss', float('nan')):.3f}")
    print()
    print("| method | random-init probe acc | trained probe acc | ratio | AUROC noise (init -> trained) "
          "| AUROC inverted (init -> trained) | train s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, base, got, secs, _ in rows:
        print(
            f"| {name} | {base['acc']:.3f} | {got['acc']:.3f} | {got['acc'] / base['acc']:.2f}x | "
            f"{base['noise']:.3f} -> {got['noise']:.3f} | {base['inverted']:.3f} -> {got['inverted']:.3f} "
            f"| {secs:.0f} |"
        )


if __name__ == "__main__":
    main()
