"""Probabilistic embeddings (Z-prob, H-prob) for Barlow Twins and VICReg, built by composition.

Each method is its deterministic base (`BarlowTwins`, `VICReg`) plus two parts it owns: a Gaussian head
(`z_head` on the projector output for Z-prob, `h_head` on the backbone output for H-prob) and a `ProbLoss` that wraps
the base method's loss with the KL term to a prior. The step, the representation and the uncertainty of each kind
are the plain functions below, which a class takes as its methods: one level of inheritance, no mixins.

Every class here has ``uncertainty(x) -> [B]``: the mean over dimensions of the embedding's sigma (Z-prob: of q(z|x)
on the projector output; H-prob: of q(h|x) on the backbone output). In the reference OOD protocol a higher score
means in-distribution. ``encode(x)`` is the backbone output (Z-prob) or the mean of q(h|x) (H-prob).
Steps upcast half-precision heads to float32 (`fp32`) and keep float64 as it is (the reference-step tests).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from genaug.ssl.losses import barlow_twins_loss, vicreg_terms
from genaug.ssl.methods.args import HProbKind, ProbKind
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, fp32, register_method
from genaug.ssl.methods.redundancy import BarlowTwins, VICReg
from genaug.ssl.prob import GaussianHead, ProbLoss, make_prior, rsample, uncertainty_score

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def vicreg_loss(a: torch.Tensor, b: torch.Tensor, coeffs: tuple[float, float, float]) -> torch.Tensor:
    """VICReg's weighted sum of invariance, variance and covariance terms (the base loss of its prob variants)."""
    t = vicreg_terms(a, b)
    return coeffs[0] * t["inv"] + coeffs[1] * t["var"] + coeffs[2] * t["cov"]


def prob_loss(base: LossFn, dim: int, kind: ProbKind) -> ProbLoss:
    """The base loss wrapped with beta * KL to the prior of the kind's arguments (samples, bounds checked there)."""
    return ProbLoss(base, make_prior(kind.prior, dim, kind.components), kind.beta)


def _finish(loss: torch.Tensor, parts: dict, log_var: torch.Tensor, features: torch.Tensor) -> dict:
    logs = {"ssl": parts["ssl"], "kl": parts["kl"], "sigma": uncertainty_score(log_var.detach()).mean()}
    return {"loss": loss, "logs": logs, "features": features.detach()}


# --- Z-prob: the Gaussian sits on the projector output; the SSL loss sees its samples -----------------------------


def attach_zprob(m: SSLMethod, base: LossFn) -> None:
    """Give method `m` its Z-prob parts: `z_head` on the projector output and the wrapped loss."""
    dim = m.args.proj_out
    m.z_head = GaussianHead(dim, dim)
    m.prob_loss = prob_loss(base, dim, m.args)
    m.samples = m.args.samples


def zprob_step(self: SSLMethod, batch: dict, progress: Progress) -> dict:
    """One Z-prob step: S samples of q(z|x) per view go through the base loss; KL of each view to the prior."""
    h1, h2 = each_view(self.backbone, batch["views"][:2])
    q1 = tuple(fp32(t) for t in self.z_head(self.projector(h1)))
    q2 = tuple(fp32(t) for t in self.z_head(self.projector(h2)))
    s1, s2 = rsample(*q1, self.samples), rsample(*q2, self.samples)
    loss, parts = self.prob_loss(s1, s2, q1, q2)
    return _finish(loss, parts, q1[1], h1)


@torch.no_grad()
def zprob_uncertainty(self: SSLMethod, x: torch.Tensor) -> torch.Tensor:
    """[B] mean over dimensions of sigma of q(z|x) (projector space); higher = in-distribution."""
    return uncertainty_score(self.z_head(self.projector(self.backbone(x)))[1].float())


# --- H-prob: the Gaussian sits on the backbone output; each sample goes through the projector --------------------


def attach_hprob(m: SSLMethod, base: LossFn) -> None:
    """Give method `m` its H-prob parts: `h_head` on the backbone output (a new projector if its width changes)."""
    a = m.args
    dim = a.latent_dim or m.feat_dim
    m.h_head = GaussianHead(m.feat_dim, dim)
    if dim != m.feat_dim:
        m.projector = a.projector(dim, a.proj_layers, bn=True)
    m.feat_dim = dim
    m.prob_loss = prob_loss(base, dim, a)
    m.samples = a.samples


