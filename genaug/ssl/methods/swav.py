"""SwAV (Caron et al. 2020): online clustering with Sinkhorn codes, swapped prediction, prototypes and a queue.

Follows facebookresearch/swav main_swav.py: prototypes L2-normalised before every step, backbone run per resolution
group, one projection head pass over all crops (one BN batch), codes of the assignment crops from Sinkhorn over
(queue + batch), prototypes' gradients cancelled the first `freeze_prototypes_steps` iterations.

The queue: the reference keeps `queue_length // world_size` rows per rank, after trimming `queue_length` to a
multiple of the global batch (`queue_length -= queue_length % (batch_size * world_size)`; a queue shorter than the
global batch becomes 0, i.e. no queue, which is what its batch-4096 recipe does); it starts filling at
`queue_start_epoch` and is used once full. Here every rank holds the same global queue (the last
queue_length / global batch global batches, newest first, filled with the gathered embeddings) of
`queue_length` rows, so the state does not depend on the world size; rank r scores its share of the (trimmed)
queue, so the distributed Sinkhorn sees the same rows as the reference's per-rank queues.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genaug.core.config import Number, setting
from genaug.ssl.distributed import gather_nograd, rank, world_size
from genaug.ssl.losses import sinkhorn, swav_loss
from genaug.ssl.methods.args import Projector, Temperature
from genaug.ssl.methods.base import Progress, SSLMethod, forward_views, fp32, register_method

log = logging.getLogger(__name__)


@register_method("swav")
class SwAV(SSLMethod):
    """SwAV: codes of the assignment crops (Sinkhorn over batch + queue) are predicted from every other crop."""

    class Args(Projector, Temperature):
        """SwAV's arguments (main_swav.py's ImageNet recipe at batch 256)."""

        published = {"proj_hidden": 2048, "proj_out": 128, "temperature": 0.1}
        n_prototypes: int = setting(3000, "Prototypes (clusters) the codes assign to.", ge=1)
        epsilon: Number = setting(0.05, "Entropic regularisation of Sinkhorn (divides the scores).", gt=0.0)
        sinkhorn_iters: int = setting(3, "Sinkhorn-Knopp iterations.", ge=1)
        queue_length: int = setting(3840, "Rows of the global queue of earlier embeddings (0: no queue).", ge=0)
        queue_start_epoch: Number = setting(15, "Epoch from which the queue is filled and used.", ge=0.0)
        freeze_prototypes_steps: int = setting(313, "First optimizer steps without prototype updates.", ge=0)
        assign_views: int = setting(2, "Views (the first ones) whose codes are computed.", ge=1)

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        self.projector = a.projector(feat_dim, 2, bn=True, bias=True)
        self.prototypes = nn.Linear(a.proj_out, a.n_prototypes, bias=False)
        self.temperature, self.epsilon, self.iters = a.temperature, a.epsilon, a.sinkhorn_iters
        self.queue_start_epoch, self.freeze_steps, self.assign_views = (
            a.queue_start_epoch,
            a.freeze_prototypes_steps,
            a.assign_views,
        )
        # the global queue (newest first): its shape does not depend on the world size
        self.register_buffer("queue", torch.zeros(a.assign_views, a.queue_length, a.proj_out))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self._warned: int | None = None

    def queue_rows(self, global_batch: int) -> int:
        """Rows of the queue in use: queue_length trimmed to a multiple of the global batch, as the reference does."""
        length = self.queue.shape[1]
        rows = length - length % global_batch
        if length > 0 and rows != length and self._warned != global_batch:
            self._warned = global_batch
            msg = (
                f"SwAV: queue_length {length} is not a multiple of the global batch {global_batch}; as in the "
                f"reference (main_swav.py) it is trimmed to {rows}"
            )
            log.warning(msg + (" rows: no queue is used (raise queue_length to use one)" if rows == 0 else " rows"))
        return rows

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        views = batch["views"]
        hs = forward_views(self.backbone, views)
        b, ws = hs[0].shape[0], world_size()
        # one projection head pass over every crop (one BN batch), as the reference's forward_head
        zs = list(F.normalize(fp32(self.projector(torch.cat(hs))), dim=1).split([h.shape[0] for h in hs]))
        scores = [self.prototypes(z) for z in zs]
        rows = self.queue_rows(b * ws) if self.queue.shape[1] > 0 else 0
        fill = rows > 0 and progress.epoch >= self.queue_start_epoch
        codes = []
        with torch.no_grad():
            mine = slice(rank() * rows // ws, (rank() + 1) * rows // ws)  # this rank's share of the global queue
            use = fill and not bool(torch.all(self.queue[:, rows - 1] == 0))  # the reference's "queue is full"
            for i in range(min(self.assign_views, len(views))):
                out = scores[i].detach()
                if use:
                    out = torch.cat([self.queue[i, mine] @ self.prototypes.weight.T, out])
                if fill:
                    keys = gather_nograd(zs[i].detach())
                    self.queue[i, keys.shape[0] : rows] = self.queue[i, : rows - keys.shape[0]].clone()
                    self.queue[i, : keys.shape[0]] = keys
                codes.append(sinkhorn(out, self.epsilon, self.iters)[-b:])
            if fill:
                self.queue_filled.add_(b * ws)
        loss = swav_loss(scores, codes, self.temperature)
        return {"loss": loss, "logs": {}, "features": hs[0].detach()}

    def on_before_optimizer_step(self, progress: Progress) -> None:  # noqa: D102
        if progress.step < self.freeze_steps:
            self.prototypes.weight.grad = None
