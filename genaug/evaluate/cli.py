"""`genaug eval`: registered by the evaluation stage (not built yet)."""

from __future__ import annotations

import typer

from genaug.errors import GenaugError


def register(app: typer.Typer) -> None:
    """Add the `eval` command group to the CLI."""
    ev = typer.Typer(
        help="Evaluate representations: linear probe, kNN, OOD detection, CKA/OPD, reports. Not built yet.",
        no_args_is_help=True,
    )

    @ev.command("linear", help="Linear probe on frozen features. Not built yet.")
    def linear() -> None:
        raise GenaugError("`genaug eval` is not built yet in this version")

    app.add_typer(ev, name="eval")
