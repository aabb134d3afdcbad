"""The completion record of a shard folder: complete.json lists every shard with its count, size and sha256.

Opening a split or a column used to cost one or more requests per shard (each shard's stats, or a check that its
tar exists). A folder whose writers have all finished gets one small document instead, so a reader opens it with
one GET. The record is derived data: every field comes from the per-shard stats, which stay the source of truth.

Who writes it, and why two writers finishing together cannot lose it: every writer (ingest, generate's lease
runner and Ray driver, score) calls `finish_folder` after its own last commit. `finish_folder` lists the folder
afresh (one LIST, never a cached one), and only when every shard the manifest names has its tar and its stats does
it read all the stats and PUT the record. The store is linearizable (local files; S3 and GCS are strongly
consistent), so of two writers committing the last two shards at the same time at least one lists after both
commits and writes the record; when both do, they write the same bytes (no timestamp, nothing writer-specific),
each by one atomic PUT (locally: temp file + rename, a temp name per thread). A folder being rewritten loses its
record first: `cleanup_shard` (called before a shard is redone) and `ShardWriter.prepare(overwrite=True)` delete it.

Who reads it (`read_record`): the stream's `open_columns`. A record is used only when it is valid for the manifest
it sits beside (same format, the sha256 of that manifest, the same shard names); otherwise, or without one (a set
written before records existed), the reader falls back to the per-shard checks. The record's sha256 of each shard is
the same checksum its stats hold, and the stream checks every shard's bytes against it when it reads the shard, so a
stale record can cost a shard (reported, `genaug verify` names it), never serve wrong bytes.
"""

from __future__ import annotations

import hashlib
import json
import warnings

from genaug.core.jsonio import record_json
from genaug.shards.layout import RECORD_NAME, stats_name, verify_command
from genaug.shards.manifest import read_manifest
from genaug.shards.storage import Location, RemotePath, as_location, list_sizes, put_atomic, read_many

FORMAT = "genaug-complete/1"


def manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest document (canonical JSON): ties a record to the manifest it was written for."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def build_record(folder: Location, manifest: dict | None = None) -> dict | None:
    """The completion record of `folder` from its listing and stats, or None while a named shard is not committed."""
    folder = as_location(folder)
    manifest = read_manifest(folder) if manifest is None else manifest
    names = [n for n in manifest.get("shards") or [] if isinstance(n, str)]
    if not names:
        return None
    sizes = list_sizes(folder)  # one fresh listing: a cached one could miss a peer's last commit
    stats_names = [stats_name(int(n[:6])) for n in names]
    if any(n not in sizes for n in names) or any(s not in sizes for s in stats_names):
        return None
    raw = read_many([folder / s for s in stats_names])
    shards = []
    for name, data in zip(names, raw, strict=True):
        try:
            st = json.loads(data.decode("utf-8")) if data is not None else None
        except (ValueError, UnicodeDecodeError):
            st = None
        if not isinstance(st, dict) or st.get("bytes") != sizes[name] or not st.get("sha256"):
            return None  # a torn or foreign stats file: the shard is not done
        count, size = int(st.get("count", 0)), int(st["bytes"])
        shards.append({"name": name, "count": count, "bytes": size, "sha256": st["sha256"]})
    return {
        "format": FORMAT,
        "manifest_sha256": manifest_digest(manifest),
        "total": sum(s["count"] for s in shards),
        "shards": shards,
    }


def finish_folder(folder: Location) -> dict | None:
    """Write `folder`'s completion record when every shard its manifest names is committed; return it (or None).

    Idempotent: any writer may call it after its own last commit, several at once (see the module docstring)."""
    folder = as_location(folder)
    if isinstance(folder, RemotePath) and not folder.writable:
        return None
    doc = build_record(folder)
    if doc is not None:
        put_atomic(folder / RECORD_NAME, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")
    return doc


def drop_record(folder: Location) -> None:
    """Delete `folder`'s completion record (a shard is about to be redone); nothing when it has none."""
    folder = as_location(folder)
    if isinstance(folder, RemotePath) and not folder.writable:
        return
    (folder / RECORD_NAME).unlink(missing_ok=True)


def load_record(folder: Location) -> dict | None:
    """The parsed complete.json of `folder`, or None when it has none or it is not JSON."""
    path = as_location(folder) / RECORD_NAME
    try:
        data = path.read_bytes()  # one GET; a missing record is a 404, not an error
    except FileNotFoundError:
        return None
    return record_json(data, path)


def record_problem(doc: dict, manifest: dict) -> str | None:
    """Why record `doc` does not describe the folder of `manifest` (None when it does)."""
    if doc.get("format") != FORMAT:
        return f"format {doc.get('format')!r} is not {FORMAT}"
    if doc.get("manifest_sha256") != manifest_digest(manifest):
        return "it was written for another manifest.json"
    shards = doc.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        return "its shard list is not a list of entries"
    if [s.get("name") for s in shards] != list(manifest.get("shards") or []):
        return "it lists other shards than manifest.json"
    if any(not isinstance(s.get("count"), int) or not s.get("sha256") for s in shards):
        return "an entry lacks its count or sha256"
    return None


def read_record(folder: Location, manifest: dict) -> dict[str, dict] | None:
    """{shard name: {count, bytes, sha256}} from `folder`'s record when it is valid for `manifest`, else None.

    One GET. No record (an older set): None, and the caller checks shard by shard as before. A record that does not
    match its manifest: None with a warning (the folder changed since it was written; `genaug verify` says how)."""
    folder = as_location(folder)
    doc = load_record(folder)
    if doc is None:
        return None
    why = record_problem(doc, manifest)
    if why is not None:
        warnings.warn(
            f"genaug: ignoring {folder / RECORD_NAME} ({why}): opening the folder shard by shard; "
            f"rerun the stage that wrote it (or {verify_command(folder, '--write-records')}) to renew it",
            stacklevel=2,
        )
        return None
    return {s["name"]: s for s in doc["shards"]}
