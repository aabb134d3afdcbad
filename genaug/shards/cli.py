"""`genaug verify` and `genaug index`."""

from __future__ import annotations

import sys

import typer

from genaug.shards.storage import STORAGE_OPTION_HELP


def register(app: typer.Typer) -> None:
    """Add the `verify` and `index` commands to the CLI."""

    @app.command(
        "verify",
        help="Check every shard of a shard set against its stats and manifest: counts, sha256, "
        "keys, fields, and alignment of generated columns with their source. Prints one problem per line; "
        "exit status 1 if there is any. Example: `genaug verify --shards imagenet`.",
    )
    def verify(
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL (s3://...)."),
        no_sha: bool = typer.Option(False, "--no-sha", help="Skip the sha256 checks (faster on huge sets)."),
        write_records: bool = typer.Option(
            False,
            "--write-records",
            help="Give every folder that checks out its completion record complete.json (one read opens it for "
            "training), renewing a stale one: for sets written before records existed.",
        ),
        storage_option: list[str] = typer.Option(
            [],
            "--storage-option",
            help=STORAGE_OPTION_HELP,
        ),
    ) -> None:
        from genaug.shards.storage_flags import apply_storage_flags
        from genaug.shards.verify import verify_set

        apply_storage_flags(storage_option, shards)
        reports, problems = verify_set(shards, check_sha=not no_sha, write=write_records)
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

    @app.command(
        "index",
        help="Add member indexes (offset, size, CRC-32 of every member) to a generated column written before they "
        "existed, so training reads only the variants its views use. Resumable: a killed run is rerun as is, and "
        "shards already indexed are skipped. Example: `genaug index --shards s3://lab/imagenet --gen sd`.",
    )
    def index(
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL (s3://...)."),
        gen: str = typer.Option(..., "--gen", help="Generated column to index."),
        split: list[str] = typer.Option([], "--split", help="Split(s) to index (repeatable; default: all)."),
        storage_option: list[str] = typer.Option(
            [],
            "--storage-option",
            help=STORAGE_OPTION_HELP,
        ),
    ) -> None:
        from genaug.shards.indexing import index_column
        from genaug.shards.storage import set_storage_options

        set_storage_options(storage_option)
        reports = index_column(shards, gen, list(split))
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
