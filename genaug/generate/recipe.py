"""A generation recipe (pipelines/<model>.yaml) with the CLI's overrides applied and checked."""

from __future__ import annotations

import math
from typing import Any

from genaug.core.errors import GenaugError
from genaug.core.recipes import load_recipe
from genaug.shards.layout import check_name


def resolve_recipe(
    model: str,
    k: int | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    dtype: str | None = None,
    compile: bool | None = None,
    seed: int | None = None,
    guidance: float | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """The generation recipe `model` with the CLI's overrides applied."""
    flat = {
        "k": k,
        "runtime.batch_size": batch_size,
        "sampling.steps": steps,
        "dtype": dtype,
        "runtime.compile": compile,
        "seed": seed,
        "sampling.guidance": guidance,
        **(overrides or {}),
    }
    recipe = load_recipe("pipelines", model, flat)
    for key in ("generator", "k", "seed"):
        if key not in recipe:
            raise GenaugError(f"recipe {model!r} lacks `{key}:`")
    check_name(recipe.get("name"), f"recipe {model!r} `name:` (the default --column)")
    if recipe.get("dtype", "fp32") not in ("fp32", "fp16", "bf16"):
        raise GenaugError(f"dtype {recipe['dtype']!r} is not supported: use fp32, fp16 or bf16 (--dtype or the recipe)")
    check_numbers(recipe, model)
    check_cache_folder(recipe, model)
    return recipe


def check_cache_folder(recipe: dict, model: str = "") -> None:
    """A recipe's `runtime.cache` is an existing folder the user can write, or null: genaug never creates it."""
    import os
    from pathlib import Path

    given = (recipe.get("runtime") or {}).get("cache") if isinstance(recipe.get("runtime"), dict) else None
    if given is None:
        return
    if not (isinstance(given, str) and Path(given).is_dir() and os.access(given, os.W_OK)):
        raise GenaugError(
            f"runtime.cache {given!r} of recipe {model or recipe.get('name')!r} is not an existing folder you can "
            "write: create it first (genaug makes only its own subfolder there) or leave runtime.cache null "
            "($GENAUG_CACHE, default ~/.cache/genaug)"
        )


#: numeric recipe values: (dotted key, flag, kind, low, high); checked when present (k and seed always are)
NUMERIC = (
    ("k", "--k", int, 1, 1000),
    ("seed", "--seed", int, -(2**63), 2**63 - 1),
    ("runtime.batch_size", "--batch-size", int, 1, 65536),
    ("sampling.steps", "--steps", int, 1, 10000),
    ("sampling.guidance", "--guidance", float, 0.0, 1000.0),
    ("sampling.eta", "recipe sampling.eta", float, 0.0, 1.0),
    ("sampling.strength", "--strength", float, 0.001, 1.0),
    ("sampling.truncation", "recipe sampling.truncation", float, 0.0, 100.0),
    ("sampling.oversample", "recipe sampling.oversample", int, 1, 1000),
    ("output.size", "recipe output.size", int, 1, 16384),
    ("output.quality", "recipe output.quality", int, 1, 100),
)


def _get(recipe: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = recipe
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_numbers(recipe: dict, model: str = "") -> None:
    """Raise a one-line GenaugError naming the flag (or recipe key) of the first out-of-range numeric value."""
    for dotted, flag, kind, lo, hi in NUMERIC:
        present, v = _get(recipe, dotted)
        if not present or (v is None and dotted not in ("k", "seed", "runtime.batch_size")):
            continue
        where = f"{flag} (recipe {model!r} `{dotted}`)" if flag.startswith("--") else f"`{dotted}` of recipe {model!r}"
        ok_type = isinstance(v, int) if kind is int else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type:
            what = "an integer" if kind is int else "a number"
            raise GenaugError(f"{where} must be {what} in {lo}..{hi}, got {v!r}")
        if not math.isfinite(v) or not lo <= v <= hi:
            raise GenaugError(f"{where} must be in {lo}..{hi}, got {v!r}")
