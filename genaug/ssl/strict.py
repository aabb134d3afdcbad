"""Strict loading of a state dict: a mismatch is one line naming the file and the first differing key."""

from __future__ import annotations

from pathlib import Path

import torch

from genaug.core.errors import GenaugError


def load_strict(
    module: torch.nn.Module, state: dict, source: Path, hint: str = "another genaug version or recipe"
) -> None:
    """load_state_dict(strict=True), a mismatch being one line naming the file and the first differing key."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise GenaugError(
            f"{source} does not fit the model its recipe builds ({first.strip()[:200]}): was it written by {hint}?"
        ) from None
