"""`genaug generate --status`: done / in progress / stale / pending shards, failures, images/s and ETA of a column."""

from __future__ import annotations

from genaug.core.errors import GenaugError
from genaug.generate.column import open_column
from genaug.generate.leases import is_stale, lease_age, lease_path, read_lease
from genaug.shards.layout import ShardSet
from genaug.shards.manifest import read_manifest
from genaug.shards.writer import is_shard_done, read_stats


def column_status(shards: str, column: str, split: str = "train", lease_timeout: float = 300.0) -> dict:
    """Progress figures of a generated column, from its stats files and lease files alone."""
    ss = ShardSet.open(shards)
    folder = ss.gen_dir(column, split)
    if not (folder / "manifest.json").is_file():
        raise GenaugError(
            f"{ss.root} has no generated column {column!r} for split {split!r} "
            f"(columns: {', '.join(ss.columns()) or 'none'}): check --column and --split"
        )
    manifest = read_manifest(folder)
    col = open_column(shards, split, manifest["recipe"], column)
    k = col.k
    done, running, stale, pending = [], [], [], []
    images = failures = 0
    seconds = 0.0
    remaining = 0
    holders = set()
    for i in col.indices:
        if is_shard_done(folder, i, check_sha=False):
            st = read_stats(folder, i) or {}
            done.append(i)
            images += int(st.get("images", 0))
            failures += len(st.get("failures", []))
            seconds += float(st.get("seconds", 0.0))
            continue
        remaining += int((read_stats(col.source, i) or {}).get("count", 0)) * k
        path = lease_path(folder, i)
        if lease_age(path) is None:
            pending.append(i)
        elif is_stale(path, lease_timeout):
            stale.append(i)
        else:
            running.append(i)
            doc = read_lease(path) or {}
            holders.add((doc.get("host"), doc.get("pid")))
    per_process = images / seconds if seconds > 0 else None
    rate = per_process * max(1, len(holders)) if per_process else None
    return {
        "column": column,
        "split": split,
        "folder": str(folder),
        "recipe_hash": manifest.get("recipe_hash"),
        "k": k,
        "shards": len(col.indices),
        "done": done,
        "in_progress": running,
        "stale": stale,
        "pending": pending,
        "processes": len(holders),
        "images": images,
        "failures": failures,
        "images_per_second_per_process": per_process,
        "images_per_second": rate,
        "remaining_images": remaining,
        "eta_seconds": remaining / rate if rate else None,
    }


def format_status(st: dict) -> str:
    """Human-readable lines of a column_status() result."""

    def dur(s: float | None) -> str:
        if s is None:
            return "unknown (no shard finished yet)"
        s = int(s)
        return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"

    rate = st["images_per_second"]
    lines = [
        f"column {st['column']} (split {st['split']}, k={st['k']}, recipe {st['recipe_hash']}): {st['folder']}",
        f"  shards: {len(st['done'])}/{st['shards']} done, {len(st['in_progress'])} in progress "
        f"({st['processes']} processes), {len(st['stale'])} stale (will be taken over), {len(st['pending'])} pending",
        f"  images: {st['images']} made, {st['failures']} source images failed, {st['remaining_images']} to go",
        f"  speed: {rate:.2f} images/s" if rate else "  speed: unknown (no shard finished yet)",
        f"  ETA: {dur(st['eta_seconds'])}" if st["remaining_images"] else "  ETA: complete",
    ]
    return "\n".join(lines)
