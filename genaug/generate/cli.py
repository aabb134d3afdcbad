"""`genaug generate`: registered by the generate stage (issue: generate stage, not built yet)."""

from __future__ import annotations

import typer

from genaug.errors import GenaugError


def register(app: typer.Typer) -> None:
    """Add the `generate` command to the CLI."""

    @app.command(
        "generate",
        help="Materialize K generated variants per source image into a generated column "
        "(e.g. `genaug generate --model sd --shards imagenet`). Not built yet.",
    )
    def generate(
        model: str = typer.Option(
            "tiny", "--model", help="Generation recipe: sd, sd-unclip, icgan, tiny or a path to a recipe YAML."
        ),
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME) or path."),
    ) -> None:
        raise GenaugError("`genaug generate` is not built yet in this version")
