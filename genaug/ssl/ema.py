"""Teachers updated by an exponential moving average of the student (BYOL, MoCo, DINO): one helper for all."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn


def make_teacher(module: nn.Module) -> nn.Module:
    """A frozen deep copy of `module`, to be updated by EMA."""
    t = copy.deepcopy(module)
    for p in t.parameters():
        p.requires_grad_(False)
    return t


@torch.no_grad()
def ema_update(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameters only (buffers copied)."""
    for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
        pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
    for bs, bt in zip(student.buffers(), teacher.buffers(), strict=True):
        bt.copy_(bs)


@torch.no_grad()
def ema_update_all(pairs: Iterable[tuple[nn.Module, nn.Module]], momentum: float) -> None:
    """ema_update for each (student, teacher) pair with one momentum."""
    for student, teacher in pairs:
        ema_update(student, teacher, momentum)


def momentum_schedule(step: int, total: int, base: float, final: float = 1.0, cosine: bool = True) -> float:
    """EMA momentum of the teacher: BYOL's 1 - (1 - base)(cos(pi k / K) + 1) / 2, or constant `base`."""
    if not cosine:
        return base
    return final - (final - base) * (math.cos(math.pi * min(step, total) / max(1, total)) + 1) / 2
