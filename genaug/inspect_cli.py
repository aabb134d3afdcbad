"""`genaug inspect`: contact sheets of generated variants (not built yet)."""

from __future__ import annotations

import typer

from genaug.errors import GenaugError


def register(app: typer.Typer) -> None:
    """Add the `inspect` command to the CLI."""

    @app.command(
        "inspect", help="Write a PNG contact sheet: each source image with its K generated variants. Not built yet."
    )
    def inspect(shards: str = typer.Option(..., "--shards", help="Shard set name or path.")) -> None:
        raise GenaugError("`genaug inspect` is not built yet in this version")
