"""`genaug generate --status`: done / in progress / stale / pending shards, failures, images/s and ETA of a column."""

from __future__ import annotations

from genaug.core.errors import GenaugError
from genaug.generate.column import open_column
from genaug.generate.leases import lease_home, lease_state
from genaug.shards.layout import ShardSet
from genaug.shards.manifest import read_manifest
from genaug.shards.writer import read_stats


def column_status(
    shards: str, column: str, split: str = "train", lease_timeout: float = 300.0, lease_dir: str | None = None
) -> dict:
    """Progress figures of a generated column, from its stats files and leases alone (nothing is written).

    Leases are looked for where `generate` keeps them: under `lease_dir` when given; for a column in an object
    store, in the store (conditional-PUT leases) and in this machine's cache folder (the fallback)."""
    ss = ShardSet.open(shards)
    folder = ss.gen_dir(column, split)
    if not (folder / "manifest.json").is_file():
        raise GenaugError(
            f"{ss.root} has no generated column {column!r} for split {split!r} "
            f"(columns: {', '.join(ss.columns()) or 'none'}): check --column and --split"
        )
    manifest = read_manifest(folder)
    update = manifest.get("update")  # a `generate --update` under way: progress towards its recipe
    col = open_column(shards, split, (update or manifest)["recipe"], column)
    k = int(update["k"]) if update else col.k
    done, running, stale, pending = [], [], [], []
    images = failures = 0
    seconds = 0.0
    remaining = 0
    holders = set()
    homes = [lease_home(folder, lease_dir)]
    if lease_dir is None and ss.remote:
        homes.insert(0, folder)  # leases kept in the store by conditional PUT
    for i in col.indices:
        if col.is_current(i):
            st = read_stats(folder, i) or {}
            done.append(i)
            images += int(st.get("images", 0))
            failures += len(st.get("failures", []))
            seconds += float(st.get("seconds", 0.0))
            continue
        remaining += int((read_stats(col.source, i) or {}).get("count", 0)) * k
        state, doc = next(
            (st for st in (lease_state(h, i, lease_timeout) for h in homes) if st[0] != "none"), ("none", {})
        )
        if state == "none":
            pending.append(i)
        elif state == "stale":
            stale.append(i)
        else:
            running.append(i)
            holders.add((doc.get("host"), doc.get("pid")))
    per_process = images / seconds if seconds > 0 else None
    rate = per_process * max(1, len(holders)) if per_process else None
    return {
        "column": column,
        "split": split,
        "folder": str(folder),
        "recipe_hash": col.recipe_hash,
        "k": k,
        "updating_from": {"recipe_hash": manifest.get("recipe_hash"), "k": manifest.get("k")} if update else None,
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

    rate, up = st["images_per_second"], st.get("updating_from")
    lines = [
        f"column {st['column']} (split {st['split']}, k={st['k']}, recipe {st['recipe_hash']}): {st['folder']}",
        *([f"  updating from k={up['k']}, recipe {up['recipe_hash']} (generate --update)"] if up else []),
        f"  shards: {len(st['done'])}/{st['shards']} done, {len(st['in_progress'])} in progress "
        f"({st['processes']} processes), {len(st['stale'])} stale (will be taken over), {len(st['pending'])} pending",
        f"  images: {st['images']} made, {st['failures']} source images failed, {st['remaining_images']} to go",
        f"  speed: {rate:.2f} images/s" if rate else "  speed: unknown (no shard finished yet)",
        f"  ETA: {dur(st['eta_seconds'])}" if st["remaining_images"] else "  ETA: complete",
    ]
    return "\n".join(lines)
