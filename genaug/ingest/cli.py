"""`genaug ingest`."""

from __future__ import annotations

import typer

from genaug.shards.storage import STORAGE_OPTION_HELP

DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # genaug.ingest.images.DEFAULT_MAX_BYTES (not imported: --help stays fast)


def register(app: typer.Typer) -> None:
    """Add the `ingest` command to the CLI."""

    @app.command(
        "ingest",
        help="Turn a source image set into a shard set split of WebDataset tars with labels. "
        "SOURCE is an ImageNet-style tree (one folder per class, classes sorted as torchvision's ImageFolder "
        "does), a flat folder of images (no labels), existing WebDataset .tar files (labels from .cls or "
        "--label-key, .txt captions kept), or a Hugging Face `datasets` set: a save_to_disk folder, parquet "
        "files, or a hub name with --layout hf (needs genaug[hf]). Shards are written in a seeded shuffled order "
        "by default (--order sorted keeps the input's order). Resumable: rerun the same command after a crash. "
        "Bad files are skipped and recorded in the shard stats. "
        "Example: `genaug ingest /data/imagenet/train --shards imagenet --split train --short-side 256`.",
    )
    def ingest(
        source: str = typer.Argument(
            ...,
            help="Image folder tree, flat image folder, folder of .tar shards, `datasets` folder or parquet, "
            "or a Hugging Face hub name (with --layout hf).",
        ),
        shards: str = typer.Option(
            ..., "--shards", help="Shard set name (written to shards/NAME), path or URL (s3://bucket/prefix/set)."
        ),
        split: str = typer.Option("train", "--split", help="Split name: train, val, ..."),
        per_shard: int = typer.Option(1000, "--per-shard", help="Samples per tar shard."),
        short_side: int = typer.Option(
            None,
            "--short-side",
            help="Downscale so the short side is at most this (ImageNet copies are usually stored at 256).",
        ),
        max_side: int = typer.Option(None, "--max-side", help="Downscale so the long side is at most this."),
        quality: int = typer.Option(95, "--quality", help="JPEG quality of re-encoded images."),
        workers: int = typer.Option(None, "--workers", help="Worker processes (default: number of CPUs; 0 = none)."),
        layout: str = typer.Option(
            "auto", "--layout", help="auto, imagefolder, flat, wds or hf (a `datasets` folder, parquet or hub name)."
        ),
        order: str = typer.Option(
            None,
            "--order",
            help="shuffled (default: a seeded permutation of the input, recorded in the manifest) or sorted (the "
            "input's order). A split ingested before genaug recorded an order resumes sorted.",
        ),
        order_seed: int = typer.Option(
            None, "--order-seed", help="Seed of the shuffled order (default 0; recorded in the manifest)."
        ),
        label_key: str = typer.Option(
            None,
            "--label-key",
            help="WebDataset sources: where a sample's label is: a field such as `cls`, or a path into its JSON "
            "such as `json.label` (img2dataset's --save_additional_columns). Class names become ids in sorted "
            "order, recorded in the manifest. Default: the `.cls` field when present.",
        ),
        image_column: str = typer.Option(
            None, "--image-column", help="Hugging Face sets: the image column (default: the one Image feature)."
        ),
        label_column: str = typer.Option(
            None,
            "--label-column",
            help="Hugging Face sets: the label column, ClassLabel (ids and names kept as they are), integer or "
            "string (names mapped to ids in sorted order). Default: the one ClassLabel feature, else none.",
        ),
        hf_config: str = typer.Option(None, "--hf-config", help="Hugging Face hub sets: the configuration name."),
        hf_split: str = typer.Option(
            None,
            "--hf-split",
            help="Hugging Face sets with several splits: the split to read (default: the only one, else --split).",
        ),
        hf_cache_dir: str = typer.Option(
            None,
            "--hf-cache-dir",
            help="Where `datasets` keeps the arrow copy of parquet and hub sets (default: HF_DATASETS_CACHE).",
        ),
        min_side: int = typer.Option(8, "--min-side", help="Skip images whose short side is smaller than this."),
        max_pixels: int = typer.Option(
            178_956_970, "--max-pixels", help="Skip images with more pixels than this (decompression-bomb limit)."
        ),
        max_bytes: int = typer.Option(
            DEFAULT_MAX_BYTES,
            "--max-bytes",
            help="Skip (and record) source files or tar members larger than this many bytes (default 256 MiB).",
        ),
        reencode: bool = typer.Option(
            False,
            "--reencode",
            help="Re-encode JPEGs even when they need no change "
            "(by default an RGB JPEG that needs no resize is stored as it is).",
        ),
        overwrite: bool = typer.Option(
            False,
            "--overwrite",
            help="Replace a split made with other settings (deletes only the files genaug wrote there).",
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        storage_option: list[str] = typer.Option(
            [],
            "--storage-option",
            help=STORAGE_OPTION_HELP,
        ),
    ) -> None:
        from genaug.ingest.hf import HFOptions
        from genaug.ingest.run import ingest as run_ingest
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(storage_option, shards, str(source))
        summary = run_ingest(
            source,
            shards,
            split,
            per_shard,
            short_side,
            max_side,
            quality,
            workers,
            layout,
            min_side,
            max_pixels,
            reencode,
            overwrite,
            progress=not quiet,
            max_bytes=max_bytes,
            order=order,
            order_seed=order_seed,
            label_key=label_key,
            hf=HFOptions(image_column, label_column, hf_config, hf_split, hf_cache_dir),
        )
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
