"""Training checkpoints: one file per save, written atomically (temp + fsync + rename), with every RNG state."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genaug.core.errors import GenaugError
from genaug.core.files import fsync_dir, tmp_suffix
from genaug.ssl.artifacts import read_checkpoint, to_safe

CKPT_RE = re.compile(r"^checkpoint-(\d{8})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Path of the checkpoint of optimizer step `step`: run_dir/checkpoint-00001234.pt."""
    return Path(run_dir) / f"checkpoint-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Committed checkpoints of a run, sorted by step (temporary files are ignored)."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest committed checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and every CUDA device."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Restore the states captured by rng_state()."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` as checkpoint-<step>.pt atomically; keep the newest `keep` checkpoints (0 keeps all)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(run_dir, step)
    tmp = final.with_name(final.name + tmp_suffix())
    try:
        with open(tmp, "wb") as f:
            torch.save(to_safe(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(run_dir)
    finally:
        if tmp.exists():
            tmp.unlink()
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    for stale in run_dir.glob("checkpoint-*.pt.tmp-*"):  # left by a killed writer
        if stale.name != tmp.name:
            stale.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint with weights_only=True: tensors and plain data, no code runs."""
    path = Path(path)
    if not path.is_file():
        raise GenaugError(f"checkpoint {path} does not exist: pass --resume with a checkpoint file or a run directory")
    return read_checkpoint(path, "delete it to resume from an older one")


def resolve_resume(resume: str | os.PathLike | None, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: an explicit file, the newest one of a run directory, or the run's own."""
    if resume:
        p = Path(resume)
        if p.is_dir():
            found = latest_checkpoint(p)
            if found is None:
                raise GenaugError(f"--resume {p}: the directory holds no checkpoint-*.pt")
            return found
        if not p.is_file():
            raise GenaugError(f"--resume {p} does not exist: give a checkpoint file or a run directory")
        return p
    return latest_checkpoint(run_dir)
