"""Contrastive methods: SimCLR, MoCo v2 (momentum encoder + queue), MoCo v3 (momentum encoder + predictor).

How the views go through the networks follows each reference: SimCLR batches both views together (one BN batch,
google-research/simclr), MoCo v2 encodes queries and keys in separate passes (facebookresearch/moco), MoCo v3 runs
every view separately through the base and the momentum encoder (facebookresearch/moco-v3, moco/builder.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genaug.core.config import setting
from genaug.ssl.ema import ema_update_all
from genaug.ssl.losses import enqueue, info_nce, moco_v2_loss, nt_xent
from genaug.ssl.methods.args import EMATeacher, Momentum, Predictor, Projector, ProjectorLayers, Temperature
from genaug.ssl.methods.base import Progress, SSLMethod, each_view, fp32, momentum_schedule, register_method


@register_method("simclr")
class SimCLR(SSLMethod):
    """SimCLR (Chen et al. 2020): NT-Xent between the projections of two views."""

    class Args(ProjectorLayers, Temperature):
        """SimCLR's arguments."""

        published = {"proj_hidden": 2048, "proj_out": 128, "proj_layers": 2, "temperature": 0.1}

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, a.proj_layers, bn=True)
        self.temperature = a.temperature

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
    momentum_cosine = False  # MoCo v2 keeps its momentum constant

    class Args(Projector, Temperature, Momentum):
        """MoCo v2's arguments."""

        published = {"proj_hidden": 2048, "proj_out": 128, "temperature": 0.2, "momentum": 0.999}
        queue_size: int = setting(65536, "Negatives kept in the queue (keys of earlier batches).", ge=1)
        symmetric: bool = setting(False, "Also score the second view's queries against the first view's keys.")

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, 2, bn=False)
        self.make_teachers()
        self.temperature, self.symmetric = a.temperature, a.symmetric
        self.register_buffer("queue", F.normalize(torch.randn(a.queue_size, a.proj_out), dim=1))
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

    class Args(ProjectorLayers, Predictor, Temperature, EMATeacher):
        """MoCo v3's arguments (ResNet defaults)."""

        published = {"proj_hidden": 4096, "proj_out": 256, "proj_layers": 2, "pred_hidden": 4096, "temperature": 1.0,
                     "momentum": 0.99, "momentum_cosine": True}  # fmt: skip
        pred_last_bn: bool = setting(False, "BN without affine after the predictor's last layer (true for ViT).")

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, a.proj_layers, bn=True, last_bn=True, last_bn_affine=False, bias=False)
        self.predictor = a.predictor(last_bn=a.pred_last_bn, last_bn_affine=False, bias=False, last_bias=False)
        self.make_teachers()
        self.temperature = a.temperature

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
