"""Stochastic embeddings: Gaussian head, priors, Monte-Carlo KL and the probabilistic SSL loss wrapper.

Follows "Unveiling the Potential of Probabilistic Embeddings in Self-Supervised Learning" (2023): a linear head maps
a deterministic vector to the mean and the clamped log-variance of a diagonal Gaussian; S reparameterised samples
per view are drawn; the loss is the mean over samples of the base SSL loss on the paired samples of the two views,
plus beta times the mean over the two views of a Monte-Carlo estimate of KL(q || prior).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from genaug.core.errors import GenaugError

# Clamps of the reference protocol: sigma in [0.01, 5], mu in [-20, 20].
LOG_VAR_MIN = 2.0 * math.log(0.01)
LOG_VAR_MAX = 2.0 * math.log(5.0)
MU_MAX = 20.0
LOG_2PI = math.log(2.0 * math.pi)


def log_normal_diag(x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(log_var)), broadcasting over leading sample dimensions."""
    return -0.5 * (LOG_2PI + log_var + (x - mu) ** 2 * torch.exp(-log_var))


class GaussianHead(nn.Module):
    """Linear map of a vector to (mean, clamped log-variance) of a diagonal Gaussian."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc_mu = nn.Linear(in_dim, out_dim)
        self.fc_log_var = nn.Linear(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, log_var), each [B, out_dim], clamped to the reference ranges."""
        mu = self.fc_mu(h).clamp(-MU_MAX, MU_MAX)
        log_var = self.fc_log_var(h).clamp(LOG_VAR_MIN, LOG_VAR_MAX)
        return mu, log_var


def rsample(mu: torch.Tensor, log_var: torch.Tensor, samples: int, generator: torch.Generator | None = None):
    """Draw `samples` reparameterised samples: a tensor [S, *mu.shape], differentiable in mu and log_var."""
    if samples < 1:
        raise GenaugError(f"prob.samples must be >= 1 (got {samples}): set it in the recipe or with --set")
    eps = torch.randn((samples, *mu.shape), dtype=mu.dtype, device=mu.device, generator=generator)
    return mu.unsqueeze(0) + eps * torch.exp(0.5 * log_var).unsqueeze(0)


class StandardNormalPrior(nn.Module):
    """The N(0, I) prior."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density, same shape as z."""
        return -0.5 * (LOG_2PI + z**2)


class MixturePrior(nn.Module):
    """A learnable per-dimension mixture of K Gaussians: p(z) = prod_d sum_k pi_dk N(z_d; m_dk, s_dk^2)."""

    def __init__(self, dim: int, components: int = 10) -> None:
        super().__init__()
        if components < 1:
            raise GenaugError(f"prob.components must be >= 1 (got {components})")
        self.dim, self.components = dim, components
        self.logits = nn.Parameter(torch.zeros(dim, components))
        means = torch.linspace(-2.0, 2.0, components) if components > 1 else torch.zeros(1)
        self.means = nn.Parameter(means.repeat(dim, 1))
        self.log_vars = nn.Parameter(torch.zeros(dim, components))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Elementwise (per dimension) log-density, same shape as z ([..., dim])."""
        log_w = torch.log_softmax(self.logits, dim=-1)  # [D, K]
        lv = self.log_vars.clamp(LOG_VAR_MIN, LOG_VAR_MAX)
        comp = log_normal_diag(z.unsqueeze(-1), self.means, lv)  # [..., D, K]
        return torch.logsumexp(comp + log_w, dim=-1)


def make_prior(name: str, dim: int, components: int = 10) -> nn.Module:
    """Build a prior by recipe name: `normal` (N(0, I)) or `mog` (learnable per-dimension mixture)."""
    if name in ("normal", "standard", "gaussian"):
        return StandardNormalPrior(dim)
    if name in ("mog", "mixture"):
        return MixturePrior(dim, components)
    raise GenaugError(f"unknown prob.prior {name!r}: choose normal or mog")


def kl_mc(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, prior: nn.Module) -> torch.Tensor:
    """Monte-Carlo KL(q || prior) from samples z [S, B, D] of q: mean over samples and batch, summed over dims."""
    log_q = log_normal_diag(z, mu.unsqueeze(0), log_var.unsqueeze(0))
    return (log_q - prior.log_prob(z)).sum(-1).mean()


def kl_normal_closed(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu, diag exp(log_var)) || N(0, I)), summed over dims and averaged over the batch."""
    return (0.5 * (mu**2 + torch.exp(log_var) - 1.0 - log_var)).sum(-1).mean()


def mc_pair_loss(base_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z1: torch.Tensor, z2: torch.Tensor):
    """Mean over the S samples of base_loss(z1[s], z2[s]) for paired samples [S, B, D] of the two views."""
    return torch.stack([base_loss(a, b) for a, b in zip(z1, z2, strict=True)]).mean()


def uncertainty_score(log_var: torch.Tensor) -> torch.Tensor:
    """Per-sample uncertainty: mean over dimensions of sigma ([B, D] -> [B]); higher means in-distribution."""
    return torch.exp(0.5 * log_var).mean(-1)


class ProbLoss(nn.Module):
    """Loss = mean_s base(z1_s, z2_s) + beta * (KL(q1 || prior) + KL(q2 || prior)) / 2, with MC KL estimates."""

    def __init__(self, base_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], prior: nn.Module, beta: float):
        super().__init__()
        self.base_loss = base_loss
        self.prior = prior
        self.beta = float(beta)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, q1: tuple, q2: tuple, y1=None, y2=None):
        """Return (total, {"ssl", "kl"}) for samples s1, s2 [S, B, D] of q1, q2 = (mu, log_var).

        The base loss sees y1, y2 ([S, B, E]: the samples mapped by the projector, for H-prob) or, by default, the
        samples themselves (Z-prob).
        """
        ssl = mc_pair_loss(self.base_loss, s1 if y1 is None else y1, s2 if y2 is None else y2)
        kl = 0.5 * (kl_mc(s1, *q1, self.prior) + kl_mc(s2, *q2, self.prior))
        return ssl + self.beta * kl, {"ssl": ssl.detach(), "kl": kl.detach()}
