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

import inspect
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from genaug.core.errors import GenaugError
from genaug.ssl.losses import barlow_twins_loss, vicreg_terms
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, fp32, mlp, register_method
from genaug.ssl.methods.redundancy import BarlowTwins, VICReg
from genaug.ssl.prob import GaussianHead, ProbLoss, make_prior, rsample, uncertainty_score

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def vicreg_loss(a: torch.Tensor, b: torch.Tensor, coeffs: tuple[float, float, float]) -> torch.Tensor:
    """VICReg's weighted sum of invariance, variance and covariance terms (the base loss of its prob variants)."""
    t = vicreg_terms(a, b)
    return coeffs[0] * t["inv"] + coeffs[1] * t["var"] + coeffs[2] * t["cov"]


def prob_loss(base: LossFn, dim: int, samples: int, beta: float, prior: str, components: int) -> ProbLoss:
    """The base loss wrapped with beta * KL to the prior, after checking the sample count."""
    if samples < 1:
        raise GenaugError(f"method_args.samples must be >= 1 (got {samples}): fix the recipe")
    return ProbLoss(base, make_prior(prior, dim, components), beta)


def _finish(loss: torch.Tensor, parts: dict, log_var: torch.Tensor, features: torch.Tensor) -> dict:
    logs = {"ssl": parts["ssl"], "kl": parts["kl"], "sigma": uncertainty_score(log_var.detach()).mean()}
    return {"loss": loss, "logs": logs, "features": features.detach()}


# --- Z-prob: the Gaussian sits on the projector output; the SSL loss sees its samples -----------------------------


def attach_zprob(m: SSLMethod, dim: int, base: LossFn, samples: int, beta: float, prior: str, components: int) -> None:
    """Give method `m` its Z-prob parts: `z_head` on the projector output and the wrapped loss."""
    m.z_head = GaussianHead(dim, dim)
    m.prob_loss = prob_loss(base, dim, samples, beta, prior, components)
    m.samples = int(samples)


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


def attach_hprob(
    m: SSLMethod, latent_dim: int | None, proj: tuple, base: LossFn, samples: int, beta: float, prior: str, comps: int
) -> None:
    """Give method `m` its H-prob parts: `h_head` on the backbone output (a new projector if its width changes)."""
    dim = int(latent_dim or m.feat_dim)
    m.h_head = GaussianHead(m.feat_dim, dim)
    if dim != m.feat_dim:
        m.projector = mlp(dim, proj[0], proj[1], proj[2], bn=True)
    m.feat_dim = dim
    m.prob_loss = prob_loss(base, dim, samples, beta, prior, comps)
    m.samples = int(samples)


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

#: the arguments each kind adds to its base method's (the base's own are taken from its signature, not repeated)
KIND_ARGS = {
    "z": (("samples", int, 12), ("prior", str, "normal"), ("components", int, 10)),
    "h": (("samples", int, 12), ("prior", str, "normal"), ("components", int, 10), ("latent_dim", "int | None", None)),
}
KIND_PARTS = {
    "z": {"training_step": zprob_step, "uncertainty": zprob_uncertainty},
    "h": {"training_step": hprob_step, "encode": hprob_encode, "uncertainty": hprob_uncertainty},
}


def base_loss(m: SSLMethod) -> LossFn:
    """The deterministic loss of a prob method's base (Barlow Twins or VICReg), with the method's coefficients."""
    if isinstance(m, VICReg):
        return partial(vicreg_loss, coeffs=m.coeffs)
    return partial(barlow_twins_loss, lambd=m.lambd)


def prob_method(name: str, title: str, base: type[SSLMethod], kind: str, beta: float, doc: str) -> type[SSLMethod]:
    """Register `name` (class `title`): `base` with the Gaussian head and loss of `kind` (z or h) and published `beta`.

    Its constructor takes the base's arguments (from the base's own signature) then samples, beta, prior, components
    (and latent_dim for H-prob), so method_args are checked against one declaration of each argument."""
    own = inspect.signature(base.__init__)
    P = inspect.Parameter
    extra = [P(n, P.POSITIONAL_OR_KEYWORD, default=d, annotation=t) for n, t, d in KIND_ARGS[kind]]
    extra.insert(1, P("beta", P.POSITIONAL_OR_KEYWORD, default=beta, annotation=float))
    sig = own.replace(parameters=[*own.parameters.values(), *extra])
    base_names = [n for n in own.parameters if n != "self"]

    def __init__(self: SSLMethod, *args: object, **kwargs: object) -> None:
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        base.__init__(self, **{n: a[n] for n in base_names})
        loss = base_loss(self)
        if kind == "z":
            attach_zprob(self, a["proj_out"], loss, a["samples"], a["beta"], a["prior"], a["components"])
        else:
            proj = (a["proj_hidden"], a["proj_out"], a["proj_layers"])
            attach_hprob(self, a["latent_dim"], proj, loss, a["samples"], a["beta"], a["prior"], a["components"])

    __init__.__signature__ = sig  # type: ignore[attr-defined]
    __init__.__annotations__ = {p.name: p.annotation for p in sig.parameters.values() if p.name != "self"}
    attrs = {"__init__": __init__, "__doc__": doc, "__module__": __name__, "__qualname__": title,
             "uncertainty_high_is_in_distribution": True, **KIND_PARTS[kind]}  # fmt: skip
    return register_method(name)(type(title, (base,), attrs))


# the reference OOD protocol of all four: a higher sigma means in-distribution
BarlowZProb = prob_method(
    "barlow-zprob", "BarlowZProb", BarlowTwins, "z", 1e-2,
    "Barlow Twins with stochastic projector outputs (Z-prob); published beta 1e-2.",
)  # fmt: skip
BarlowHProb = prob_method(
    "barlow-hprob", "BarlowHProb", BarlowTwins, "h", 1e-3,
    "Barlow Twins with stochastic backbone outputs (H-prob); published beta 1e-3.",
)  # fmt: skip
VICRegZProb = prob_method(
    "vicreg-zprob", "VICRegZProb", VICReg, "z", 1e-3,
    "VICReg with stochastic projector outputs (Z-prob); published beta 1e-3.",
)  # fmt: skip
VICRegHProb = prob_method(
    "vicreg-hprob", "VICRegHProb", VICReg, "h", 1e-4,
    "VICReg with stochastic backbone outputs (H-prob); published beta 1e-4.",
)  # fmt: skip
