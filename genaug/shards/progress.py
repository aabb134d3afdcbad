"""The progress record of a generated column: progress.json lists the shards committed so far.

Training on a column that is still being generated (`genaug train --gen-partial`) must learn, at each epoch
boundary, which column shards are committed, without a request per shard. Every generating process (the lease
runner and the Ray workers share one writer thread, genaug.generate.writer) calls `note_committed` right after a
shard's commit (tar, index, stats last); it adds the shard's entry (count, bytes, sha256: the fields of its stats) to
the record. A reader (`read_progress`) opens it with one GET.

    {"format": "genaug-progress/1", "recipe_hash": "...", "shards": {"000003.tar": {"count": 64, "bytes": ...,
     "sha256": "..."}, ...}}

Two processes committing at once must not lose each other's entries; the record is rewritten by read-modify-write
under a condition that fails when a peer wrote in between:

- on a filesystem: an exclusive fcntl lock on progress.json.lock around read, merge and an atomic replace (temp
  file + fsync + rename), so a reader sees the old record or the new one, whole;
- in an S3 store: a PUT with If-Match of the ETag its HEAD saw (If-None-Match: * for the first), retried with a
  fresh read when a peer won;
- in a store without conditional PUT (GCS, an S3 clone that refuses or ignores the conditions): a plain PUT. Every
  write (conditional or not) merges what was read with every entry this process has noted, so there a racing
  peer's update can delay a shard (it joins once its writer commits its next shard, or when the column's
  completion record exists), never list an uncommitted one.

An entry is added only after the shard's stats exist, so the record never names a shard that is not committed. A
process killed between a commit and its note leaves the shard out; the next generating run adds it when it starts
(`reconcile`: one read of the record, then the stats of the committed shards it lacks).
The record is derived data, like the completion record: the stream still checks every shard's bytes against the
sha256 it lists when it reads them, so a stale entry can cost a shard's variants (reported), never serve wrong
bytes. A record of another recipe hash (a column remade under the same name) is replaced by the next commit.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import warnings
from pathlib import Path

from genaug.core.files import write_bytes_atomic
from genaug.core.jsonio import record_json
from genaug.shards.storage import PRECONDITION_CODES, Location, RemotePath, as_location, s3_error_code

FORMAT = "genaug-progress/1"
PROGRESS_NAME = "progress.json"
#: attempts of a conditional update before giving up on this commit's entry (a later commit or completion adds it)
ATTEMPTS = 30

_NOTED: dict[str, dict[str, dict]] = {}  # str(folder) -> entries this process committed (merged into plain PUTs)
_LOCK = threading.Lock()


def entry_of(stats: dict) -> dict:
    """The progress entry of a committed shard: its count, size and sha256 (from its stats)."""
    return {"count": int(stats["count"]), "bytes": int(stats["bytes"]), "sha256": str(stats["sha256"])}


def _merged(doc: dict | None, recipe_hash: str, add: dict[str, dict]) -> dict:
    """`doc` with the entries `add` (a record of another recipe hash, or no valid record, starts afresh)."""
    ok = isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("recipe_hash") == recipe_hash
    shards = dict(doc["shards"]) if ok and isinstance(doc.get("shards"), dict) else {}
    shards.update(add)
    return {"format": FORMAT, "recipe_hash": recipe_hash, "shards": dict(sorted(shards.items()))}


def _encode(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"


def note_committed(folder: Location, name: str, stats: dict, recipe_hash: str) -> bool:
    """Add committed shard `name` (its stats as commit_shard returned them) to `folder`'s progress record.

    True when the record holds it afterwards; False (with a warning) when it could not be written: the shard then
    joins readers later (see the module docstring), generation goes on."""
    return note_many(folder, {name: stats}, recipe_hash)


def reconcile(folder: Location, done: list[str], recipe_hash: str) -> bool:
    """Note the shards of `done` (committed, found by a starting run) that the record lacks: a process killed
    between a commit and its note left them out. One read of the record, then the stats of those only."""
    from genaug.shards.writer import read_stats

    folder = as_location(folder)
    try:
        try:
            old = record_json((folder / PROGRESS_NAME).read_bytes())
        except FileNotFoundError:
            old = None
        listed = set(_merged(old, recipe_hash, {})["shards"])
        found = {n: read_stats(folder, int(n[:6])) for n in done if n not in listed}
    except Exception as e:  # noqa: BLE001 - derived data (see note_committed)
        warnings.warn(f"genaug: could not read {folder / PROGRESS_NAME} ({type(e).__name__}: {e})", stacklevel=2)
        return False
    add = {n: st for n, st in found.items() if st is not None and st.get("sha256") and "count" in st}
    return note_many(folder, add, recipe_hash) if add else True


def note_many(folder: Location, stats_of: dict[str, dict], recipe_hash: str) -> bool:
    """Add committed shards {name: stats} to `folder`'s progress record in one update (see note_committed)."""
    folder = as_location(folder)
    add = {name: entry_of(st) for name, st in stats_of.items()}
    with _LOCK:
        mine = _NOTED.setdefault(str(folder), {})
        mine.update(add)
        mine = dict(mine)
    try:
        if isinstance(folder, RemotePath):
            return _note_remote(folder, add, mine, recipe_hash)
        _note_local(Path(folder), add, recipe_hash)
        return True
    except Exception as e:  # noqa: BLE001 - derived data: a failure to record it never fails the generation
        warnings.warn(
            f"genaug: could not update {folder / PROGRESS_NAME} ({type(e).__name__}: {e}); training with "
            "--gen-partial sees this shard once a later commit rewrites the record or the column completes",
            stacklevel=2,
        )
        return False


