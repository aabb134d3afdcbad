"""`genaug index`: add member indexes to a generated column written before indexes existed (resumable, per shard).

Each shard is handled by the commit protocol: its tar is read and checked against the sha256 of its stats, the index
NNNNNN.idx.json is stored atomically, then the stats are rewritten (atomically) with the index entry, last. A shard
whose stats already record an index that matches is skipped, so a killed run resumes where it stopped and a second
run does nothing. A tar that no longer matches its stats is reported, never indexed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from genaug.core.errors import GenaugError
from genaug.shards.index import IndexMismatch, build_index, read_index, write_index
from genaug.shards.layout import ShardSet
from genaug.shards.manifest import read_manifest
from genaug.shards.storage import Location, write_json
from genaug.shards.writer import _fault, read_stats


@dataclass
class IndexReport:
    """What `genaug index` did in one column folder."""

    folder: Location
    indexed: list[str] = field(default_factory=list)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def has_index(folder: Location, index: int, stats: dict) -> bool:
    """True when the stats of shard `index` record an index that is there, intact and made from this tar."""
    if "index" not in stats:
        return False
    try:
        doc, _ = read_index(folder, index, stats)
    except IndexMismatch:
        return False
    return doc.get("tar_sha256") == stats.get("sha256") and doc.get("tar_bytes") == stats.get("bytes")


def index_folder(folder: Location) -> IndexReport:
    """Add an index to every complete shard of `folder` that lacks a valid one (see the module docstring)."""
    rep = IndexReport(folder)
    for name in read_manifest(folder).get("shards") or []:
        i = int(name[:6])
        stats = read_stats(folder, i)
        if stats is None:
            rep.problems.append(f"{folder / name}: not complete (no stats): finish the stage that writes it first")
            continue
        if has_index(folder, i, stats):
            rep.skipped += 1
            continue
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError:
            rep.problems.append(f"{folder / name}: missing: rerun the stage that writes it")
            continue
        if len(data) != stats.get("bytes") or hashlib.sha256(data).hexdigest() != stats.get("sha256"):
            rep.problems.append(f"{folder / name}: does not match its stats (changed after commit): not indexed")
            continue
        entry = write_index(folder, i, build_index(data, name))
        _fault("index-sidecar-written", i)
        write_json(folder / f"{i:06d}.json", {**stats, "index": entry})
        rep.indexed.append(name)
    return rep


def index_column(shards: str, gen: str, splits: list[str] | None = None) -> list[IndexReport]:
    """Index every split (or those named) of generated column `gen` of shard set `shards`."""
    ss = ShardSet.open(shards)
    have = ss.column_splits(gen) if gen in ss.columns() else []
    if not have:
        cols = ", ".join(ss.columns()) or "none"
        raise GenaugError(f"shard set {ss.root} has no generated column {gen!r} (columns: {cols}): fix --gen")
    todo = list(splits) if splits else have
    missing = [s for s in todo if s not in have]
    if missing:
        splits_text = ", ".join(have)
        raise GenaugError(f"generated column {gen!r} has no split {missing[0]!r} (splits: {splits_text}): fix --split")
    return [index_folder(ss.gen_dir(gen, s)) for s in todo]
