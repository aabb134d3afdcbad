"""The out-of-memory policy of generation: recognise an OOM, free the cache, halve the batch (in the runner)."""

from __future__ import annotations


def is_oom(e: BaseException) -> bool:
    """True for a CUDA (or other backend) out-of-memory error: the runner then halves its batch and retries."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(e, oom) or "out of memory" in str(e).lower()


def free_memory() -> None:
    """Return cached GPU memory after an out-of-memory error."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
