"""The commit protocol (temp file, fsync, validate, rename, stats last) and a resumable shard writer."""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genaug import __version__
from genaug.core.errors import GenaugError
from genaug.core.files import fsync_dir, tmp_suffix
from genaug.shards.index import build_index, index_name, write_index
from genaug.shards.layout import RECORD_NAME, shard_name, stats_name
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.storage import Location, RemotePath, as_location, file_sha256, read_json, size_of, write_json
from genaug.shards.tario import read_samples, write_samples


def _fault(point: str, index: int) -> None:
    """Crash injection for tests: GENAUG_FAULT=<point> or <point>:<shard> kills this process with SIGKILL there."""
    if os.environ.get("GENAUG_FAULT") in (point, f"{point}:{index}"):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _delay(point: str) -> None:
    """Slow-down for tests: GENAUG_TEST_DELAY=<point>=<seconds> sleeps there at every shard (e.g. tar-renamed: each
    shard's tar then sits committed-looking, without its stats, for that long, as on a slow store)."""
    name, _, secs = os.environ.get("GENAUG_TEST_DELAY", "").partition("=")
    if name == point and secs:
        time.sleep(float(secs))


class ShardValidationError(RuntimeError):
    """A freshly written shard failed its re-read check (a bug or a failing disk, never committed)."""


def _validate(data: bytes, keys: list[str], required: Callable[[dict], Iterable[str]] | Sequence[str]) -> None:
    seen = []
    for sample in read_samples(io.BytesIO(data)):  # the reader training uses: webdataset's, with genaug's checks
        need = required(sample) if callable(required) else required
        missing = [f for f in need if f not in sample]
        if missing:
            raise ShardValidationError(f"sample {sample['__key__']} lacks fields {missing}")
        seen.append(sample["__key__"])
    if seen != keys:
        raise ShardValidationError(f"re-read {len(seen)} samples, expected {len(keys)} with the same keys in order")


