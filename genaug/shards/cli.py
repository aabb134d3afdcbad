"""Placeholder registration (filled in by the foundation work in progress)."""

import typer


def register(app: typer.Typer) -> None:
    """Register nothing yet."""
