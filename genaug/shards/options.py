"""Options of the shard commands (`verify`, `index`), and the storage and cache flags every stage command shares.

`--storage-option`, `--cache-dir` and `--cache-limit` are declared here once; a stage's options model takes them as
fields (`storage_option: list[str] = storage_option_field()`), last, so that --help lists them after its own.
"""

from __future__ import annotations

from typing import ClassVar

from genaug.core.config import Settings, setting
from genaug.shards.cache import CACHE_DIR_HELP, CACHE_LIMIT_HELP
from genaug.shards.storage import STORAGE_OPTION_HELP

SHARDS_HELP = "Shard set name (shards/NAME), path or URL (s3://...)."


def storage_option_field() -> list[str]:
    """The `--storage-option key=value` field (repeatable): fsspec options of the shard sets a command opens."""
    return setting(factory=list, help=STORAGE_OPTION_HELP, flag="--storage-option")


def cache_dir_field() -> str | None:
    """The `--cache-dir` field: the local cache of remote shards."""
    return setting(None, CACHE_DIR_HELP, "--cache-dir")


def cache_limit_field() -> str | None:
    """The `--cache-limit` field: the size limit of --cache-dir (checked where the cache is set)."""
    return setting(None, CACHE_LIMIT_HELP, "--cache-limit")


class VerifyOptions(Settings):
    """Check every shard of a shard set against its stats and manifest: counts, sha256, keys, fields, and alignment of
    generated columns with their source. Prints one problem per line; exit status 1 if there is any. Example:
    `genaug verify --shards imagenet`."""

    where: ClassVar[str] = "flag"

    shards: str = setting(..., SHARDS_HELP, "--shards")
    no_sha: bool = setting(False, "Skip the sha256 checks (faster on huge sets).", "--no-sha")
    write_records: bool = setting(
        False,
        "Give every folder that checks out its completion record complete.json (one read opens it for training), "
        "renewing a stale one: for sets written before records existed.",
        "--write-records",
    )
    storage_option: list[str] = storage_option_field()


class IndexOptions(Settings):
    """Add member indexes (offset, size, CRC-32 of every member) to a generated column written before they existed, so
    training reads only the variants its views use. Resumable: a killed run is rerun as is, and shards already
    indexed are skipped. Example: `genaug index --shards s3://lab/imagenet --gen sd`."""

    where: ClassVar[str] = "flag"

    shards: str = setting(..., SHARDS_HELP, "--shards")
    gen: str = setting(..., "Generated column to index.", "--gen")
    split: list[str] = setting(factory=list, help="Split(s) to index (repeatable; default: all).", flag="--split")
    storage_option: list[str] = storage_option_field()
