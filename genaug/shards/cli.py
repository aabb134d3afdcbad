"""`genaug verify` and `genaug index`: their options are declared once, in genaug.shards.options."""

from __future__ import annotations

import sys

import typer

from genaug.core.cli_model import command
from genaug.shards.options import IndexOptions, VerifyOptions


def register(app: typer.Typer) -> None:
    """Add the `verify` and `index` commands to the CLI."""

    @command(
        app,
        "verify",
        "Check every shard of a shard set against its stats and manifest: counts, sha256, "
        "keys, fields, and alignment of generated columns with their source. Prints one problem per line; "
        "exit status 1 if there is any. Example: `genaug verify --shards imagenet`.",
        options=VerifyOptions,
    )
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
                status += " (no completion record complete.json: `genaug verify --write-records` adds it)"
            print(
                f"{rep.folder}: {rep.shards} shards, {rep.samples} samples, {rep.failures} recorded failures: {status}",
                file=sys.stderr,
            )
        if problems:
            raise typer.Exit(1)

    @command(
        app,
        "index",
        "Add member indexes (offset, size, CRC-32 of every member) to a generated column written before they "
        "existed, so training reads only the variants its views use. Resumable: a killed run is rerun as is, and "
        "shards already indexed are skipped. Example: `genaug index --shards s3://lab/imagenet --gen sd`.",
        options=IndexOptions,
    )
    def index(opts: IndexOptions, overrides: dict) -> None:
        from genaug.shards.indexing import index_column
        from genaug.shards.storage import set_storage_options

        set_storage_options(opts.storage_option)
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
