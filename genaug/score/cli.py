"""`genaug score`: the CLI face of genaug.score.run.run_score(); its options are declared once, in
genaug.score.options."""

from __future__ import annotations

import typer

from genaug.core.cli_model import command
from genaug.score.options import ScoreOptions


def register(app: typer.Typer) -> None:
    """Add the `score` command to the CLI."""

    @command(app, "score", options=ScoreOptions)
    def score_cmd(opts: ScoreOptions, overrides: dict) -> None:
        from genaug.score.run import run_score
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(opts.storage_option, opts.shards)
        out = run_score(opts)
        s = out.get("summary") or {}
        typer.echo(
            f"scores of {opts.gen}: {out['folder']}: {len(out['shards'])} shards scored now; "
            f"mean {s.get('mean')}, p05 {(s.get('quantiles') or {}).get('p05')}, "
            f"blank {s.get('blank')}, near-copy {s.get('near_copy')}, diversity {s.get('diversity_mean')}"
        )
