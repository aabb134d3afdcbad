"""The ingest stage: a source becomes a named shard set split, resumably, with bad files recorded and skipped."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from genaug import __version__
from genaug.core.errors import GenaugError
from genaug.ingest.images import BadImage, ImageOptions, process_image, read_file
from genaug.ingest.sources import Source, SourceItem, enumerate_source
from genaug.shards.layout import ShardSet, make_key, shard_name
from genaug.shards.writer import ShardWriter

SOURCE_REQUIRED = ("jpg", "json")


def _init_worker() -> None:
    Image.MAX_IMAGE_PIXELS = None  # genaug checks the pixel count itself, with its own limit and message


def _work(task: tuple[str, bytes | None, ImageOptions, str | None]) -> tuple[bytes | None, dict | str]:
    ref, data, opts, error = task
    if error is not None:
        return None, error
    try:
        if data is None:
            data = read_file(ref)
        out, _ext, info = process_image(data, opts)
        return out, info
    except BadImage as e:
        return None, str(e)
    except Exception as e:  # a long run never dies on one bad image
        return None, f"unexpected {type(e).__name__}: {e}"


def plan_hash(src: Source, per_shard: int, opts: ImageOptions) -> str:
    """Identity of an ingest plan: the ordered items and every option that changes the bytes."""
    h = hashlib.sha256()
    h.update(json.dumps([src.layout, src.classes, per_shard, opts.__dict__], sort_keys=True).encode())
    for it in src.items:
        h.update(json.dumps(it.as_plan()).encode())
        h.update(b"\n")
    return h.hexdigest()


def _tasks(items: list[SourceItem], todo: list[int], per_shard: int, opts: ImageOptions) -> Iterator[tuple]:
    """Work items in shard order; tar members are read here, in the parent, one tar open at a time."""
    open_tar: tuple[str, tarfile.TarFile] | None = None
    try:
        for s in todo:
            for it in items[s * per_shard : (s + 1) * per_shard]:
                if it.tar is None:
                    yield (it.ref, None, opts, None)
                    continue
                if open_tar is None or open_tar[0] != it.tar:
                    if open_tar is not None:
                        open_tar[1].close()
                    open_tar = (it.tar, tarfile.open(it.tar, "r:"))
                try:
                    f = open_tar[1].extractfile(it.member)
                    data = f.read() if f is not None else b""
                except (tarfile.TarError, OSError, KeyError) as e:
                    yield (it.ref, None, opts, f"unreadable tar member ({type(e).__name__}: {e})")
                    continue
                yield (it.ref, data, opts, None)
    finally:
        if open_tar is not None:
            open_tar[1].close()


def ingest(
    source: str | os.PathLike,
    shards: str | os.PathLike,
    split: str = "train",
    per_shard: int = 1000,
    short_side: int | None = None,
    max_side: int | None = None,
    quality: int = 95,
    workers: int | None = None,
    layout: str = "auto",
    min_side: int = 8,
    max_pixels: int = 178_956_970,
    reencode: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Ingest `source` into shard set `shards`, split `split`; resumable; returns a summary dict."""
    if per_shard < 1:
        raise GenaugError(f"--per-shard must be at least 1, got {per_shard}")
    if not 1 <= quality <= 100:
        raise GenaugError(f"--quality must be in 1..100, got {quality}")
    for flag, v in (("--short-side", short_side), ("--max-side", max_side)):
        if v is not None and v < 1:
            raise GenaugError(f"{flag} must be a positive number of pixels, got {v}")
    if not split or "/" in split or split == "gen":
        raise GenaugError(f"--split {split!r} is not a valid split name (a folder name other than 'gen')")
    opts = ImageOptions(short_side, max_side, quality, min_side, max_pixels, reencode)
    t0 = time.perf_counter()
    src = enumerate_source(source, layout)
    items = src.items
    n_shards = (len(items) + per_shard - 1) // per_shard
    sset = ShardSet.open(shards, must_exist=False)
    folder = sset.split_dir(split)
    manifest = {
        "kind": "source",
        "split": split,
        "source": str(Path(source).resolve()),
        "layout": src.layout,
        "classes": src.classes,
        "num_planned": len(items),
        "num_shards": n_shards,
        "samples_per_shard": per_shard,
        "shards": [shard_name(i) for i in range(n_shards)],
        "options": dict(opts.__dict__),
        "plan_hash": plan_hash(src, per_shard, opts),
        "scan_skipped": src.skipped[:1000],
        "genaug_version": __version__,
    }
    writer = ShardWriter(folder, manifest)
    writer.prepare(overwrite=overwrite)
    todo = writer.pending(range(n_shards))
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    root = src.root if src.root.is_dir() else src.root.parent
    written = failed = 0
    bar = tqdm(
        total=sum(len(items[s * per_shard : (s + 1) * per_shard]) for s in todo),
        unit="img",
        desc=f"ingest {split}",
        disable=not progress,
        smoothing=0.1,
    )
    if n_workers == 0:
        _init_worker()
    pool = mp.get_context("spawn").Pool(n_workers, initializer=_init_worker) if n_workers > 0 else None
    try:
        tasks = _tasks(items, todo, per_shard, opts)
        results = pool.imap(_work, tasks, chunksize=4) if pool else map(_work, tasks)
        for s in todo:
            shard_items = items[s * per_shard : (s + 1) * per_shard]
            ts = time.perf_counter()
            samples, failures = [], []
            for row, it in enumerate(shard_items):
                data, info = next(results)
                key = make_key(s, row)
                rel = it.ref if it.tar else os.path.relpath(it.ref, root)
                if data is None:
                    failures.append({"key": key, "source": rel, "error": info})
                else:
                    meta = {"source": rel, **info}
                    if it.class_name is not None:
                        meta["class_name"] = it.class_name
                    sample = {"__key__": key, "jpg": data, "json": json.dumps(meta, sort_keys=True)}
                    if it.label is not None:
                        sample["cls"] = str(it.label)
                    samples.append(sample)
                bar.update(1)
            secs = time.perf_counter() - ts
            writer.commit(
                s,
                samples,
                SOURCE_REQUIRED,
                {
                    "failures": failures,
                    "seconds": round(secs, 3),
                    "images_per_s": round(len(shard_items) / secs, 2) if secs > 0 else None,
                },
            )
            written += len(samples)
            failed += len(failures)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    secs = time.perf_counter() - t0
    return {
        "shard_set": str(sset.root),
        "split": split,
        "folder": str(folder),
        "layout": src.layout,
        "classes": len(src.classes) if src.classes else 0,
        "shards": n_shards,
        "shards_written": len(todo),
        "shards_skipped": n_shards - len(todo),
        "images_written": written,
        "images_failed": failed,
        "scan_skipped": len(src.skipped),
        "seconds": round(secs, 2),
        "images_per_s": round((written + failed) / secs, 1) if secs > 0 else None,
    }
