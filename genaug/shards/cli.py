"""`genaug verify` and `genaug index`: their options are declared once, in genaug.shards.options."""

from __future__ import annotations

import sys

import typer

from genaug.core.cli_model import command
from genaug.shards.layout import verify_command
from genaug.shards.options import IndexOptions, VerifyOptions


def register(app: typer.Typer) -> None:
    """Add the `verify` and `index` commands to the CLI."""

    @command(app, "verify", options=VerifyOptions)
    def verify(opts: VerifyOptions, overrides: dict) -> None:
        from genaug.shards.storage_flags import apply_storage_flags
        from genaug.shards.verify import verify_set

        apply_storage_flags(opts.storage_option, opts.shards)
        reports, problems = verify_set(opts.shards, check_sha=not opts.no_sha, write=opts.write_records)
        for rep in reports:
            for note in rep.notes:
                print(f"note: {note}")
        for p in problems:
            print(p)
        for rep in reports:
            status = "ok" if not rep.problems else f"{len(rep.problems)} problem(s)"
            if rep.record_missing:
                status += (
                    f" (no completion record complete.json: {verify_command(rep.folder, '--write-records')} adds it)"
                )
            print(
                f"{rep.folder}: {rep.shards} shards, {rep.samples} samples, {rep.failures} recorded failures: {status}",
                file=sys.stderr,
            )
        if problems:
            raise typer.Exit(1)

    @command(app, "index", options=IndexOptions)
    def index(opts: IndexOptions, overrides: dict) -> None:
        from genaug.shards.indexing import index_column
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(opts.storage_option, opts.shards)
        reports = index_column(opts.shards, opts.gen, opts.split)
        for rep in reports:
            for p in rep.problems:
                print(p)
            print(
                f"{rep.folder}: {len(rep.indexed)} shards indexed, {rep.skipped} already indexed, "
                f"{len(rep.problems)} problem(s)",
                file=sys.stderr,
            )
        if any(rep.problems for rep in reports):
            raise typer.Exit(1)
