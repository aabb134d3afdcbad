"""The ingest stage: a source becomes a named shard set split, resumably, with bad files recorded and skipped."""

from __future__ import annotations

import contextlib
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
from genaug.core.locks import folder_lock
from genaug.ingest.images import DEFAULT_MAX_BYTES, BadImage, ImageOptions, process_image, read_file
from genaug.ingest.sources import Source, SourceItem, check_label, enumerate_source
from genaug.shards.layout import ShardSet, check_name, make_key, shard_name
from genaug.shards.writer import ShardWriter

SOURCE_REQUIRED = ("jpg", "json")
#: rows and shards are numbered with 6 digits (s000042r000007, 000042.tar)
MAX_PER_SHARD = 1_000_000
MAX_SHARDS = 1_000_000


def _init_worker() -> None:
    Image.MAX_IMAGE_PIXELS = None  # genaug checks the pixel count itself, with its own limit and message


def _work(task: tuple[str, bytes | None, ImageOptions, str | None, int]) -> tuple[bytes | None, dict | str]:
    ref, data, opts, error, max_bytes = task
    if error is not None:
        return None, error
    try:
        if data is None:
            data = read_file(ref, max_bytes)
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


def _tasks(
    items: list[SourceItem],
    todo: list[int],
    per_shard: int,
    opts: ImageOptions,
    max_bytes: int,
    num_classes: int | None = None,
) -> Iterator[tuple]:
    """Work items in shard order; tar members are read here, in the parent, one tar open at a time."""
    open_tar: tuple[str, tarfile.TarFile, dict[int, tarfile.TarInfo]] | None = None
    try:
        for s in todo:
            for it in items[s * per_shard : (s + 1) * per_shard]:
                bad_label = None if it.label is None else check_label(it.label, num_classes)
                if it.error is not None or bad_label is not None:
                    yield (it.ref, None, opts, it.error or bad_label, max_bytes)
                    continue
                if it.tar is None:
                    yield (it.ref, None, opts, None, max_bytes)
                    continue
                try:
                    if open_tar is None or open_tar[0] != it.tar:
                        if open_tar is not None:
                            open_tar[1].close()
                            open_tar = None
                        tf = tarfile.open(it.tar, "r:")
                        open_tar = (it.tar, tf, {m.offset: m for m in tf.getmembers()})
                    # by header offset, not by name: a name that repeats in the tar must not pick another member
                    m = open_tar[2].get(it.offset) if it.offset is not None else open_tar[1].getmember(it.member)
                    if m is None or m.name != it.member:
                        raise KeyError(f"member {it.member!r} is no longer at offset {it.offset} (tar changed)")
                    if m.size > max_bytes:
                        yield (it.ref, None, opts, f"member is {m.size} bytes, over the limit of {max_bytes} "
                               "(--max-bytes)", max_bytes)  # fmt: skip
                        continue
                    f = open_tar[1].extractfile(m)
                    data = f.read(max_bytes + 1) if f is not None else b""
                except (tarfile.TarError, OSError, KeyError) as e:
                    yield (it.ref, None, opts, f"unreadable tar member ({type(e).__name__}: {e})", max_bytes)
                    continue
                yield (it.ref, data, opts, None, max_bytes)
    finally:
        if open_tar is not None:
            open_tar[1].close()


def check_options(
    split: str,
    per_shard: int,
    short_side: int | None,
    max_side: int | None,
    quality: int,
    workers: int | None,
    min_side: int,
    max_pixels: int,
    max_bytes: int,
) -> None:
    """Raise a one-line GenaugError naming the first invalid ingest flag."""
    check_name(split, "--split")
    if split == "gen":
        raise GenaugError("--split 'gen' is reserved for generated columns: choose another split name")
    if not _is_int(per_shard) or not 1 <= per_shard <= MAX_PER_SHARD:
        raise GenaugError(f"--per-shard must be in 1..{MAX_PER_SHARD} (samples per tar), got {per_shard}")
    if not _is_int(quality) or not 1 <= quality <= 100:
        raise GenaugError(f"--quality must be in 1..100 (JPEG quality), got {quality}")
    for flag, v in (("--short-side", short_side), ("--max-side", max_side)):
        if v is not None and (not _is_int(v) or v < 1):
            raise GenaugError(f"{flag} must be a positive number of pixels, got {v}")
    top = max(256, 4 * (os.cpu_count() or 1))
    if workers is not None and (not _is_int(workers) or not 0 <= workers <= top):
        raise GenaugError(f"--workers must be in 0..{top} (0 = no worker processes), got {workers}")
    if not _is_int(min_side) or min_side < 1:
        raise GenaugError(f"--min-side must be at least 1 pixel (1 accepts every size), got {min_side}")
    if not _is_int(max_pixels) or max_pixels < 1:
        raise GenaugError(f"--max-pixels must be a positive number of pixels, got {max_pixels}")
    if not _is_int(max_bytes) or max_bytes < 1:
        raise GenaugError(f"--max-bytes must be a positive number of bytes, got {max_bytes}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict:
    """Ingest `source` into shard set `shards`, split `split`; resumable; returns a summary dict.

    One ingest at a time per split: a second one gets a one-line GenaugError naming the holder of the lock.
    """
    check_options(split, per_shard, short_side, max_side, quality, workers, min_side, max_pixels, max_bytes)
    opts = ImageOptions(short_side, max_side, quality, min_side, max_pixels, reencode)
    t0 = time.perf_counter()
    src = enumerate_source(source, layout)
    items = src.items
    n_shards = (len(items) + per_shard - 1) // per_shard
    if n_shards > MAX_SHARDS:
        raise GenaugError(
            f"{len(items)} images at --per-shard {per_shard} make {n_shards} shards, over the limit of {MAX_SHARDS} "
            "(6-digit shard names): raise --per-shard"
        )
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
        "options": {**opts.__dict__, "max_bytes": max_bytes},
        "plan_hash": plan_hash(src, per_shard, opts),
        "scan_skipped": src.skipped[:1000],
        "genaug_version": __version__,
    }
    # an object store has no flock: one ingest per split there is the user's to ensure (docs/object-storage.md)
    lock = contextlib.nullcontext() if sset.remote else folder_lock(folder, what="ingest")
    with lock:
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
            tasks = _tasks(items, todo, per_shard, opts, max_bytes, len(src.classes) if src.classes else None)
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
        writer.finish()  # the completion record: the stream opens the split with one read
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
