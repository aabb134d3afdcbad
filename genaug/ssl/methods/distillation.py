"""Self-distillation methods: BYOL (EMA target + predictor), SimSiam (stop-gradient), DINO (centered teacher).

BYOL and SimSiam run each view separately through the online (and target) networks, one BN batch per view, as
their reference code does (deepmind-research/byol byol_experiment.py, facebookresearch/simsiam builder.py); DINO
batches the crops of one resolution together (facebookresearch/dino, utils.MultiCropWrapper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from genaug.ssl.losses import byol_loss, dino_loss, dino_teacher_temp, simsiam_loss, update_center
from genaug.ssl.methods.base import (
    Progress,
    SSLMethod,
    each_view,
    forward_views,
    fp32,
    make_teacher,
    mlp,
    register_method,
)


@register_method("byol")
class BYOL(SSLMethod):
    """BYOL (Grill et al. 2020): online projector + predictor regress the EMA target's projection, symmetrised."""

    teachers = (("backbone", "backbone_t"), ("projector", "projector_t"))

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 4096,
        proj_out: int = 256,
        pred_hidden: int = 4096,
        momentum: float = 0.996,
        momentum_cosine: bool = True,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, 2, bn=True, bias=True)
        self.predictor = mlp(proj_out, pred_hidden, proj_out, 2, bn=True, bias=True)
        self.backbone_t, self.projector_t = make_teacher(backbone), make_teacher(self.projector)
        self.momentum, self.momentum_cosine = momentum, momentum_cosine

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        views = batch["views"][:2]
        h1, h2 = each_view(self.backbone, views)
        p1, p2 = (fp32(self.predictor(self.projector(h))) for h in (h1, h2))
        with torch.no_grad():
            t1, t2 = (fp32(self.projector_t(h)) for h in each_view(self.backbone_t, views))
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return {"loss": loss, "logs": {"momentum": self.teacher_momentum(progress)}, "features": h1.detach()}

    @torch.no_grad()
    def on_after_step(self, progress: Progress) -> None:  # noqa: D102
        self.update_teachers(progress)


@register_method("simsiam")
class SimSiam(SSLMethod):
    """SimSiam (Chen & He 2021): symmetric negative cosine with stop-gradient; predictor at a fixed lr."""

    fixed_lr_prefixes = ("predictor.",)

    def __init__(
        self, backbone: nn.Module, feat_dim: int, proj_hidden: int = 2048, proj_out: int = 2048, pred_hidden: int = 512
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, 3, bn=True, last_bn=True, last_bn_affine=False)
        self.predictor = mlp(proj_out, pred_hidden, proj_out, 2, bn=True)

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, h2 = each_view(self.backbone, batch["views"][:2])
        z1, z2 = fp32(self.projector(h1)), fp32(self.projector(h2))
        p1, p2 = fp32(self.predictor(z1)), fp32(self.predictor(z2))
        loss = simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2
        std = F.normalize(z1.detach(), dim=1).std(dim=0).mean()
        return {"loss": loss, "logs": {"z_std": std}, "features": h1.detach()}


class DINOHead(nn.Module):
    """DINO's head: 3-layer GELU MLP to a bottleneck, L2 normalisation, weight-normalised linear to out_dim."""

    def __init__(
        self, in_dim: int, out_dim: int = 65536, hidden: int = 2048, bottleneck: int = 256, norm_last_layer: bool = True
    ) -> None:
        super().__init__()
        self.mlp = mlp(in_dim, hidden, bottleneck, 3, bn=False, act=nn.GELU, bias=True)
        self.last_layer = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] -> [B, out_dim] logits."""
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


@register_method("dino")
class DINO(SSLMethod):
    """DINO (Caron et al. 2021): student matches the centered, sharpened EMA teacher across crops (multi-crop)."""

    teachers = (("backbone", "backbone_t"), ("head", "head_t"))
    clip_per_parameter = True  # optim.clip_grad bounds each parameter's gradient norm (main_dino.py clip_gradients)

    min_views = 2

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        out_dim: int = 65536,
        head_hidden: int = 2048,
        bottleneck: int = 256,
        norm_last_layer: bool = True,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: float = 30,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        freeze_last_layer_epochs: float = 1,
        global_views: int = 2,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.head = DINOHead(feat_dim, out_dim, head_hidden, bottleneck, norm_last_layer)
        self.backbone_t, self.head_t = make_teacher(backbone), make_teacher(self.head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.teacher_temp, self.warmup_temp = student_temp, teacher_temp, warmup_teacher_temp
        self.warmup_epochs, self.center_momentum, self.momentum = warmup_teacher_temp_epochs, center_momentum, momentum
        self.freeze_last_layer_epochs, self.global_views = freeze_last_layer_epochs, global_views
        self._pending: list[list[torch.Tensor]] = []

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        views = batch["views"]
        g = min(self.global_views, len(views))
        hs = forward_views(self.backbone, views)
        student = [fp32(self.head(h)) for h in hs]
        with torch.no_grad():
            teacher = [fp32(self.head_t(h)) for h in forward_views(self.backbone_t, views[:g])]
        temp = self.teacher_temperature(progress)
        loss = dino_loss(student, teacher, self.center, self.student_temp, temp)
        self._pending.append(teacher)
        return {"loss": loss, "logs": {"teacher_temp": temp}, "features": hs[0].detach()}

    def teacher_temperature(self, progress: Progress) -> float:
        """The reference's per-epoch teacher temperature: np.linspace(warmup, final, W) over the first W epochs."""
        epoch, w = int(progress.epoch), int(self.warmup_epochs)
        if w <= 1 or epoch >= w:
            return self.warmup_temp if (w == 1 and epoch == 0) else self.teacher_temp
        return dino_teacher_temp(epoch, w - 1, self.warmup_temp, self.teacher_temp)

    def on_before_optimizer_step(self, progress: Progress) -> None:  # noqa: D102
        # facebookresearch/dino utils.cancel_gradients_last_layer: no update of the last layer the first epochs
        if progress.epoch < self.freeze_last_layer_epochs:
            for p in self.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def on_after_step(self, progress: Progress) -> None:  # noqa: D102
        self.update_teachers(progress)
        for teacher in self._pending:
            update_center(self.center, teacher, self.center_momentum)
        self._pending = []
