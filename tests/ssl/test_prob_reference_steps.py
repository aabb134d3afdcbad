"""Reference steps for the probabilistic methods (Z-prob / H-prob over Barlow Twins and VICReg).

Written from the paper's loss ("Unveiling the Potential of Probabilistic Embeddings in Self-Supervised Learning",
2023): a linear Gaussian head gives (mu, clamped log-variance); S reparameterised samples per view; the loss is the
mean over samples of the base loss on paired samples plus beta times the mean of the two views' Monte-Carlo KL to
N(0, I). Z-prob puts the head on the projector output, H-prob on the backbone output (each sample then goes through
the projector on its own). The noise is the same because both sides seed the global RNG before each step and draw
view 1's samples, then view 2's. Six float64 steps through the real Trainer, compared step for step.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_reference_steps import Ref, TinyNet, batches, close, linear_bn_mlp, optim_cfg, run_genaug, run_reference

from genaug.ssl.methods import METHODS

S, BETA, SEED = 3, 0.1, 1000
ARGS = dict(proj_hidden=10, proj_out=8, proj_layers=3, samples=S, beta=BETA)


def barlow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """facebookresearch/barlowtwins: BN(affine=False) cross-correlation / N, lambda 0.0051."""
    c = F.batch_norm(a, None, None, training=True, eps=1e-5).T @ F.batch_norm(b, None, None, training=True, eps=1e-5)
    c = c / a.shape[0]
    on = (torch.diagonal(c) - 1).pow(2).sum()
    return on + 0.0051 * (c.pow(2).sum() - torch.diagonal(c).pow(2).sum())


def vicreg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """facebookresearch/vicreg main_vicreg.py: 25 repr + 25 std + 1 cov."""
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    std = F.relu(1 - torch.sqrt(x.var(0) + 1e-4)).mean() / 2 + F.relu(1 - torch.sqrt(y.var(0) + 1e-4)).mean() / 2
    n, d = x.shape
    eye = torch.eye(d, dtype=torch.bool)
    cov = sum(((m.T @ m / (n - 1))[~eye]).pow(2).sum() / d for m in (x, y))
    return 25 * repr_loss + 25 * std + cov


def gaussian(head: torch.nn.ModuleList, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu clamped to +-20, log-variance clamped to sigma in [0.01, 5])."""
    return head[0](v).clamp(-20, 20), head[1](v).clamp(2 * math.log(0.01), 2 * math.log(5.0))


def kl(s: torch.Tensor, mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo KL(q || N(0, I)): mean over samples and batch of sum_d [log q(s) - log p(s)]."""
    log_q = -0.5 * (math.log(2 * math.pi) + lv + (s - mu) ** 2 / lv.exp())
    log_p = -0.5 * (math.log(2 * math.pi) + s**2)
    return (log_q - log_p).sum(-1).mean()


class RefProb(Ref):
    """One probabilistic method: where the head sits (`z` or `h`) and which base loss pairs the samples."""

    def __init__(self, gen: torch.nn.Module, where: str, base) -> None:
        super().__init__()
        self.where, self.base = where, base
        self.bb, self.proj = TinyNet(), linear_bn_mlp([6, 10, 10, 8], False, True)
        dim = 8 if where == "z" else 6
        self.head = torch.nn.ModuleList([torch.nn.Linear(dim, dim), torch.nn.Linear(dim, dim)])
        self.link(gen, [("backbone", self.bb, (), ()), ("projector", self.proj, (), ()),
                        (f"{where}_head", self.head, (), ())])  # fmt: skip

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        torch.manual_seed(SEED + k)
        h = [self.bb(v) for v in views[:2]]
        q = [gaussian(self.head, self.proj(x) if self.where == "z" else x) for x in h]
        s = [mu + torch.randn((S, *mu.shape), dtype=mu.dtype) * (0.5 * lv).exp() for mu, lv in q]
        if self.where == "z":
            ssl = torch.stack([self.base(s[0][j], s[1][j]) for j in range(S)]).mean()
        else:
            ssl = torch.stack([self.base(self.proj(s[0][j]), self.proj(s[1][j])) for j in range(S)]).mean()
        return ssl + BETA * 0.5 * (kl(s[0], *q[0]) + kl(s[1], *q[1]))


@pytest.mark.parametrize(
    "name,where,base",
    [("barlow-zprob", "z", barlow), ("barlow-hprob", "h", barlow),
     ("vicreg-zprob", "z", vicreg), ("vicreg-hprob", "h", vicreg)],
)  # fmt: skip
def test_prob_method_matches_reference(name: str, where: str, base, tmp_path: Path) -> None:
    """Loss, every gradient and the state after each step equal the reference, step for step."""
    torch.manual_seed(0)
    gen = METHODS[name](TinyNet(), 6, **ARGS).double()
    ref = RefProb(gen, where, base).double()
    count = [0]

    def seed(module, args) -> None:
        torch.manual_seed(SEED + count[0])
        count[0] += 1

    gen.register_forward_pre_hook(seed)
    data = batches([8, 8])
    got = run_genaug(gen, data, optim_cfg(ref), tmp_path)
    want = run_reference(ref, data)
    assert len(got) == len(want) == len(data)
    for k, (g, r) in enumerate(zip(got, want, strict=True)):
        close(g["loss"][0], r["loss"], f"step {k} loss")
        for n, rg in r["grads"].items():
            assert g["grads"][n] is not None, f"step {k} {n}: no gradient in genaug"
            close(g["grads"][n], rg, f"step {k} grad {n}")
        for n, t in r["state"].items():
            close(g["state"][n], t, f"after step {k}: {n}")
