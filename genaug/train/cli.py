"""`genaug train`: registered by the trainer (not built yet)."""

from __future__ import annotations

import typer

from genaug.errors import GenaugError


def register(app: typer.Typer) -> None:
    """Add the `train` command to the CLI."""

    @app.command(
        "train",
        help="Train an SSL model on a shard set, replacing views by generated variants with "
        "probability p (e.g. `genaug train --method barlow --p 0.5 --shards imagenet --gen sd`). Not built yet.",
    )
    def train(
        method: str = typer.Option("simclr", "--method", help="SSL method recipe name or YAML path."),
        p: float = typer.Option(0.0, "--p", help="Probability of replacing a view by a generated variant."),
    ) -> None:
        raise GenaugError("`genaug train` is not built yet in this version")
