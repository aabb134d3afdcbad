"""Redundancy-reduction methods: Barlow Twins and VICReg.

Each view goes separately through backbone and projector (one BN batch per view), as in facebookresearch/barlowtwins
and facebookresearch/vicreg (main_*.py: `self.projector(self.backbone(y1))`, then the same for y2).
"""

from __future__ import annotations

from torch import nn

from genaug.ssl.losses import barlow_twins_loss, vicreg_terms
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, fp32, mlp, register_method


@register_method("barlow")
class BarlowTwins(SSLMethod):
    """Barlow Twins (Zbontar et al. 2021): cross-correlation of the two views' projections pushed to identity."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 8192,
        proj_out: int = 8192,
        proj_layers: int = 3,
        lambd: float = 0.0051,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, proj_layers, bn=True)
        self.lambd = lambd

    def project(self, batch: dict) -> tuple:
        """(h1, z1, z2): backbone features of view 1 and fp32 projections of both views (reused by prob methods)."""
        h1, h2 = each_view(self.backbone, batch["views"][:2])
        return h1, fp32(self.projector(h1)), fp32(self.projector(h2))

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, z1, z2 = self.project(batch)
        return {"loss": barlow_twins_loss(z1, z2, self.lambd), "logs": {}, "features": h1.detach()}


@register_method("vicreg")
class VICReg(SSLMethod):
    """VICReg (Bardes, Ponce, LeCun 2022): invariance + variance hinge + covariance, 25 / 25 / 1."""

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
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, proj_layers, bn=True)
        self.coeffs = (sim_coeff, std_coeff, cov_coeff)

    project = BarlowTwins.project

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, z1, z2 = self.project(batch)
        t = vicreg_terms(z1, z2)
        a, b, c = self.coeffs
        loss = a * t["inv"] + b * t["var"] + c * t["cov"]
        return {"loss": loss, "logs": {k: v.detach() for k, v in t.items()}, "features": h1.detach()}
