"""LARS (You et al. 2017): SGD momentum with a layer-wise trust ratio, for SSL pre-training and the linear probe."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class LARS(torch.optim.Optimizer):
    """LARS as used by BYOL / Barlow Twins / VICReg and the SSL linear-probe protocols.

    A group with ``lars_exclude=True`` (biases, norms) gets neither weight decay nor adaptation, as in the references;
    a group that does not say excludes its 1-D parameters.
    """

    def __init__(
        self, params: Iterable, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001
    ) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=None))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                exclude = g["lars_exclude"] if g["lars_exclude"] is not None else p.ndim <= 1
                if not exclude:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    pn, un = torch.norm(p), torch.norm(dp)
                    q = torch.where((pn > 0) & (un > 0), g["eta"] * pn / un, torch.ones_like(pn))
                    dp = dp.mul(q)
                st = self.state[p]
                if "mu" not in st:
                    st["mu"] = torch.zeros_like(p)
                mu = st["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])
        return loss
