"""Contrastive methods: SimCLR, MoCo v2 (momentum encoder + queue), MoCo v3 (momentum encoder + predictor).

How the views go through the networks follows each reference: SimCLR batches both views together (one BN batch,
google-research/simclr), MoCo v2 encodes queries and keys in separate passes (facebookresearch/moco), MoCo v3 runs
every view separately through the base and the momentum encoder (facebookresearch/moco-v3, moco/builder.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genaug.ssl.ema import ema_update_all
from genaug.ssl.losses import enqueue, info_nce, moco_v2_loss, nt_xent
from genaug.ssl.methods.base import (
    Progress,
    SSLMethod,
    each_view,
    fp32,
    make_teacher,
    mlp,
    momentum_schedule,
    register_method,
)


@register_method("simclr")
class SimCLR(SSLMethod):
    """SimCLR (Chen et al. 2020): NT-Xent between the projections of two views."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 2048,
        proj_out: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, proj_layers, bn=True)
        self.temperature = temperature

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        h1, h2 = _two(self.backbone, batch["views"])
        # one projector call over both views: BN statistics over the 2B views, as in the reference implementation
        z1, z2 = fp32(self.projector(torch.cat([h1, h2]))).chunk(2)
        loss = nt_xent(z1, z2, self.temperature)
        return {"loss": loss, "logs": {}, "features": h1.detach()}


def _two(net: nn.Module, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of the first two views in one forward pass when their shapes agree (SimCLR's joint BN)."""
    a, b = views[0], views[1]
    if a.shape == b.shape:
        return net(torch.cat([a, b])).chunk(2)
    return net(a), net(b)


@register_method("mocov2")
class MoCoV2(SSLMethod):
    """MoCo v2 (Chen, Fan, Girshick, He 2020): momentum key encoder, queue of negatives, MLP head."""

    teachers = (("backbone", "backbone_k"), ("projector", "projector_k"))

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 2048,
        proj_out: int = 128,
        queue_size: int = 65536,
        temperature: float = 0.2,
        momentum: float = 0.999,
        symmetric: bool = False,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, 2, bn=False)
        self.backbone_k, self.projector_k = make_teacher(backbone), make_teacher(self.projector)
        self.temperature, self.momentum, self.symmetric = temperature, momentum, symmetric
        self.momentum_cosine = False  # MoCo v2 keeps its momentum constant
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_out), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending_keys: list[torch.Tensor] = []

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        v1, v2 = batch["views"][:2]
        h1 = self.backbone(v1)
        q1 = fp32(self.projector(h1))
        with torch.no_grad():
            k2 = fp32(self.projector_k(self.backbone_k(v2)))
        loss = moco_v2_loss(q1, k2, self.queue, self.temperature)
        keys = [k2]
        if self.symmetric:
            q2 = fp32(self.projector(self.backbone(v2)))
            with torch.no_grad():
                k1 = fp32(self.projector_k(self.backbone_k(v1)))
            loss = (loss + moco_v2_loss(q2, k1, self.queue, self.temperature)) / 2
            keys.append(k1)
        self._pending_keys.append(torch.cat(keys))  # enqueued after the optimizer step (all accumulated micro-batches)
        return {"loss": loss, "logs": {}, "features": h1.detach()}

    @torch.no_grad()
    def on_after_step(self, progress: Progress) -> None:  # noqa: D102
        self.update_teachers(progress)
        for keys in self._pending_keys:
            enqueue(self.queue, self.queue_ptr, F.normalize(keys, dim=1))
        self._pending_keys = []


@register_method("mocov3")
class MoCoV3(SSLMethod):
    """MoCo v3 (Chen, Xie, He 2021): symmetric InfoNCE of predictor outputs against momentum keys of the batch.

    As in facebookresearch/moco-v3 (moco/builder.py, MoCo_ResNet): projector of `proj_layers` Linear layers without
    bias (BN + ReLU between, BN without affine at the end; 2 for ResNet, 3 for ViT), predictor of 2 layers without a
    last BN for ResNet (`pred_last_bn: true` for ViT); each view goes separately through the base and the momentum
    encoder. The reference updates the momentum encoder at the start of step k with m(k) before computing the keys;
    updating it after step k - 1 with m(k) is the same computation and works with gradient accumulation.
    """

    teachers = (("backbone", "backbone_k"), ("projector", "projector_k"))

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 4096,
        proj_out: int = 256,
        pred_hidden: int = 4096,
        temperature: float = 1.0,
        momentum: float = 0.99,
        momentum_cosine: bool = True,
        proj_layers: int = 2,
        pred_last_bn: bool = False,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(
            feat_dim, proj_hidden, proj_out, proj_layers, bn=True, last_bn=True, last_bn_affine=False, bias=False
        )
        self.predictor = mlp(
            proj_out,
            pred_hidden,
            proj_out,
            2,
            bn=True,
            last_bn=pred_last_bn,
            last_bn_affine=False,
            bias=False,
            last_bias=False,
        )
        self.backbone_k, self.projector_k = make_teacher(backbone), make_teacher(self.projector)
        self.temperature, self.momentum, self.momentum_cosine = temperature, momentum, momentum_cosine

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        views = batch["views"][:2]
        hs = each_view(self.backbone, views)
        q1, q2 = (fp32(self.predictor(self.projector(h))) for h in hs)
        with torch.no_grad():
            k1, k2 = (fp32(self.projector_k(h)) for h in each_view(self.backbone_k, views))
        loss = info_nce(q1, k2, self.temperature) + info_nce(q2, k1, self.temperature)
        return {"loss": loss, "logs": {"momentum": self.teacher_momentum(progress)}, "features": hs[0].detach()}

    def next_momentum(self, progress: Progress) -> float:
        """The momentum the reference applies at the start of the next step (m of step + 1)."""
        return momentum_schedule(progress.step + 1, progress.total_steps, self.momentum, 1.0, self.momentum_cosine)

    @torch.no_grad()
    def on_after_step(self, progress: Progress) -> None:  # noqa: D102
        m = self.next_momentum(progress)
        ema_update_all(((getattr(self, s), getattr(self, t)) for s, t in self.teachers), m)