def commit_shard(
    folder: Location,
    index: int,
    samples: Sequence[dict],
    required_fields: Callable[[dict], Iterable[str]] | Sequence[str] = (),
    stats: dict[str, Any] | None = None,
    with_index: bool = False,
) -> dict:
    """Write shard `index` of `folder` by the commit protocol and return its stats.

    On a filesystem the tar goes to NNNNNN.tar.tmp-<host>-<pid>, is flushed and fsynced, re-read and validated
    (count, keys in order, required fields), renamed to NNNNNN.tar; then the stats file NNNNNN.json is written the
    same way. In an object store the validated bytes are PUT as NNNNNN.tar (a PUT is atomic: the object appears
    whole or not at all), its size is checked, then the stats object is PUT last. Only a shard whose stats exist
    and whose checksum matches is done.

    With `with_index` (generated and score columns) the member index NNNNNN.idx.json (genaug.shards.index) is built
    from the validated bytes and stored atomically before the stats, which record its size and sha256.
    """
    folder = as_location(folder)
    final = folder / shard_name(index)
    buf = io.BytesIO()
    write_samples(buf, samples)
    data = buf.getvalue()
    keys = [s["__key__"] for s in samples]
    if len(set(keys)) != len(keys):
        raise ShardValidationError(f"{final}: duplicate keys")
    if isinstance(folder, RemotePath):
        written = data
        _validate(written, keys, required_fields)
        sha = hashlib.sha256(written).hexdigest()
        _fault("tar-tmp-written", index)
        final.write_bytes(written)
        if size_of(final) != len(written):
            raise ShardValidationError(f"{final}: the stored object's size differs from the {len(written)} bytes sent")
    else:
        tmp = final.with_name(final.name + tmp_suffix())
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            _fault("tar-tmp-written", index)
            with open(tmp, "rb") as f:
                written = f.read()
            _validate(written, keys, required_fields)
            sha = hashlib.sha256(written).hexdigest()
            os.replace(tmp, final)
            fsync_dir(folder)
        finally:
            if tmp.exists():
                tmp.unlink()
    _fault("tar-renamed", index)
    _delay("tar-renamed")
    doc = dict(stats or {})
    if with_index:
        doc["index"] = write_index(folder, index, build_index(written, final.name))
        _fault("index-written", index)
    doc.update(
        shard=final.name,
        count=len(keys),
        sha256=sha,
        bytes=len(written),
        first_key=keys[0] if keys else None,
        last_key=keys[-1] if keys else None,
        genaug_version=__version__,
        committed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    doc.setdefault("failures", [])
    write_json(folder / stats_name(index), doc)
    return doc


def read_stats(folder: Location, index: int) -> dict | None:
    """The stats of shard `index`, or None when it has none (or an unreadable one)."""
    p = as_location(folder) / stats_name(index)
    if not isinstance(p, RemotePath) and not p.exists():
        return None
    try:
        doc = read_json(p)
    except GenaugError:
        return None
    return doc if isinstance(doc, dict) and _stats_fields_ok(doc) else None


def parse_stats(data: bytes | None, where: object) -> dict | None:
    """Stats read as bytes elsewhere (None: missing), checked as read_stats checks them; None when unusable."""
    from genaug.core.jsonio import record_json

    doc = record_json(data, where)
    return doc if doc is not None and _stats_fields_ok(doc) else None


def _stats_fields_ok(doc: dict) -> bool:
    """True when the fields readers compute with hold the right types (counts are whole numbers, the sha text)."""
    for key in ("count", "bytes"):
        v = doc.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            return False
    sha, failures = doc.get("sha256"), doc.get("failures")
    return (sha is None or isinstance(sha, str)) and (failures is None or isinstance(failures, list))


def is_shard_done(folder: Location, index: int, check_sha: bool = True) -> bool:
    """True when shard `index` has a stats file and its tar's size (and sha256) match it."""
    folder = as_location(folder)
    stats = read_stats(folder, index)
    if stats is None:
        return False
    tar = folder / shard_name(index)
    size = size_of(tar)
    if size is None or size != stats.get("bytes"):
        return False
    return not check_sha or file_sha256(tar) == stats.get("sha256")


def cleanup_shard(folder: Location, index: int) -> list[Location]:
    """Delete the leftovers of an unfinished shard `index` (temp files, a tar without valid stats); return them.

    In an object store there are no temp files (a PUT is atomic); an orphan tar object (uploaded, no stats) and
    stale stats are deleted, so nothing half-written is ever taken as done. The folder's completion record goes too
    (the shard is about to be redone: genaug.shards.complete)."""
    folder = as_location(folder)
    removed = []
    if not (isinstance(folder, RemotePath) and not folder.writable):
        (folder / RECORD_NAME).unlink(missing_ok=True)
    prefixes = (shard_name(index) + ".tmp-", f"{index:06d}.json.tmp-", index_name(index) + ".tmp-")
    temps = [] if isinstance(folder, RemotePath) else folder.glob(f"{index:06d}.*")
    for p in temps:
        if p.name.startswith(prefixes):
            p.unlink(missing_ok=True)
            removed.append(p)
    if not is_shard_done(folder, index, check_sha=False):
        for p in (folder / shard_name(index), folder / stats_name(index), folder / index_name(index)):
            if p.exists():
                p.unlink()
                removed.append(p)
    return removed


#: files genaug writes into a shard folder: shard tars, stats, member indexes, the manifest, the completion record,
#: their temp files
WRITTEN_RE = re.compile(r"^(?:\d{6}\.tar|\d{6}\.json|\d{6}\.idx\.json|manifest\.json|complete\.json)(?:\.tmp-[^/]+)?$")


def remove_written_files(folder: Location) -> list[Location]:
    """Delete the files genaug wrote into `folder` (by name pattern, regular files only); leave everything else."""
    removed = []
    for p in sorted(as_location(folder).iterdir(), key=str):
        if WRITTEN_RE.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


@dataclass
class ShardPlan:
    """One planned shard: its index and the work items that become its samples."""

    index: int
    items: list = field(default_factory=list)


class ShardWriter:
    """A resumable writer of one folder of shards: checks the manifest, skips done shards, cleans orphans."""

    def __init__(self, folder: Location, manifest: dict, identity_keys: Sequence[str] = ("plan_hash",)) -> None:
        self.folder = as_location(folder)
        self.manifest = manifest
        self.identity_keys = tuple(identity_keys)

    def prepare(self, overwrite: bool = False) -> None:
        """Create the folder and write the manifest; refuse a folder that holds a different plan."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / "manifest.json").exists():
            old = read_manifest(self.folder, check=False)  # a damaged shard list of the same plan is rewritten
            diff = [k for k in self.identity_keys if old.get(k) != self.manifest.get(k)]
            if diff and not overwrite:
                raise GenaugError(
                    f"{self.folder} already holds shards made with other settings ({', '.join(diff)} differ): "
                    "write to another --shards/--split (or column), or pass --overwrite to replace them"
                )
            if diff and overwrite:
                remove_written_files(self.folder)
        write_manifest(self.folder, self.manifest)

    def pending(self, indices: Iterable[int], check_sha: bool = True) -> list[int]:
        """Indices among `indices` that are not done; their leftovers are deleted."""
        todo = []
        for i in indices:
            if is_shard_done(self.folder, i, check_sha=check_sha):
                continue
            cleanup_shard(self.folder, i)
            todo.append(i)
        return todo

    def commit(
        self, index: int, samples: Sequence[dict], required_fields=(), stats: dict | None = None, with_index=False
    ) -> dict:
        """Commit one shard of this folder (see commit_shard)."""
        return commit_shard(self.folder, index, samples, required_fields, stats, with_index=with_index)

    def finish(self) -> dict | None:
        """After this writer's last commit: the folder's completion record when every shard is done (or None)."""
        from genaug.shards.complete import finish_folder

        return finish_folder(self.folder)
