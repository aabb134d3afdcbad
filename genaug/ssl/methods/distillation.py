"""Self-distillation methods: BYOL (EMA target + predictor), SimSiam (stop-gradient), DINO (centered teacher).

BYOL and SimSiam run each view separately through the online (and target) networks, one BN batch per view, as
their reference code does (deepmind-research/byol byol_experiment.py, facebookresearch/simsiam builder.py); DINO
batches the crops of one resolution together (facebookresearch/dino, utils.MultiCropWrapper).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from genaug.core.config import Number, setting
from genaug.ssl.losses import byol_loss, dino_loss, dino_teacher_temp, simsiam_loss, update_center
from genaug.ssl.methods.args import EMATeacher, Momentum, Predictor
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, forward_views, fp32, mlp, register_method


@register_method("byol")
class BYOL(SSLMethod):
    """BYOL (Grill et al. 2020): online projector + predictor regress the EMA target's projection, symmetrised."""

    teachers = (("backbone", "backbone_t"), ("projector", "projector_t"))

    class Args(Predictor, EMATeacher):
        """BYOL's arguments."""

        published = {"proj_hidden": 4096, "proj_out": 256, "pred_hidden": 4096, "momentum": 0.996,
                     "momentum_cosine": True}  # fmt: skip

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, 2, bn=True, bias=True)
        self.predictor = a.predictor(bias=True)
        self.make_teachers()

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

    class Args(Predictor):
        """SimSiam's arguments."""

        published = {"proj_hidden": 2048, "proj_out": 2048, "pred_hidden": 512}

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, 3, bn=True, last_bn=True, last_bn_affine=False)
        self.predictor = a.predictor()

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, h2 = each_view(self.backbone, batch["views"][:2])
        z1, z2 = fp32(self.projector(h1)), fp32(self.projector(h2))
        p1, p2 = fp32(self.predictor(z1)), fp32(self.predictor(z2))
        loss = simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2
        std = F.normalize(z1.detach(), dim=1).std(dim=0).mean()
        return {"loss": loss, "logs": {"z_std": std}, "features": h1.detach()}


class DINOHead(nn.Module):
    """DINO's head: 3-layer GELU MLP to a bottleneck, L2 normalisation, weight-normalised linear to out_dim."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int, norm_last_layer: bool) -> None:
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

    class Args(Momentum):
        """DINO's arguments (facebookresearch/dino main_dino.py defaults for ResNet-50)."""

        published = {"momentum": 0.996}
        out_dim: int = setting(65536, "Width of the head's output (the prototypes the softmax runs over).", ge=1)
        head_hidden: int = setting(2048, "Hidden width of the head's 3-layer MLP.", ge=1)
        bottleneck: int = setting(256, "Width of the head's bottleneck before the weight-normalised layer.", ge=1)
        norm_last_layer: bool = setting(True, "Freeze the norm of the last layer's weight (weight normalisation).")
        student_temp: Number = setting(0.1, "Temperature of the student's softmax.", gt=0.0)
        teacher_temp: Number = setting(0.04, "Temperature of the teacher's softmax after the warm-up.", gt=0.0)
        warmup_teacher_temp: Number = setting(0.04, "Teacher temperature at the start of its warm-up.", gt=0.0)
        warmup_teacher_temp_epochs: Number = setting(30, "Epochs of the teacher temperature's linear warm-up.", ge=0.0)
        center_momentum: Number = setting(0.9, "EMA momentum of the teacher's center.", ge=0.0, le=1.0)
        freeze_last_layer_epochs: Number = setting(1, "Epochs during which the head's last layer is not updated.", ge=0)
        global_views: int = setting(2, "Views (the first ones) the teacher sees.", ge=1)

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.head = DINOHead(feat_dim, a.out_dim, a.head_hidden, a.bottleneck, a.norm_last_layer)
        self.make_teachers()
        self.register_buffer("center", torch.zeros(1, a.out_dim))
        self.student_temp, self.teacher_temp, self.warmup_temp = a.student_temp, a.teacher_temp, a.warmup_teacher_temp
        self.warmup_epochs, self.center_momentum = a.warmup_teacher_temp_epochs, a.center_momentum
        self.freeze_last_layer_epochs, self.global_views = a.freeze_last_layer_epochs, a.global_views
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
