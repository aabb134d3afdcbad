"""What one `genaug ingest` takes, declared once: each field is a flag of the command and a typed attribute of the
ingest code (genaug.ingest.run.run_ingest); bounds are checked here, by the model, and nowhere else."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import field_validator, model_validator

from genaug.core.config import Settings, setting
from genaug.core.errors import GenaugError
from genaug.shards.layout import check_name
from genaug.shards.options import storage_option_field

#: rows and shards are numbered with 6 digits (s000042r000007, 000042.tar)
MAX_PER_SHARD = 1_000_000
ORDERS = ("shuffled", "sorted")
#: source files or tar members larger than this are skipped (and recorded) unless --max-bytes says otherwise
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def max_workers() -> int:
    """The most worker processes --workers accepts on this machine."""
    return max(256, 4 * (os.cpu_count() or 1))


class IngestOptions(Settings):
    """Turn a source image set into a shard set split of WebDataset tars with labels. SOURCE is an ImageNet-style tree
    (one folder per class, classes sorted as torchvision's ImageFolder does), a flat folder of images (no labels),
    existing WebDataset .tar files (labels from .cls or --label-key, .txt captions kept), or a Hugging Face
    `datasets` set: a save_to_disk folder, parquet files, or a hub name with --layout hf (needs genaug[hf]). Shards
    are written in a seeded shuffled order by default (--order sorted keeps the input's order). Resumable: rerun the
    same command after a crash. Bad files are skipped and recorded in the shard stats. Example: `genaug ingest
    /data/imagenet/train --shards imagenet --split train --short-side 256`."""

    where: ClassVar[str] = "flag"

    source: str = setting(
        ...,
        "Image folder tree, flat image folder, folder of .tar shards, `datasets` folder or parquet, "
        "or a Hugging Face hub name (with --layout hf).",
        "SOURCE",
        argument=True,
    )
    shards: str = setting(
        ..., "Shard set name (written to shards/NAME), path or URL (s3://bucket/prefix/set).", "--shards"
    )
    split: str = setting("train", "Split name: train, val, ...", "--split")
    per_shard: int = setting(1000, "Samples per tar shard.", "--per-shard", ge=1, le=MAX_PER_SHARD)
    short_side: int | None = setting(
        None,
        "Downscale so the short side is at most this (ImageNet copies are usually stored at 256).",
        "--short-side",
        ge=1,
    )
    max_side: int | None = setting(None, "Downscale so the long side is at most this.", "--max-side", ge=1)
    quality: int = setting(95, "JPEG quality of re-encoded images.", "--quality", ge=1, le=100)
    workers: int | None = setting(None, "Worker processes (default: number of CPUs; 0 = none).", "--workers", ge=0)
    layout: str = setting(  # checked where sources are read (genaug.ingest.sources.LAYOUTS), for every caller
        "auto", "auto, imagefolder, flat, wds or hf (a `datasets` folder, parquet or hub name).", "--layout"
    )
    order: str | None = setting(
        None,
        "shuffled (default: a seeded permutation of the input, recorded in the manifest) or sorted (the "
        "input's order). A split ingested before genaug recorded an order resumes sorted.",
        "--order",
    )
    order_seed: int | None = setting(
        None, "Seed of the shuffled order (default 0; recorded in the manifest).", "--order-seed", ge=0, le=2**63 - 1
    )
    label_key: str | None = setting(
        None,
        "WebDataset sources: where a sample's label is: a field such as `cls`, or a path into its JSON "
        "such as `json.label` (img2dataset's --save_additional_columns). Class names become ids in sorted "
        "order, recorded in the manifest. Default: the `.cls` field when present.",
        "--label-key",
    )
    image_column: str | None = setting(
        None, "Hugging Face sets: the image column (default: the one Image feature).", "--image-column"
    )
    label_column: str | None = setting(
        None,
        "Hugging Face sets: the label column, ClassLabel (ids and names kept as they are), integer or "
        "string (names mapped to ids in sorted order). Default: the one ClassLabel feature, else none.",
        "--label-column",
    )
    hf_config: str | None = setting(None, "Hugging Face hub sets: the configuration name.", "--hf-config")
    hf_split: str | None = setting(
        None,
        "Hugging Face sets with several splits: the split to read (default: the only one, else --split).",
        "--hf-split",
    )
    hf_cache_dir: str | None = setting(
        None,
        "Where `datasets` keeps the arrow copy of parquet and hub sets (default: HF_DATASETS_CACHE).",
        "--hf-cache-dir",
    )
    min_side: int = setting(
        8, "Skip images whose short side is smaller than this (1 accepts every size).", "--min-side", ge=1
    )
    max_pixels: int = setting(
        178_956_970, "Skip images with more pixels than this (decompression-bomb limit).", "--max-pixels", ge=1
    )
    max_bytes: int = setting(
        DEFAULT_MAX_BYTES,
        "Skip (and record) source files or tar members larger than this many bytes (default 256 MiB).",
        "--max-bytes",
        ge=1,
    )
    reencode: bool = setting(
        False,
        "Re-encode JPEGs even when they need no change "
        "(by default an RGB JPEG that needs no resize is stored as it is).",
        "--reencode",
    )
    overwrite: bool = setting(
        False, "Replace a split made with other settings (deletes only the files genaug wrote there).", "--overwrite"
    )
    quiet: bool = setting(False, "No progress bar.", "--quiet")
    storage_option: list[str] = storage_option_field()

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        check_name(v, "--split")
        if v == "gen":
            raise GenaugError("--split 'gen' is reserved for generated columns: choose another split name")
        return v

    @field_validator("order")
    @classmethod
    def _order(cls, v: str | None) -> str | None:
        if v is not None and v not in ORDERS:
            raise GenaugError(f"--order {v!r} is unknown: choose shuffled (the default) or sorted (the input's order)")
        return v

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int | None) -> int | None:
        if v is not None and v > max_workers():
            raise ValueError(f"at most {max_workers()} worker processes (0 = none), got {v}")
        return v

    @model_validator(mode="after")
    def _seed_needs_shuffle(self) -> IngestOptions:
        if self.order_seed is not None and self.order == "sorted":
            raise GenaugError("--order-seed seeds the shuffled order: it does not apply to --order sorted")
        return self

    def hf_options(self):  # noqa: ANN201 - genaug.ingest.hf is imported on use (it needs numpy; --help stays fast)
        """The Hugging Face reading options (genaug.ingest.hf.HFOptions) these options hold."""
        from genaug.ingest.hf import HFOptions

        return HFOptions(self.image_column, self.label_column, self.hf_config, self.hf_split, self.hf_cache_dir)
