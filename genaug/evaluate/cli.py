"""`genaug eval`: linear probe, kNN, OOD detection, CKA/OPD similarity and run reports.

The options of each command are declared once, in genaug.evaluate.options, and checked there."""

from __future__ import annotations

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


def _setup(opts: FeatureFlags, *shard_sets: object) -> dict:
    """Apply the storage and cache flags of `opts` for the shard sets it reads; the eval function's keywords."""
    from genaug.shards.cache import set_cache_env
    from genaug.shards.storage_flags import apply_storage_flags

    apply_storage_flags(opts.storage_option, *shard_sets)
    set_cache_env(opts.cache_dir, opts.cache_limit)
    return opts.call_args()


def register(app: typer.Typer) -> None:
    """Add the `eval` command group to the CLI."""
    ev = typer.Typer(
        help="Evaluate frozen representations: linear probe, kNN, OOD detection, CKA/OPD, reports comparing runs.",
        no_args_is_help=True,
    )

    @command(ev, "linear", options=LinearOptions)
    def linear(opts: LinearOptions, overrides: dict) -> None:
        from genaug.evaluate.run import eval_linear

        eval_linear(**_setup(opts, opts.shards))

    @command(ev, "knn", options=KnnOptions)
    def knn(opts: KnnOptions, overrides: dict) -> None:
        from genaug.evaluate.run import eval_knn

        eval_knn(**_setup(opts, opts.shards))

    @command(ev, "ood", options=OodOptions)
    def ood(opts: OodOptions, overrides: dict) -> None:
        from genaug.evaluate.run import eval_ood

        eval_ood(**_setup(opts, opts.in_set, opts.out_sets))

    @command(ev, "similarity", options=SimilarityOptions)
    def similarity(opts: SimilarityOptions, overrides: dict) -> None:
        from genaug.evaluate.run import eval_similarity

        eval_similarity(**_setup(opts, opts.shards))

    @command(ev, "report", options=ReportOptions)
    def report(opts: ReportOptions, overrides: dict) -> None:
        from genaug.evaluate.run import eval_report

        eval_report(opts.runs, opts.png, opts.metrics or None, opts.quiet)

    app.add_typer(ev, name="eval")
