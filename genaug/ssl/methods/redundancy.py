"""Redundancy-reduction methods: Barlow Twins and VICReg.

Each view goes separately through backbone and projector (one BN batch per view), as in facebookresearch/barlowtwins
and facebookresearch/vicreg (main_*.py: `self.projector(self.backbone(y1))`, then the same for y2).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from genaug.core.config import Number, setting
from genaug.ssl.losses import barlow_twins_loss, vicreg_terms
from genaug.ssl.methods.args import ProjectorLayers
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, fp32, register_method


@register_method("barlow")
class BarlowTwins(SSLMethod):
    """Barlow Twins (Zbontar et al. 2021): cross-correlation of the two views' projections pushed to identity."""

    class Args(ProjectorLayers):
        """Barlow Twins' arguments."""

        published = {"proj_hidden": 8192, "proj_out": 8192, "proj_layers": 3}
        lambd: Number = setting(0.0051, "Weight of the off-diagonal (redundancy) terms of the loss.", ge=0.0)

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        self.projector = self.args.projector(feat_dim, self.args.proj_layers, bn=True)
        self.lambd = self.args.lambd

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

    class Args(ProjectorLayers):
        """VICReg's arguments."""

        published = {"proj_hidden": 8192, "proj_out": 8192, "proj_layers": 3}
        sim_coeff: Number = setting(25.0, "Weight of the invariance (mean squared distance) term.", ge=0.0)
        std_coeff: Number = setting(25.0, "Weight of the variance hinge term.", ge=0.0)
        cov_coeff: Number = setting(1.0, "Weight of the covariance term.", ge=0.0)

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, a.proj_layers, bn=True)
        self.coeffs = (a.sim_coeff, a.std_coeff, a.cov_coeff)

    project = BarlowTwins.project

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, z1, z2 = self.project(batch)
        t = vicreg_terms(z1, z2)
        a, b, c = self.coeffs
        loss = a * t["inv"] + b * t["var"] + c * t["cov"]
        return {"loss": loss, "logs": {k: v.detach() for k, v in t.items()}, "features": h1.detach()}
