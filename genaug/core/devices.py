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


def check_device(name: str | None, flag: str = "--device") -> str | None:
    """`name` if it names a device torch knows and this machine has (None: the default), else a GenaugError."""
    if name is None:
        return None
    import torch

    try:
        dev = torch.device(str(name))
    except (RuntimeError, ValueError):
        raise GenaugError(f"{flag} {name!r} is not a device: use cpu, cuda or cuda:N (mps on Apple)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise GenaugError(
                f"{flag} {name}: no CUDA GPU is visible on this machine: use {flag} cpu (or leave it out)"
            )
        if dev.index is not None and dev.index >= n:
            raise GenaugError(f"{flag} {name}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise GenaugError(f"{flag} {name}: Apple's MPS is not available here: use {flag} cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise GenaugError(f"{flag} {name!r}: genaug runs on cpu, cuda or mps, not {dev.type}")
    return str(name)


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