def _note_local(folder: Path, add: dict[str, dict], recipe_hash: str) -> None:
    """Read, merge and replace the record under an exclusive lock (every local writer takes the same one)."""
    import fcntl

    path = folder / PROGRESS_NAME
    fd = os.open(folder / (PROGRESS_NAME + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for left in folder.glob(f"{PROGRESS_NAME}.tmp-*"):  # a writer killed mid-update (every writer holds the lock
            left.unlink(missing_ok=True)  # while its temp file exists, so any found now is a dead one's)
        try:
            old = record_json(path.read_bytes())
        except FileNotFoundError:
            old = None
        write_bytes_atomic(path, _encode(_merged(old, recipe_hash, add)))
    finally:
        os.close(fd)  # closing drops the lock


def _note_remote(folder: RemotePath, add: dict[str, dict], mine: dict[str, dict], recipe_hash: str) -> bool:
    """Conditional read-modify-write in an S3 store, else (or when the store refuses conditions) a plain PUT.

    Both write the merge of what was read with every entry this process has noted, so on a store that accepts the
    conditions but ignores them a lost race still costs only a delay (see the module docstring)."""
    path = folder / PROGRESS_NAME
    if folder.scheme == "s3" and hasattr(folder.fs, "call_s3"):
        for _ in range(ATTEMPTS):
            etag, old = _get_tagged(path)
            cond = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
            done = _put_if(path, _encode(_merged(old, recipe_hash, mine)), cond)
            if done is None:
                break  # the store does not take conditional PUTs: a plain one below
            if done:
                return True
            time.sleep(random.uniform(0.01, 0.2))  # a peer wrote in between: read its record and merge again
        else:
            raise RuntimeError(f"{ATTEMPTS} conditional writes lost to concurrent writers")
    try:
        old = record_json(path.read_bytes())
    except FileNotFoundError:
        old = None
    path.write_bytes(_encode(_merged(old, recipe_hash, mine)))
    return True


def _get_tagged(path: RemotePath) -> tuple[str | None, dict | None]:
    """(ETag, parsed record) of the record object, (None, None) when there is none.

    The body is read after the HEAD: if a peer rewrote it in between, the PUT conditioned on the older ETag fails
    and the update is retried, so a merge is never based on a record other than the one its condition names."""
    bucket, _, key = path.key.partition("/")
    try:
        etag = path.fs.call_s3("head_object", Bucket=bucket, Key=key)["ETag"]
        path.fs.invalidate_cache(path.key)
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except Exception as e:  # noqa: BLE001
        if s3_error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None, None
        raise
    return etag, record_json(data)


def _put_if(path: RemotePath, data: bytes, cond: dict) -> bool | None:
    """PUT the record under `cond`: True when stored, False when the condition failed (a peer wrote first), None
    when the store (or an older botocore) does not take the condition at all."""
    bucket, _, key = path.key.partition("/")
    try:
        path.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **cond)
    except Exception as e:  # noqa: BLE001
        code = s3_error_code(e)
        if code in PRECONDITION_CODES:
            return False
        if code in ("NotImplemented", "501") or type(e).__name__ == "ParamValidationError":
            return None
        raise
    path.fs.invalidate_cache(path.parent.key)
    return True


def progress_problem(doc: dict, manifest: dict, counts: dict[str, int]) -> str | None:
    """Why record `doc` does not describe the column of `manifest` (None when it does); `counts`: source counts."""
    if doc.get("format") != FORMAT:
        return f"format {doc.get('format')!r} is not {FORMAT}"
    if doc.get("recipe_hash") != manifest.get("recipe_hash"):
        return "it was written for another recipe hash than manifest.json's"
    shards = doc.get("shards")
    if not isinstance(shards, dict):
        return "its shard list is not a mapping"
    for name, e in shards.items():
        if name not in counts:
            return f"it lists {name!r}, a shard manifest.json does not name"
        if not isinstance(e, dict) or not isinstance(e.get("sha256"), str) or not isinstance(e.get("bytes"), int):
            return f"its entry of {name} lacks its size or sha256"
        if isinstance(e.get("count"), bool) or e.get("count") != counts[name]:
            return f"its entry of {name} counts {e.get('count')!r} samples, the source shard {counts[name]}"
    return None


def read_progress(folder: Location, manifest: dict, counts: dict[str, int]) -> dict[str, dict] | None:
    """{shard name: {count, bytes, sha256}} of the shards `folder`'s record lists as committed, by one GET.

    None when there is no record (a column made before records existed) or it is damaged or foreign (with a
    warning): the caller then checks shard by shard."""
    folder = as_location(folder)
    path = folder / PROGRESS_NAME
    try:
        if isinstance(path, RemotePath):
            path.fs.invalidate_cache(path.key)  # a fresh GET: a cached answer could be an epoch old
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    doc = record_json(data)
    why = "it is not a JSON object" if doc is None else progress_problem(doc, manifest, counts)
    if why is not None:
        warnings.warn(
            f"genaug: ignoring {path} ({why}): checking the column's shards one by one instead",
            stacklevel=2,
        )
        return None
    return dict(doc["shards"])
