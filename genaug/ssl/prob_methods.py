"""Probabilistic SSL methods of the trainer's registry: Barlow/VICReg with Z-prob or H-prob embeddings, and SimVAE.

Every class here adds, to the SSLMethod interface, ``uncertainty(x) -> [B]``: the mean over dimensions of the
embedding's sigma (Z-prob: of q(z|x) on the projector output; H-prob: of q(h|x) on the backbone output; SimVAE:
of q(z|x)). In the reference OOD protocol a higher score means in-distribution. ``encode(x)`` is the representation
for evaluation: the backbone output (Z-prob), the mean of S samples of q(h|x) drawn with a fixed seed (H-prob), the
posterior mean of q(z|x) (SimVAE).
"""

from __future__ import annotations

import torch
from torch import nn

from genaug.core.errors import GenaugError
from genaug.ssl.losses import barlow_twins_loss, vicreg_terms
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, mlp, register_method
from genaug.ssl.methods.redundancy import BarlowTwins, VICReg
from genaug.ssl.prob import GaussianHead, ProbLoss, make_prior, rsample, uncertainty_score
from genaug.ssl.simvae import SimVAE


class _ProbBase:
    """Shared settings and the uncertainty API of the stochastic-embedding methods."""

    #: direction of the uncertainty score for OOD detection (reference protocol: higher sigma = in-distribution)
    uncertainty_high_is_in_distribution: bool = True

    samples: int
    prob_loss: ProbLoss

    def _setup_prob(self, dim: int, samples: int, beta: float, prior: str, components: int) -> None:
        if samples < 1:
            raise GenaugError(f"method_args.samples must be >= 1 (got {samples}): fix the recipe")
        self.samples = int(samples)
        self.prob_loss = ProbLoss(self._base_loss, make_prior(prior, dim, components), beta)  # type: ignore[attr-defined]

    def _finish(self, loss: torch.Tensor, parts: dict, log_var: torch.Tensor, features: torch.Tensor) -> dict:
        logs = {"ssl": parts["ssl"], "kl": parts["kl"], "sigma": uncertainty_score(log_var.detach()).mean()}
        return {"loss": loss, "logs": logs, "features": features.detach()}


class _ZProb(_ProbBase):
    """Z-prob: a Gaussian head on the projector output; the SSL loss sees its samples."""

    def _init_z(self, proj_out: int, samples: int, beta: float, prior: str, components: int) -> None:
        self.z_head = GaussianHead(proj_out, proj_out)
        self._setup_prob(proj_out, samples, beta, prior, components)

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, h2 = each_view(self.backbone, batch["views"][:2])  # type: ignore[attr-defined]
        q1 = tuple(t.float() for t in self.z_head(self.projector(h1)))  # type: ignore[attr-defined]
        q2 = tuple(t.float() for t in self.z_head(self.projector(h2)))  # type: ignore[attr-defined]
        s1, s2 = rsample(*q1, self.samples), rsample(*q2, self.samples)
        loss, parts = self.prob_loss(s1, s2, q1, q2)
        return self._finish(loss, parts, q1[1], h1)

    @torch.no_grad()
    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """[B] mean over dimensions of sigma of q(z|x) (projector space); higher = in-distribution."""
        return uncertainty_score(self.z_head(self.projector(self.backbone(x)))[1].float())  # type: ignore[attr-defined]


