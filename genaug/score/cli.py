"""`genaug score`: the CLI face of genaug.score.run.score()."""

from __future__ import annotations

import typer

from genaug.shards.storage import STORAGE_OPTION_HELP


def register(app: typer.Typer) -> None:
    """Add the `score` command to the CLI."""

    @app.command(
        "score",
        help="Write fidelity scores (cosine similarity of each variant to its source, diversity, blank and "
        "near-copy flags) of a generated column that has none, as an aligned side column "
        "shards/<set>/scores/<column>/<split>/; the generated shards are not rewritten. Rerun to resume. "
        "See docs/fidelity.md.",
    )
    def score_cmd(
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL (s3://...)."),
        gen: str = typer.Option(..., "--gen", help="Generated column to score."),
        split: str = typer.Option("train", "--split", help="Split of the column."),
        encoder: str = typer.Option(
            None,
            "--encoder",
            help="Feature space: clip, swav, or a path (CLIP image-encoder folder or SwAV checkpoint). "
            "Default: the column's generator's own (CLIP image embedding for sd/sd-unclip, SwAV for icgan).",
        ),
        weights: str = typer.Option(None, "--weights", help="Local model folder (as for `genaug generate`)."),
        device: str = typer.Option(None, "--device", help="Default: cuda when available, else cpu."),
        batch_size: int = typer.Option(16, "--batch-size", help="Images per encoder forward."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace scores made with another encoder."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        storage_option: list[str] = typer.Option(
            [],
            "--storage-option",
            help=STORAGE_OPTION_HELP,
        ),
    ) -> None:
        from genaug.core.devices import check_device
        from genaug.score.run import score
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(storage_option, shards)
        check_device(device)
        out = score(shards, gen, split, encoder, weights, device, batch_size, overwrite, not no_progress)
        s = out.get("summary") or {}
        typer.echo(
            f"scores of {gen}: {out['folder']}: {len(out['shards'])} shards scored now; "
            f"mean {s.get('mean')}, p05 {(s.get('quantiles') or {}).get('p05')}, "
            f"blank {s.get('blank')}, near-copy {s.get('near_copy')}, diversity {s.get('diversity_mean')}"
        )
