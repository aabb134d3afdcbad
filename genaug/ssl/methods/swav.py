"""SwAV (Caron et al. 2020): online clustering with Sinkhorn codes, swapped prediction, prototypes and a queue."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genaug.ssl.distributed import world_size
from genaug.ssl.losses import sinkhorn, swav_loss
from genaug.ssl.methods.base import Progress, SSLMethod, forward_views, mlp, register_method


@register_method("swav")
class SwAV(SSLMethod):
    """SwAV: codes of the assignment crops (Sinkhorn over batch + queue) are predicted from every other crop."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        proj_hidden: int = 2048,
        proj_out: int = 128,
        n_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        queue_length: int = 3840,
        queue_start_epoch: float = 15,
        freeze_prototypes_steps: int = 313,
        assign_views: int = 2,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.projector = mlp(feat_dim, proj_hidden, proj_out, 2, bn=True, bias=True)
        self.prototypes = nn.Linear(proj_out, n_prototypes, bias=False)
        self.temperature, self.epsilon, self.iters = temperature, epsilon, sinkhorn_iters
        self.queue_start_epoch, self.freeze_steps, self.assign_views = (
            queue_start_epoch,
            freeze_prototypes_steps,
            assign_views,
        )
        per_rank = queue_length // world_size() if queue_length > 0 else 0
        self.register_buffer("queue", torch.zeros(assign_views, per_rank, proj_out))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        views = batch["views"]
        hs = forward_views(self.backbone, views)
        zs = [F.normalize(self.projector(h).float(), dim=1) for h in hs]
        scores = [self.prototypes(z) for z in zs]
        b = zs[0].shape[0]
        use_queue = self.queue.shape[1] > 0 and progress.epoch >= self.queue_start_epoch
        codes = []
        with torch.no_grad():
            for i in range(min(self.assign_views, len(views))):
                out = scores[i].detach()
                if use_queue and int(self.queue_filled) >= self.queue.shape[1]:
                    out = torch.cat([self.queue[i] @ self.prototypes.weight.T, out])
                codes.append(sinkhorn(out, self.epsilon, self.iters)[-b:])
                if use_queue:
                    self.queue[i, b:] = self.queue[i, :-b].clone()
                    self.queue[i, :b] = zs[i].detach()
            if use_queue:
                self.queue_filled.add_(b)
        loss = swav_loss(scores, codes, self.temperature)
        return {"loss": loss, "logs": {}, "features": hs[0].detach()}

    def on_before_optimizer_step(self, progress: Progress) -> None:  # noqa: D102
        if progress.step < self.freeze_steps:
            self.prototypes.weight.grad = None
