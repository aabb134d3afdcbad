"""Devices and dtypes by the names recipes and flags use (fp32, fp16, bf16; cpu, cuda:N)."""

from __future__ import annotations

import os

import torch

from genaug.core.errors import GenaugError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(name: str, what: str = "dtype") -> torch.dtype:
    """torch dtype of a recipe's `dtype:` value (fp32, fp16, bf16); `what` names the setting in the error."""
    if name not in DTYPES:
        raise GenaugError(f"{what} {name!r} is not supported: use one of {', '.join(DTYPES)} (--dtype or the recipe)")
    return DTYPES[name]


def default_device() -> str:
    """cuda:LOCAL_RANK when CUDA is available (torchrun, accelerate and SLURM set LOCAL_RANK), else cpu."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"


def resolve_device(name: str | None) -> torch.device:
    """The device a flag names, or cuda when available, else cpu."""
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
