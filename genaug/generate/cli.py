"""`genaug generate`: the CLI face of genaug.generate.runner.run_generate() and of the column status report."""

from __future__ import annotations

import json

import typer

from genaug.core.cli_model import command
from genaug.generate.options import GenerateOptions
from genaug.generate.recipe import GenerateRecipe


def register(app: typer.Typer) -> None:
    """Add the `generate` command to the CLI."""

    @command(app, "generate", options=GenerateOptions, recipe=GenerateRecipe)
    def generate_cmd(opts: GenerateOptions, overrides: dict) -> None:
        from genaug.generate.dispatch import run_generate
        from genaug.generate.recipe import resolve_recipe
        from genaug.generate.status import column_status, format_status
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(opts.storage_option, opts.shards)
        if opts.status:
            name = opts.column or resolve_recipe(opts.model)["name"]
            st = column_status(opts.shards, name, opts.split, opts.lease_timeout, lease_dir=opts.lease_dir)
            typer.echo(json.dumps(st, indent=2) if opts.as_json else format_status(st))
            return
        out = run_generate(opts, overrides)
        rate = out["images"] / out["seconds"] if out["seconds"] else 0.0
        typer.echo(
            f"column {out['column']}: {out['folder']}: "
            + (f"{out['workers']} Ray workers made " if opts.engine == "ray" else "this process made ")
            + f"{len(out['shards'])} shards, "
            f"{out['images']} images ({rate:.2f} images/s), {out['failures']} source images failed"
        )
