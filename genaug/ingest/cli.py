"""`genaug ingest`: its options are declared once, in genaug.ingest.options."""

from __future__ import annotations

import typer

from genaug.core.cli_model import command
from genaug.ingest.options import IngestOptions


def register(app: typer.Typer) -> None:
    """Add the `ingest` command to the CLI."""

    @command(app, "ingest", options=IngestOptions)
    def ingest(opts: IngestOptions, overrides: dict) -> None:
        from genaug.ingest.run import run_ingest
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(opts.storage_option, opts.shards, opts.source)
        summary = run_ingest(opts)
        print(format_summary(summary))


def format_summary(s: dict) -> str:
    """One readable paragraph of an ingest summary."""
    lines = [
        f"ingested {s['images_written']} images into {s['folder']} ({s['layout']} layout, {s['classes']} classes, "
        f"{s.get('order', 'sorted')} order)",
        f"  shards: {s['shards']} ({s['shards_written']} written now, {s['shards_skipped']} already done)",
        f"  skipped bad files: {s['images_failed']} (errors in the shards' .json stats)"
        + (
            f", {s['scan_skipped']} unreadable folders/entries (manifest.json scan_skipped)"
            if s["scan_skipped"]
            else ""
        ),
        f"  time: {s['seconds']} s, {s['images_per_s']} images/s",
    ]
    return "\n".join(lines)
