"""`genaug train`: train an SSL method on a shard set, replacing views by generated variants with probability p."""

from __future__ import annotations

import re

import typer

from genaug.core.cli_model import command, parse_sets  # noqa: F401 (parse_sets: re-exported)
from genaug.core.errors import GenaugError
from genaug.train.options import TrainOptions
from genaug.train.recipe import TrainRecipe

MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def register(app: typer.Typer) -> None:
    """Add the `train` command to the CLI."""

    @command(app, "train", options=TrainOptions, recipe=TrainRecipe)
    def train(opts: TrainOptions, overrides: dict) -> None:
        import os

        from genaug.shards.storage_flags import apply_storage_flags
        from genaug.train.runner import run_training

        apply_storage_flags(opts.storage_option, overrides.get("run.shards"))
        for name in opts.allow_module:
            if not MODULE_NAME.match(name):
                raise GenaugError(
                    f"--allow-module {name!r} is not a Python module name (dotted identifiers, e.g. mylab.methods)"
                )
        if opts.allow_module:  # the same trust reaches the method registry (and evaluation run from this process)
            have = [m for m in os.environ.get("GENAUG_ALLOW_MODULES", "").split(",") if m]
            os.environ["GENAUG_ALLOW_MODULES"] = ",".join(have + list(opts.allow_module))
        res = run_training(opts, overrides)
        m = res["metrics"]
        loss = f" loss {m['loss']:.4f}" if "loss" in m else ""
        if res["is_main"]:
            typer.echo(f"trained {res['step']} steps{loss}; run directory {res['run_dir']}")
