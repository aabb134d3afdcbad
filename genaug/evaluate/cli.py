"""`genaug eval`: linear probe, kNN, OOD detection, CKA/OPD similarity and run reports.

The options of each command are declared once, in genaug.evaluate.options, and checked there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from genaug.core.cli_model import command
from genaug.evaluate.options import (
    FeatureFlags,
    KnnOptions,
    LinearOptions,
    OodOptions,
    ReportOptions,
    SimilarityOptions,
)

#: each command: its options model, the genaug.evaluate.run function it calls, the shard sets its storage flags apply to
COMMANDS: dict[str, tuple[type[FeatureFlags], str, Callable[[Any], tuple]]] = {
    "linear": (LinearOptions, "eval_linear", lambda o: (o.shards,)),
    "knn": (KnnOptions, "eval_knn", lambda o: (o.shards,)),
    "ood": (OodOptions, "eval_ood", lambda o: (o.in_set, o.out_sets)),
    "similarity": (SimilarityOptions, "eval_similarity", lambda o: (o.shards,)),
}


def _handler(func: str, shard_sets: Callable[[Any], tuple]) -> Callable[[FeatureFlags, dict], None]:
    """A command's handler: apply the storage and cache flags for the shard sets it reads, then call `func` with the
    options object."""

    def handle(opts: FeatureFlags, overrides: dict) -> None:
        from genaug.evaluate import run
        from genaug.shards.cache import set_cache_env
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(opts.storage_option, *shard_sets(opts))
        set_cache_env(opts.cache_dir, opts.cache_limit)
        getattr(run, func)(opts)

    handle.__name__ = func.removeprefix("eval_")
    return handle


def register(app: typer.Typer) -> None:
    """Add the `eval` command group to the CLI."""
    ev = typer.Typer(
        help="Evaluate frozen representations: linear probe, kNN, OOD detection, CKA/OPD, reports comparing runs.",
        no_args_is_help=True,
    )
    for name, (options, func, shard_sets) in COMMANDS.items():
        command(ev, name, options=options)(_handler(func, shard_sets))

    @command(ev, "report", options=ReportOptions)
    def report(opts: ReportOptions, overrides: dict) -> None:
        from genaug.evaluate.run import eval_report

        eval_report(opts)

    app.add_typer(ev, name="eval")
