"""Range checks of command-line values, shared by the CLIs: each failure is one GenaugError naming the flag."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from genaug.core.errors import GenaugError


def at_least(value: float | None, low: float, flag: str, optional: bool = True) -> None:
    """`value` is a finite number >= low (None passes when optional)."""
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or value < low:
        raise GenaugError(f"{flag} must be at least {low:g}, got {value}")


def above(value: float | None, low: float, flag: str) -> None:
    """`value` is None or a finite number > low."""
    if value is not None and (not math.isfinite(value) or value <= low):
        raise GenaugError(f"{flag} must be greater than {low:g}, got {value}")


def between(value: float | None, low: float, high: float, flag: str) -> None:
    """`value` is None or a finite number strictly between low and high."""
    if value is not None and (not math.isfinite(value) or not low < value < high):
        raise GenaugError(f"{flag} must lie strictly between {low:g} and {high:g}, got {value}")


def one_of(values: Iterable[str], allowed: Iterable[str], flag: str) -> None:
    """Every entry of `values` is one of `allowed`."""
    allowed = tuple(allowed)
    for v in values:
        if v not in allowed:
            raise GenaugError(f"{flag} {v!r} is not one of {', '.join(allowed)}")


def output_path(path: str | None, flag: str) -> None:
    """`path` (a file to write, or a folder) does not lie under an existing file."""
    if path is None:
        return
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise GenaugError(f"{flag} {path}: {parent} is a file, not a folder: choose another path")
            return


def output_folder(path: str | Path | None, flag: str) -> None:
    """`path` (a folder to write into, made when missing) is not an existing file nor under one."""
    if path is None or str(path) == "":
        return
    if Path(path).exists() and not Path(path).is_dir():
        raise GenaugError(f"{flag} {path} is a file, not a folder: choose another path")
    output_path(str(path), flag)
