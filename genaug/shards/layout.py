"""Where a shard set's files live: shards/<set>/<split>/, gen/<recipe>/<split>/ and scores/<column>/<split>/.

A read-only (https://) host is never listed: its splits are found by their manifest.json under the conventional
split names (UNLISTED_SPLITS), a split's shards are those its manifest names, and generated columns are read when
named (--gen); everywhere else folders are listed as before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.shards.storage import Location, RemotePath, as_location, check_bucket, is_url, read_json

SHARD_RE = re.compile(r"^(\d{6})\.tar$")
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_HOME = "shards"
#: fields that hold a source image, in order of preference
IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")
#: split names looked for on a host that cannot be listed (https://): a split is there when its manifest.json is
UNLISTED_SPLITS = ("train", "val", "validation", "test")
#: the ingest options a source manifest records as `ingest_flags` (SOURCE, --shards and --split are where; the rest
#: is how: workers, progress, --overwrite, the cache and storage options, which may hold credentials); the hint
#: built from them prints no other flag
INGEST_RECORDED = (
    "layout", "per_shard", "short_side", "max_side", "quality", "min_side", "max_pixels", "max_bytes", "reencode",
    "order", "order_seed", "label_key", "image_column", "label_column", "hf_config", "hf_split",
)  # fmt: skip
#: the completion record of a shard folder (genaug.shards.complete): every shard's count, size and checksum
RECORD_NAME = "complete.json"


def is_unlisted(location: Location) -> bool:
    """True for a location whose folders cannot be listed (a read-only https:// or http:// host)."""
    return isinstance(location, RemotePath) and not location.writable


def verify_command(folder: Location, *flags: str) -> str:
    """`genaug verify --shards ROOT FLAGS` for a split, column or score folder (or a shard in one): a hint that runs."""
    import shlex

    f = as_location(folder)
    if SHARD_RE.match(f.name):
        f = f.parent
    root = f.parent.parent.parent if f.parent.parent.name in ("gen", "scores") else f.parent
    return f"`genaug verify --shards {' '.join(shlex.quote(a) for a in (str(root), *flags))}`"


def column_command(stage: str, folder: Location, *flags: str, name_flag: str = "--gen") -> str:
    """`genaug STAGE --shards ROOT --gen NAME --split SPLIT FLAGS` for a generated or score column's split folder (or
    a shard in one): a hint that runs (e.g. stage `index` or `score`; `name_flag` names the column for the stage)."""
    import shlex

    f = as_location(folder)
    if SHARD_RE.match(f.name):
        f = f.parent
    root, name = f.parent.parent.parent, f.parent.name
    args = [stage, "--shards", str(root), name_flag, name, "--split", f.name, *flags]
    return "`genaug " + " ".join(shlex.quote(a) for a in args) + "`"


def ingest_command(folder: Location, manifest: dict | None) -> str | None:
    """`genaug ingest SOURCE --shards ROOT --split SPLIT FLAGS` that resumes (or repairs) the ingest of source split
    `folder` (or a shard in one), from the source and flags its manifest records; None for a manifest that records
    none (not a source split, or written before genaug recorded them)."""
    import shlex

    if not isinstance(manifest, dict) or manifest.get("kind", "source") != "source":
        return None
    if manifest.get("source_resolved") is not True:  # planned from SOURCE as the user spelled it: unknown here
        return None
    flags, source = manifest.get("ingest_flags"), manifest.get("source")
    if not isinstance(flags, list) or not all(isinstance(w, str) for w in flags) or not isinstance(source, str):
        return None
    if any(w.startswith("-") and w[2:].replace("-", "_") not in INGEST_RECORDED for w in flags):  # edited by hand
        return None
    f = as_location(folder)
    if SHARD_RE.match(f.name) or f.name == "manifest.json":
        f = f.parent
    words = ["genaug", "ingest", source, "--shards", str(f.parent), "--split", f.name, *flags]
    return "`" + " ".join(shlex.quote(w) for w in words) + "`"


def finish_ingest(folder: Location, manifest: dict | None) -> str:
    """What to do about an incomplete source split: the ingest command its manifest records (it resumes), else a
    verify command that names what is missing."""
    cmd = ingest_command(folder, manifest)
    return f"finish its ingest: {cmd}" if cmd else f"rerun the ingest that made it, or {verify_command(folder)}"


def status_command(folder: Location) -> str:
    """`genaug generate --shards ROOT --column NAME --split SPLIT --status` for a generated column's split folder (or
    a shard in one): a hint that runs and shows which shards are still to be made."""
    return column_command("generate", folder, "--status", name_flag="--column")


def shard_name(index: int) -> str:
    """File name of shard number `index`: 000042.tar."""
    return f"{index:06d}.tar"


def stats_name(index: int) -> str:
    """File name of the stats (completion marker) of shard `index`: 000042.json."""
    return f"{index:06d}.json"


def make_key(shard: int, row: int) -> str:
    """Stable sample key from shard index and row: s000042r000007 (no dots, independent of workers)."""
    return f"s{shard:06d}r{row:06d}"


GENAUG_KEY_RE = re.compile(r"^s(\d{6})r(\d{6})$")


def parse_key(key: str) -> tuple[int, int] | None:
    """(shard, row) of a key genaug made (`make_key`), or None for a key kept from the user's own set."""
    m = GENAUG_KEY_RE.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_key(key: str) -> str:
    """Return `key` if it is a valid sample key (letters, digits, _ and -), else raise."""
    if not KEY_RE.match(key):
        raise GenaugError(f"sample key {key!r} is invalid: keys may hold only letters, digits, '_' and '-' (no dots)")
    return key


def check_name(value: object, flag: str) -> str:
    """Return `value` if it is one safe path component (a split, column or recipe name), else raise naming `flag`."""
    if not isinstance(value, str):
        raise GenaugError(f"{flag} must be a name (text), got {type(value).__name__} {value!r}")
    problem = None
    if not value:
        problem = "it is empty"
    elif value in (".", ".."):
        problem = f"{value!r} names a folder above or at the shard set, not a new one"
    elif "/" in value or "\\" in value or (os.altsep and os.altsep in value):
        problem = "it holds a path separator ('/' or '\\')"
    elif "\0" in value:
        problem = "it holds a NUL character"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        problem = "it holds a control character"
    elif value != value.strip():
        problem = "it starts or ends with white space"
    elif len(value.encode("utf-8", "surrogateescape")) > 255:
        problem = "it is longer than 255 bytes"
    if problem:
        raise GenaugError(
            f"{flag} {value!r} is not a valid name ({problem}): give one folder name such as 'train' "
            "(a single path component: not '.' or '..', no '/', '\\', NUL or control characters)"
        )
    return value


def shards_home() -> Location:
    """The folder (or URL prefix) that `--shards NAME` is relative to: $GENAUG_SHARDS or ./shards."""
    return as_location(os.environ.get("GENAUG_SHARDS", DEFAULT_HOME))


def resolve_shard_set(name_or_path: str | os.PathLike | RemotePath) -> Location:
    """`--shards NAME` means shards/NAME; a URL (s3://, gs://, https://) is a RemotePath; anything else a path."""
    text = str(name_or_path)
    if not text:
        raise GenaugError("--shards is empty: give a shard set name (shards/NAME), a path or a URL (s3://...)")
    if isinstance(name_or_path, RemotePath) or is_url(text):
        return as_location(text)
    p = Path(text)
    if os.sep in text or "/" in text or p.exists() or text.startswith("."):
        return p
    return shards_home() / text


@dataclass(frozen=True)
class ShardSet:
    """A shard set rooted at `root`: source splits and generated columns."""

    root: Location

    @classmethod
    def open(cls, name_or_path: str | os.PathLike | RemotePath, must_exist: bool = True) -> ShardSet:
        """Open a shard set by name, path or URL; with must_exist, a missing set is a user error."""
        root = resolve_shard_set(name_or_path)
        if isinstance(root, RemotePath):
            check_bucket(root)
        if must_exist and is_unlisted(root):
            if not cls(root).splits():
                names = ", ".join(UNLISTED_SPLITS)
                raise GenaugError(
                    f"shard set {str(root)!r} not found: no manifest.json under {root}/ for any of the splits {names} "
                    f"(a {root.scheme}:// host is not listed, so only these names are looked for): check the URL"
                )
            return cls(root)
        if must_exist and not root.is_dir():
            raise GenaugError(
                f"shard set {str(root)!r} does not exist: run `genaug ingest SOURCE --shards {name_or_path}`"
            )
        return cls(root)

    @property
    def remote(self) -> bool:
        """True when the set lives in an object store (a URL), not on a filesystem."""
        return isinstance(self.root, RemotePath)

    def split_dir(self, split: str) -> Location:
        """Folder of the source shards of `split` (a single, checked folder name)."""
        return self.root / check_name(split, "--split")

    def gen_dir(self, recipe: str, split: str) -> Location:
        """Folder of the generated column `recipe` for `split` (both single, checked folder names)."""
        return (
            self.root / "gen" / check_name(recipe, "--column (or the recipe's `name:`)") / check_name(split, "--split")
        )

    def scores_dir(self, column: str, split: str) -> Location:
        """Folder of the fidelity scores of generated column `column` for `split` (a side column of `genaug score`)."""
        return self.root / "scores" / check_name(column, "--gen") / check_name(split, "--split")

    def splits(self) -> list[str]:
        """Source splits present (folders with a manifest.json), sorted; unlisted hosts: UNLISTED_SPLITS found."""
        if is_unlisted(self.root):
            return sorted(s for s in UNLISTED_SPLITS if (self.root / s / "manifest.json").is_file())
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and p.name not in ("gen", "scores") and (p / "manifest.json").exists()
        )

    def columns(self) -> list[str]:
        """Generated columns present, sorted (none on an unlisted host: columns are read when named)."""
        if is_unlisted(self.root):
            return []
        g = self.root / "gen"
        return sorted(p.name for p in g.iterdir() if p.is_dir()) if g.is_dir() else []

    def column_splits(self, recipe: str, kind: str = "gen") -> list[str]:
        """Splits that generated column `recipe` has (kind "scores": that its score side column has), sorted."""
        d = self.root / kind / recipe
        if is_unlisted(self.root):
            return [s for s in self.splits() if (d / s / "manifest.json").is_file()]
        return (
            sorted(p.name for p in d.iterdir() if p.is_dir() and (p / "manifest.json").exists()) if d.is_dir() else []
        )

    def score_columns(self) -> list[str]:
        """Generated columns that have a score side column (shards/<set>/scores/<column>/), sorted (unlisted: none)."""
        if is_unlisted(self.root):
            return []
        g = self.root / "scores"
        return sorted(p.name for p in g.iterdir() if p.is_dir()) if g.is_dir() else []


def list_shards(folder: Location) -> list[int]:
    """Indices of the committed .tar files in `folder`, sorted (unlisted hosts: the tars its manifest names)."""
    if is_unlisted(folder):
        return _manifest_shards(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = SHARD_RE.match(p.name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _manifest_shards(folder: RemotePath) -> list[int]:
    """Indices of the shards that `folder`'s manifest.json names ([] without one): a listing without `ls`."""
    path = folder / "manifest.json"
    if not path.is_file():
        return []
    doc = read_json(path)
    names = doc.get("shards") if isinstance(doc, dict) else None
    return sorted({int(m.group(1)) for n in names or [] if isinstance(n, str) and (m := SHARD_RE.match(n))})
