"""Autograd-correct collectives for losses computed over the global batch of all ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when a torch.distributed process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and returns this rank's slice.

    Each rank computes the loss on the gathered global batch, and DDP averages parameter gradients over ranks, so
    the gradient of rank r's slice must be the *sum* over ranks of d(loss_k)/d(slice_r); dividing by the world size
    (DDP's mean) then yields the gradient of the mean loss, equal to the single-process global-batch gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:  # noqa: D102
        g = torch.stack(grads)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g[dist.get_rank()]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` over ranks along dim 0, with gradients flowing back to every rank's slice."""
    if not is_dist():
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` over ranks along dim 0, without gradients (for queues and targets)."""
    if not is_dist():
        return x
    out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) whose backward is an all_reduce(SUM) of the gradients (the adjoint of a sum over ranks)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        g = g.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum `x` over ranks, differentiably (identity on one process)."""
    if not is_dist():
        return x
    return _AllReduceSum.apply(x)


@torch.no_grad()
def all_reduce_mean_(x: torch.Tensor) -> torch.Tensor:
    """In-place mean of `x` over ranks, without gradients (e.g. DINO's center)."""
    if is_dist():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x
