"""A generation recipe (pipelines/<model>.yaml) with the CLI's overrides applied and checked."""

from __future__ import annotations

from typing import Any

from genaug.core.errors import GenaugError
from genaug.core.recipes import load_recipe


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
    if int(recipe["k"]) < 1:
        raise GenaugError(f"--k must be at least 1 (got {recipe['k']})")
    if recipe.get("dtype", "fp32") not in ("fp32", "fp16", "bf16"):
        raise GenaugError(f"dtype {recipe['dtype']!r} is not supported: use fp32, fp16 or bf16 (--dtype or the recipe)")
    bs = int((recipe.get("runtime") or {}).get("batch_size", 8))
    if bs < 1:
        raise GenaugError(f"--batch-size must be at least 1 (got {bs})")
    return recipe