def _project_samples(projector: nn.Module, s: torch.Tensor) -> torch.Tensor:
    """Projector applied to each of the S samples [S, B, D] separately (one BN batch per sample)."""
    return torch.stack([fp32(projector(x)) for x in s])


def hprob_step(self: SSLMethod, batch: dict, progress: Progress) -> dict:
    """One H-prob step: S samples of q(h|x) per view, each projected, through the base loss; KL to the prior."""
    h1, h2 = each_view(self.backbone, batch["views"][:2])
    q1 = tuple(fp32(t) for t in self.h_head(h1))
    q2 = tuple(fp32(t) for t in self.h_head(h2))
    s1, s2 = rsample(*q1, self.samples), rsample(*q2, self.samples)
    y1, y2 = _project_samples(self.projector, s1), _project_samples(self.projector, s2)
    loss, parts = self.prob_loss(s1, s2, q1, q2, y1, y2)
    return _finish(loss, parts, q1[1], q1[0])  # the probe sees what is evaluated: the mean of q(h|x)


@torch.no_grad()
def hprob_encode(self: SSLMethod, x: torch.Tensor) -> torch.Tensor:
    """The mean of q(h|x): the expectation the sample mean estimates, deterministic per input.

    (A mean of S drawn samples would depend on the row and the batch size through the noise it draws.)"""
    return self.h_head(self.backbone(x))[0].float()


@torch.no_grad()
def hprob_uncertainty(self: SSLMethod, x: torch.Tensor) -> torch.Tensor:
    """[B] mean over dimensions of sigma of q(h|x) (representation space); higher = in-distribution."""
    return uncertainty_score(self.h_head(self.backbone(x))[1].float())


# --- the four registered methods: a base method plus the arguments and parts of one kind -------------------------

#: what each kind adds to its base method: its arguments (a block of ssl/methods/args.py), its parts and its steps
KINDS = {
    "z": (ProbKind, attach_zprob, {"training_step": zprob_step, "uncertainty": zprob_uncertainty}),
    "h": (
        HProbKind,
        attach_hprob,
        {"training_step": hprob_step, "encode": hprob_encode, "uncertainty": hprob_uncertainty},
    ),
}


def base_loss(m: SSLMethod) -> LossFn:
    """The deterministic loss of a prob method's base (Barlow Twins or VICReg), with the method's coefficients."""
    if isinstance(m, VICReg):
        return partial(vicreg_loss, coeffs=m.coeffs)
    return partial(barlow_twins_loss, lambd=m.lambd)


def prob_method(name: str, title: str, base: type[SSLMethod], kind: str, beta: float, doc: str) -> type[SSLMethod]:
    """Register `name` (class `title`): `base` with the Gaussian head and loss of `kind` (z or h) and published `beta`.

    Its arguments are one model: the base method's `Args` plus the kind's block, with the published beta."""
    block, attach, parts = KINDS[kind]

    class Args(base.Args, block):
        __doc__ = f"The arguments of {name}: those of {base.name} and of its kind."
        published = {"beta": beta}

    Args.__qualname__ = f"{title}.Args"

    def __init__(self: SSLMethod, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        base.__init__(self, backbone, feat_dim, **method_args)  # checks method_args against the whole model
        attach(self, base_loss(self))

    attrs = {"__init__": __init__, "Args": Args, "__doc__": doc, "__module__": __name__, "__qualname__": title,
             "uncertainty_high_is_in_distribution": True, **parts}  # fmt: skip
    return register_method(name)(type(title, (base,), attrs))


# the reference OOD protocol of all four: a higher sigma means in-distribution
BarlowZProb, BarlowHProb, VICRegZProb, VICRegHProb = (
    prob_method(name, title, base, kind, beta, f"{what} with stochastic {where} outputs ({kind.upper()}-prob); "
                f"published beta {beta:g}.")
    for name, title, base, what, kind, where, beta in (
        ("barlow-zprob", "BarlowZProb", BarlowTwins, "Barlow Twins", "z", "projector", 1e-2),
        ("barlow-hprob", "BarlowHProb", BarlowTwins, "Barlow Twins", "h", "backbone", 1e-3),
        ("vicreg-zprob", "VICRegZProb", VICReg, "VICReg", "z", "projector", 1e-3),
        ("vicreg-hprob", "VICRegHProb", VICReg, "VICReg", "h", "backbone", 1e-4),
    )
)  # fmt: skip