class _HProb(_ProbBase):
    """H-prob: a Gaussian head on the backbone output; each sample goes through the projector, then the SSL loss."""

    def _init_h(self, latent_dim: int | None, proj: tuple, samples: int, beta: float, prior: str, comps: int) -> None:
        dim = int(latent_dim or self.feat_dim)  # type: ignore[attr-defined]
        self.h_head = GaussianHead(self.feat_dim, dim)  # type: ignore[attr-defined]
        if dim != self.feat_dim:  # type: ignore[attr-defined]
            self.projector = mlp(dim, proj[0], proj[1], proj[2], bn=True)
        self.feat_dim = dim
        self._setup_prob(dim, samples, beta, prior, comps)

    def _project(self, s: torch.Tensor) -> torch.Tensor:
        """Projector applied to each of the S samples [S, B, D] separately (one BN batch per sample)."""
        return torch.stack([self.projector(x).float() for x in s])  # type: ignore[attr-defined]

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, h2 = each_view(self.backbone, batch["views"][:2])  # type: ignore[attr-defined]
        q1 = tuple(t.float() for t in self.h_head(h1))
        q2 = tuple(t.float() for t in self.h_head(h2))
        s1, s2 = rsample(*q1, self.samples), rsample(*q2, self.samples)
        loss, parts = self.prob_loss(s1, s2, q1, q2, self._project(s1), self._project(s2))
        return self._finish(loss, parts, q1[1], q1[0])  # the probe sees what is evaluated: the mean of q(h|x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of q(h|x): the expectation the sample mean estimates, deterministic per input.

        (A mean of S drawn samples would depend on the row and the batch size through the noise it draws.)"""
        return self.h_head(self.backbone(x))[0].float()  # type: ignore[attr-defined]

    @torch.no_grad()
    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """[B] mean over dimensions of sigma of q(h|x) (representation space); higher = in-distribution."""
        return uncertainty_score(self.h_head(self.backbone(x))[1].float())  # type: ignore[attr-defined]


def _prob_kwargs(samples: int, beta: float, prior: str, components: int) -> dict:
    return {"samples": samples, "beta": beta, "prior": prior, "components": components}


@register_method("barlow-zprob")
class BarlowZProb(_ZProb, BarlowTwins):
    """Barlow Twins with stochastic projector outputs (Z-prob); published beta 1e-2."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 8192,
        proj_out: int = 8192,
        proj_layers: int = 3,
        lambd: float = 0.0051,
        samples: int = 12,
        beta: float = 1e-2,
        prior: str = "normal",
        components: int = 10,
    ) -> None:
        BarlowTwins.__init__(self, backbone, feat_dim, proj_hidden, proj_out, proj_layers, lambd)
        self._init_z(proj_out, **_prob_kwargs(samples, beta, prior, components))

    def _base_loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(a, b, self.lambd)


@register_method("barlow-hprob")
class BarlowHProb(_HProb, BarlowTwins):
    """Barlow Twins with stochastic backbone outputs (H-prob); published beta 1e-3."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 8192,
        proj_out: int = 8192,
        proj_layers: int = 3,
        lambd: float = 0.0051,
        samples: int = 12,
        beta: float = 1e-3,
        prior: str = "normal",
        components: int = 10,
        latent_dim: int | None = None,
    ) -> None:
        BarlowTwins.__init__(self, backbone, feat_dim, proj_hidden, proj_out, proj_layers, lambd)
        self._init_h(latent_dim, (proj_hidden, proj_out, proj_layers), samples, beta, prior, components)

    def _base_loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(a, b, self.lambd)


class _VICRegLoss:
    coeffs: tuple[float, float, float]

    def _base_loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        t = vicreg_terms(a, b)
        return self.coeffs[0] * t["inv"] + self.coeffs[1] * t["var"] + self.coeffs[2] * t["cov"]


@register_method("vicreg-zprob")
class VICRegZProb(_VICRegLoss, _ZProb, VICReg):
    """VICReg with stochastic projector outputs (Z-prob); published beta 1e-3."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 8192,
        proj_out: int = 8192,
        proj_layers: int = 3,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        samples: int = 12,
        beta: float = 1e-3,
        prior: str = "normal",
        components: int = 10,
    ) -> None:
        VICReg.__init__(self, backbone, feat_dim, proj_hidden, proj_out, proj_layers, sim_coeff, std_coeff, cov_coeff)
        self._init_z(proj_out, **_prob_kwargs(samples, beta, prior, components))


