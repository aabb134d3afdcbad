"""Optimizers and schedules: LARS, parameter groups with weight-decay exclusions, warmup + cosine, EMA momentum."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from genaug.core.errors import GenaugError
from genaug.ssl.lars import LARS

if TYPE_CHECKING:
    from genaug.train.recipe import Optim


def is_excluded(name: str, p: nn.Parameter) -> bool:
    """Biases and normalization parameters (1-D tensors) are excluded from weight decay and LARS adaptation."""
    return p.ndim <= 1 or name.endswith(".bias")


def param_groups(
    named: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    exclude_bias_norm: bool,
    bias_lr: float | None = None,
    fixed_lr_prefixes: tuple[str, ...] = (),
    extra: list[dict] | None = None,
) -> list[dict]:
    """Split parameters into regular / excluded groups; each group keeps its `base_lr` for the scheduler.

    Parameters whose name starts with one of `fixed_lr_prefixes` (SimSiam's predictor) keep a constant lr.
    """
    buckets: dict[tuple[bool, bool], list] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        excl = exclude_bias_norm and is_excluded(name, p)
        fixed = any(name.startswith(pre) for pre in fixed_lr_prefixes)
        buckets.setdefault((excl, fixed), []).append(p)
    groups = []
    for (excl, fixed), ps in sorted(buckets.items()):
        glr = bias_lr if (excl and bias_lr is not None) else lr
        groups.append(
            {
                "params": ps,
                "lr": glr,
                "base_lr": glr,
                "weight_decay": 0.0 if excl else weight_decay,
                "lars_exclude": excl,
                "fixed_lr": fixed,
            }
        )
    for g in extra or []:
        groups.append({"lars_exclude": True, "fixed_lr": True, "base_lr": g["lr"], **g})
    return groups


def scaled_lr(base_lr: float, batch_size: int, scaling: str = "linear", ref_batch: int = 256) -> float:
    """The learning rate for `batch_size`: linear (lr * B / ref) or sqrt (lr * sqrt(B / ref)) scaling, or none."""
    if scaling == "linear":
        return base_lr * batch_size / ref_batch
    if scaling == "sqrt":
        return base_lr * math.sqrt(batch_size / ref_batch)
    if scaling in ("none", None):
        return base_lr
    raise GenaugError(f"optim.lr_scaling {scaling!r} is unknown: use linear, sqrt or none")


def build_optimizer(groups: list[dict], cfg: Optim | dict) -> torch.optim.Optimizer:
    """Build the optimizer the recipe's optim section names (lars, sgd, adamw) over parameter `groups`."""
    from genaug.train.recipe import Optim

    o = cfg if isinstance(cfg, Optim) else Optim.parse(cfg, "optim")
    lr = groups[0]["lr"]
    if o.name == "lars":
        return LARS(groups, lr=lr, momentum=o.momentum, eta=o.eta)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(o.betas), eps=o.eps)


def cosine_factor(step: int, total: int, warmup: int, final: float = 0.0) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to `final` at `total` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


class WarmupCosine:
    """Per-step lr schedule over the optimizer's groups (fixed-lr groups untouched); weight decay may follow a
    cosine from its value to `final_weight_decay` (DINO). Checkpointable through state_dict()."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int,
        final_lr_ratio: float = 0.0,
        final_weight_decay: float | None = None,
    ) -> None:
        self.optimizer, self.total, self.warmup, self.final = optimizer, total_steps, warmup_steps, final_lr_ratio
        self.final_wd = final_weight_decay
        for g in optimizer.param_groups:
            g.setdefault("base_wd", g.get("weight_decay", 0.0))
            g.setdefault("base_lr", g["lr"])
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        f = cosine_factor(self.step_count, self.total, self.warmup, self.final)
        for g in self.optimizer.param_groups:
            if not g.get("fixed_lr", False):
                g["lr"] = g["base_lr"] * f
            if self.final_wd is not None and g["base_wd"] > 0:
                t = min(1.0, self.step_count / max(1, self.total))
                g["weight_decay"] = self.final_wd + (g["base_wd"] - self.final_wd) * 0.5 * (1 + math.cos(math.pi * t))

    def step(self) -> None:
        """Advance one optimizer step."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current lr of each group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Checkpoint state."""
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        """Restore from state_dict()."""
        self.step_count = int(state["step_count"])
        self._apply()
