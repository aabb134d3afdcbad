"""Devices and dtypes by the names recipes and flags use (fp32, fp16, bf16; cpu, cuda:N)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from genaug.core.errors import GenaugError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: process_rank() serves the CLI before any model is needed
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(name: str, what: str = "dtype") -> torch.dtype:
    """torch dtype of a recipe's `dtype:` value (fp32, fp16, bf16); `what` names the setting in the error."""
    import torch

    if name not in DTYPE_NAMES:
        raise GenaugError(
            f"{what} {name!r} is not supported: use one of {', '.join(DTYPE_NAMES)} (--dtype or the recipe)"
        )
    return getattr(torch, DTYPE_NAMES[name])


def default_device() -> str:
    """cuda:LOCAL_RANK when CUDA is available (torchrun, accelerate and SLURM set LOCAL_RANK), else cpu."""
    import torch

    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"


def resolve_device(name: str | None) -> torch.device:
    """The device a flag names, or cuda when available, else cpu."""
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def process_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun/accelerate or SLURM variables; (0, 1) when launched alone."""
    for r, w in (
        ("RANK", "WORLD_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
        ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
    ):
        if os.environ.get(r, "").isdigit() and os.environ.get(w, "").isdigit():
            return int(os.environ[r]), max(1, int(os.environ[w]))
    return 0, 1