@register_method("vicreg-hprob")
class VICRegHProb(_VICRegLoss, _HProb, VICReg):
    """VICReg with stochastic backbone outputs (H-prob); published beta 1e-4."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 8192,
        proj_out: int = 8192,
        proj_layers: int = 3,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        samples: int = 12,
        beta: float = 1e-4,
        prior: str = "normal",
        components: int = 10,
        latent_dim: int | None = None,
    ) -> None:
        VICReg.__init__(self, backbone, feat_dim, proj_hidden, proj_out, proj_layers, sim_coeff, std_coeff, cov_coeff)
        self._init_h(latent_dim, (proj_hidden, proj_out, proj_layers), samples, beta, prior, components)


@register_method("simvae")
class SimVAEMethod(SSLMethod):
    """SimVAE (Bizeul et al. 2024): the generative SSL model trained on J >= 2 views of each image (see simvae.py).

    `encoder: conv` builds the 28/32/64 px conv encoder/decoder pair and replaces the recipe's backbone;
    `encoder: backbone` keeps the recipe's backbone (ResNet for larger images) with a residual upsampling decoder.
    Views must reach the method as pixels in [0, 1] (recipe `views: {mean: [0, 0, 0], std: [1, 1, 1]}`), or give the
    normalisation as `pixel_mean` / `pixel_std` so the reconstruction target is un-normalised.
    """

    #: a VAE's posterior is narrower on the data it was trained on: low sigma = in-distribution (measured on digits)
    uncertainty_high_is_in_distribution: bool = False

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        z_dim: int = 64,
        encoder: str = "conv",
        image_size: int = 32,
        channels: int = 3,
        width: int = 32,
        hidden: int = 256,
        likelihood: str = "gaussian",
        log_var_x: float = -4.6,
        sigma2: float = 0.15,
        p_y: str = "gaussian",
        components: int = 10,
        pixel_mean: list[float] | None = None,
        pixel_std: list[float] | None = None,
    ) -> None:
        super().__init__(backbone, feat_dim)
        if encoder not in ("conv", "backbone"):
            raise GenaugError(f"method_args.encoder {encoder!r} is not known: choose conv or backbone")
        self.vae = SimVAE(
            image_size, channels, z_dim, "conv", width, hidden, likelihood, log_var_x, sigma2, p_y, components
        )
        if encoder == "backbone":
            from genaug.ssl.simvae import GaussianEncoder, ResNetDecoder

            self.vae.encoder = GaussianEncoder(backbone, feat_dim, z_dim)
            self.vae.decoder = ResNetDecoder(image_size, channels, z_dim)
        self.backbone = self.vae.encoder.trunk  # the module the loop compiles; shared, not a copy
        self.feat_dim = z_dim
        mean = torch.tensor(pixel_mean or [0.0] * channels).view(1, -1, 1, 1)
        std = torch.tensor(pixel_std or [1.0] * channels).view(1, -1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        x = torch.stack([self._pixels(v) for v in batch["views"]], 1)  # [B, J, C, H, W]
        if progress.step == 0 and (x.min() < -0.02 or x.max() > 1.02):
            raise GenaugError(
                "simvae needs views in [0, 1]: set the recipe's views mean to [0, 0, 0] and std to [1, 1, 1] "
                "(or method_args pixel_mean / pixel_std to the normalisation used)"
            )
        out = self.vae(x.clamp(0, 1))
        logs = {k: out[k].detach() for k in ("recon", "prior_zy", "prior_y", "entropy")}
        logs["sigma"] = uncertainty_score(out["log_var"].detach()).mean()
        return {"loss": out["loss"], "logs": logs, "features": out["mu"].detach()}

    def _pixels(self, v: torch.Tensor) -> torch.Tensor:
        """Undo the views' normalisation: pixels in [0, 1]."""
        return v.float() * self.pixel_std + self.pixel_mean

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of q(z|x) (x normalised like the training views)."""
        return self.vae.encode(self._pixels(x).clamp(0, 1))[0]

    @torch.no_grad()
    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """[B] mean over dimensions of sigma of q(z|x)."""
        return uncertainty_score(self.vae.encode(self._pixels(x).clamp(0, 1))[1])
