"""One generate invocation resolved once, for every engine: its options, typed recipe, column and shard order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genaug.core.cli_model import parse_sets
from genaug.core.errors import GenaugError
from genaug.generate.base import generator_class
from genaug.generate.column import Column, open_column
from genaug.generate.fidelity import random_weight_mark, settings
from genaug.generate.options import GenerateOptions
from genaug.generate.order import shard_priority
from genaug.generate.recipe import GenerateRecipe, parse_generate_recipe


@dataclass
class GenerateJob:
    """One invocation of generate, resolved once for every engine: its options, typed recipe, column and order."""

    opts: GenerateOptions
    recipe: GenerateRecipe
    column: Column
    priority: list[int] | None

    def summary(self, **extra: Any) -> dict:
        """The summary every engine returns, before its own figures."""
        return {"column": self.column.name, "folder": str(self.column.folder), "shards": [], "images": 0,
                "failures": 0, "seconds": 0.0, "model_seconds": 0.0, "load_seconds": 0.0, **extra}  # fmt: skip


def prepare_job(opts: GenerateOptions, flags: dict[str, Any]) -> GenerateJob:
    """What every engine does before any shard: resolve the recipe, open (or start) the column, read --order."""
    from genaug.core.devices import check_device
    from genaug.core.flags import output_path

    check_device(opts.device)
    if opts.lease_dir is not None and Path(opts.lease_dir).exists() and not Path(opts.lease_dir).is_dir():
        raise GenaugError(
            f"--lease-dir {opts.lease_dir} is a file, not a folder: give a folder every process can reach"
        )
    output_path(opts.lease_dir, "--lease-dir")
    recipe = parse_generate_recipe(opts.model, {**flags, **parse_sets(opts.sets)})
    cls = generator_class(recipe.generator)
    written = recipe.as_written()
    mark = random_weight_mark(written)  # the tiny model's CLIP is random: its scores are marked as meaningless
    fid = settings(cls.feature_space, "generator", **mark) if opts.fidelity and cls.feature_space else None
    col = open_column(opts.shards, opts.split, written, opts.column, fidelity=fid, update=opts.update)
    if opts.limit_shards is not None:
        col.indices = col.indices[: opts.limit_shards]
    return GenerateJob(opts, recipe, col, shard_priority(opts.order, col.indices))
