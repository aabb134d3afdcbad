"""The ingest stage: a source becomes a named shard set split, resumably, with bad files recorded and skipped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import tarfile
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from genaug import __version__
from genaug.core.config import command_words
from genaug.core.errors import GenaugError
from genaug.core.locks import folder_lock
from genaug.ingest.hf import HFOptions
from genaug.ingest.images import BadImage, ImageOptions, process_image, read_file
from genaug.ingest.options import DEFAULT_MAX_BYTES, MAX_PER_SHARD, ORDERS, IngestOptions  # noqa: F401 - re-exported
from genaug.ingest.sources import Source, SourceItem, check_label, check_label_key, enumerate_source
from genaug.shards.layout import INGEST_RECORDED, ShardSet, make_key, shard_name
from genaug.shards.manifest import read_manifest
from genaug.shards.writer import ShardWriter

SOURCE_REQUIRED = ("jpg", "json")
#: rows and shards are numbered with 6 digits (s000042r000007, 000042.tar)
MAX_SHARDS = 1_000_000
#: seed of the shuffled order when none is given (recorded in the manifest either way)
DEFAULT_ORDER_SEED = 0
#: a `.txt` caption is kept up to this many bytes (a longer one is dropped and noted in the sample's json)
TEXT_MAX_BYTES = 1 << 20
#: input tars kept open at once while reading members in the planned (possibly shuffled) order
MAX_OPEN_TARS = 16
#: rows of a Hugging Face dataset fetched together
ROW_BATCH = 64


def _init_worker() -> None:
    Image.MAX_IMAGE_PIXELS = None  # genaug checks the pixel count itself, with its own limit and message


def _work(task: tuple) -> tuple[bytes | None, dict | str, dict | None]:
    """(stored bytes, info) or (None, error) for one task; the task's extra fields (a caption) pass through."""
    ref, data, opts, error, max_bytes, extra = task
    if error is not None:
        return None, error, extra
    try:
        if data is None:
            data = read_file(ref, max_bytes)
        out, _ext, info = process_image(data, opts)
        return out, info, extra
    except BadImage as e:
        return None, str(e), extra
    except Exception as e:  # a long run never dies on one bad image
        return None, f"unexpected {type(e).__name__}: {e}", extra


class Permuted(Sequence):
    """`items` in the order of `perm` (position i holds items[perm[i]]), made on demand."""

    def __init__(self, items: Sequence[SourceItem], perm: np.ndarray) -> None:
        self.items, self.perm = items, perm

    def __len__(self) -> int:
        return len(self.perm)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.items[int(j)] for j in self.perm[i]]
        return self.items[int(self.perm[i])]


def shuffled_order(n: int, seed: int) -> np.ndarray:
    """The seeded permutation of n input positions that a shuffled ingest writes in (numpy's PCG64 permutation)."""
    return np.random.Generator(np.random.PCG64(seed)).permutation(n)


def planned_source(source: str, old: dict | None) -> tuple[str, bool]:
    """The SOURCE a plan is made from, and whether it is the resolved path: one plan however a local path is spelled
    (a resume from another folder, the hint's absolute path); a split planned before genaug resolved it (its
    manifest has no `source_resolved`) keeps the spelling it was planned with, on every rerun, so it still resumes."""
    if Path(source).exists() and (old is None or old.get("source_resolved") is True):
        return str(Path(source).resolve()), True
    return str(source), False


def _previous_manifest(folder) -> dict | None:
    try:
        return read_manifest(folder, check=False) if (folder / "manifest.json").exists() else None
    except GenaugError:
        return None


def _source_ref(it: SourceItem, root: Path) -> str:
    """Where a sample came from, as its json records it: relative to the source folder (a file, or `tar:key` of a
    member), so the shard's bytes do not depend on where the source lies; a dataset row as `datasets` names it."""
    if it.tar:
        return f"{os.path.relpath(it.tar, root)}{it.ref[len(it.tar) :]}" if it.ref.startswith(it.tar) else it.ref
    return it.ref if it.row is not None else os.path.relpath(it.ref, root)


def plan_hash(src: Source, per_shard: int, opts: ImageOptions, items: Sequence[SourceItem] | None = None) -> str:
    """Identity of an ingest plan: the ordered items and every option that changes the bytes.

    The header holds `src.identity` (a label key, a dataset's columns, a shuffled order) only when it is not empty,
    so a plan made before those existed (sorted, no label key) hashes as it always did."""
    h = hashlib.sha256()
    header = [src.layout, src.classes, per_shard, opts.__dict__] + ([src.identity] if src.identity else [])
    h.update(json.dumps(header, sort_keys=True).encode())
    for it in src.items if items is None else items:
        h.update(json.dumps(it.as_plan()).encode())
        h.update(b"\n")
    return h.hexdigest()


class _TarCache:
    """Input tars open for reading members by header offset; the least recently used is closed past MAX_OPEN_TARS."""

    def __init__(self) -> None:
        self.open: OrderedDict[str, tarfile.TarFile] = OrderedDict()

    def member(self, path: str, name: str, offset: int | None) -> tuple[tarfile.TarFile, tarfile.TarInfo]:
        """The member `name` whose header is at `offset` (by offset, not by name: names may repeat inside a tar)."""
        tf = self.open.get(path)
        if tf is None:
            tf = tarfile.open(path, "r:")
            self.open[path] = tf
            while len(self.open) > MAX_OPEN_TARS:
                self.open.popitem(last=False)[1].close()
        self.open.move_to_end(path)
        if offset is None:
            m = tf.getmember(name)
        else:
            tf.fileobj.seek(offset)
            m = tarfile.TarInfo.fromtarfile(tf)
        if m.name != name:
            raise KeyError(f"member {name!r} is no longer at offset {offset} (tar changed)")
        return tf, m

    def read(self, path: str, name: str, offset: int | None, limit: int, what: str) -> bytes:
        """At most `limit` bytes of a member; a bigger member raises BadImage naming `what`."""
        tf, m = self.member(path, name, offset)
        if m.size > limit:
            raise BadImage(f"member is {m.size} bytes, over the limit of {limit} ({what})")
        f = tf.extractfile(m)
        return f.read(limit + 1) if f is not None else b""

    def close(self) -> None:
        """Close every open tar."""
        for tf in self.open.values():
            tf.close()
        self.open.clear()


def _caption(tars: _TarCache, it: SourceItem) -> dict | None:
    """The sample's `.txt` caption as {"txt": text} (invalid UTF-8 replaced), or a note of why it was dropped."""
    if it.text_member is None or it.tar is None:
        return None
    try:
        raw = tars.read(
            it.tar, it.text_member, it.text_offset, TEXT_MAX_BYTES, f"captions are kept up to {TEXT_MAX_BYTES}"
        )
    except (tarfile.TarError, OSError, KeyError, BadImage) as e:
        return {"txt_dropped": f"{type(e).__name__}: {e}"}
    return {"txt": raw.decode("utf-8", errors="replace")}


def _tasks(
    src: Source,
    items: Sequence[SourceItem],
    todo: list[int],
    per_shard: int,
    opts: ImageOptions,
    max_bytes: int,
    num_classes: int | None = None,
) -> Iterator[tuple]:
    """Work items in shard order; tar members and dataset rows are read here, in the parent, a few at a time."""
    tars = _TarCache()
    try:
        for s in todo:
            shard_items = items[s * per_shard : (s + 1) * per_shard]
            for c in range(0, len(shard_items), ROW_BATCH):
                chunk = shard_items[c : c + ROW_BATCH]
                rows = [it.row for it in chunk if it.row is not None and it.error is None]
                fetched = dict(zip(rows, src.read_rows(rows), strict=True)) if rows and src.read_rows else {}
                for it in chunk:
                    yield _task(it, tars, fetched, opts, max_bytes, num_classes)
    finally:
        tars.close()


def _task(
    it: SourceItem, tars: _TarCache, fetched: dict, opts: ImageOptions, max_bytes: int, num_classes: int | None
) -> tuple:
    """One work item: (ref, bytes or None, opts, error or None, max_bytes, caption)."""
    bad_label = None if it.label is None else check_label(it.label, num_classes)
    if it.error is not None or bad_label is not None:
        return (it.ref, None, opts, it.error or bad_label, max_bytes, None)
    if it.row is not None:
        data, path, error = fetched[it.row]
        if data is not None and len(data) > max_bytes:
            data, error = None, f"image is {len(data)} bytes, over the limit of {max_bytes} (--max-bytes)"
        return (path or it.ref, data, opts, error, max_bytes, None)
    if it.tar is None:
        return (it.ref, None, opts, None, max_bytes, None)
    try:
        data = tars.read(it.tar, it.member, it.offset, max_bytes, "--max-bytes")
    except BadImage as e:
        return (it.ref, None, opts, str(e), max_bytes, None)
    except (tarfile.TarError, OSError, KeyError) as e:
        return (it.ref, None, opts, f"unreadable tar member ({type(e).__name__}: {e})", max_bytes, None)
    return (it.ref, data, opts, None, max_bytes, _caption(tars, it))


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
    order: str | None = None,
    order_seed: int | None = None,
    label_key: str | None = None,
    hf: HFOptions | None = None,
) -> dict:
    """Ingest `source` into shard set `shards`, split `split` (the options of IngestOptions as keywords); see
    run_ingest."""
    hf = hf or HFOptions()
    opts = IngestOptions.parse(
        {
            "source": os.fspath(source), "shards": os.fspath(shards), "split": split, "per_shard": per_shard,
            "short_side": short_side, "max_side": max_side, "quality": quality, "workers": workers, "layout": layout,
            "min_side": min_side, "max_pixels": max_pixels, "reencode": reencode, "overwrite": overwrite,
            "quiet": not progress, "max_bytes": max_bytes, "order": order, "order_seed": order_seed,
            "label_key": label_key, "image_column": hf.image_column, "label_column": hf.label_column,
            "hf_config": hf.config, "hf_split": hf.split, "hf_cache_dir": hf.cache_dir,
        }
    )  # fmt: skip
    return run_ingest(opts)


def run_ingest(o: IngestOptions) -> dict:
    """Ingest `o.source` into shard set `o.shards`, split `o.split`; resumable; returns a summary dict.

    `o.order` is shuffled (a seeded permutation of the input, `o.order_seed`, default 0) or sorted (the input's own
    order); None means shuffled, except when resuming a split whose manifest records no order (made before genaug
    recorded one, so sorted). One ingest at a time per split: a second one gets a one-line GenaugError naming the
    holder of the lock.
    """
    source, shards, split, per_shard, progress = o.source, o.shards, o.split, o.per_shard, not o.quiet
    order, order_seed, overwrite, label_key = o.order, o.order_seed, o.overwrite, o.label_key
    check_label_key(label_key)
    opts = ImageOptions(o.short_side, o.max_side, o.quality, o.min_side, o.max_pixels, o.reencode)
    max_bytes, workers = o.max_bytes, o.workers
    t0 = time.perf_counter()
    sset = ShardSet.open(shards, must_exist=False)
    folder = sset.split_dir(split)
    old = _previous_manifest(folder)
    source, resolved = planned_source(source, old)
    src = enumerate_source(source, o.layout, label_key=label_key, hf=o.hf_options(), progress=progress, split=split)
    if order is None:
        resume_old = old is not None and "order" not in old and not overwrite and order_seed is None
        order = "sorted" if resume_old else "shuffled"
    perm = None
    if order == "shuffled":
        seed = DEFAULT_ORDER_SEED if order_seed is None else order_seed
        perm = shuffled_order(len(src.items), seed)
        order_doc = {"kind": "shuffled", "seed": seed, "generator": "numpy PCG64 permutation"}
        order_doc["sha256"] = hashlib.sha256(perm.astype("<i8").tobytes()).hexdigest()
        src.identity["order"] = {"kind": "shuffled", "seed": seed}
        items = Permuted(src.items, perm)
    else:
        order_doc = {"kind": "sorted"}
        items = src.items
    n_shards = (len(items) + per_shard - 1) // per_shard
    if n_shards > MAX_SHARDS:
        raise GenaugError(
            f"{len(items)} images at --per-shard {per_shard} make {n_shards} shards, over the limit of {MAX_SHARDS} "
            "(6-digit shard names): raise --per-shard"
        )
    hub = src.info.get("hf", {}).get("kind") == "hub"
    manifest = {
        "kind": "source",
        "split": split,
        "source": str(source) if hub else str(Path(source).resolve()),
        "layout": src.layout,
        "classes": src.classes,
        "num_planned": len(items),
        "num_shards": n_shards,
        "samples_per_shard": per_shard,
        "shards": [shard_name(i) for i in range(n_shards)],
        "options": {**opts.__dict__, "max_bytes": max_bytes},
        "plan_hash": plan_hash(src, per_shard, opts, items),
        "scan_skipped": src.skipped[:1000],
        "genaug_version": __version__,
        "order": order_doc,
        # the flags that make this split, for the hint that resumes or repairs it (genaug.shards.layout.ingest_command)
        "source_resolved": resolved,
        "ingest_flags": command_words(o.model_copy(update={"order": order}), INGEST_RECORDED),
        **src.info,
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
            total=sum(min(per_shard, len(items) - s * per_shard) for s in todo),
            unit="img",
            desc=f"ingest {split}",
            disable=not progress,
            smoothing=0.1,
        )
        if n_workers == 0:
            _init_worker()
        pool = mp.get_context("spawn").Pool(n_workers, initializer=_init_worker) if n_workers > 0 else None
        try:
            tasks = _tasks(src, items, todo, per_shard, opts, max_bytes, len(src.classes) if src.classes else None)
            results = pool.imap(_work, tasks, chunksize=4) if pool else map(_work, tasks)
            for s in todo:
                shard_items = items[s * per_shard : (s + 1) * per_shard]
                ts = time.perf_counter()
                samples, failures = [], []
                for row, it in enumerate(shard_items):
                    data, info, extra = next(results)
                    key = make_key(s, row)
                    rel = _source_ref(it, root)
                    if data is None:
                        failures.append({"key": key, "source": rel, "error": info})
                    else:
                        meta = {"source": rel, **info}
                        if it.class_name is not None:
                            meta["class_name"] = it.class_name
                        if perm is not None:
                            meta["index"] = int(perm[s * per_shard + row])  # the input position (sorted order)
                        if extra and "txt_dropped" in extra:
                            meta["txt_dropped"] = extra["txt_dropped"]
                        sample = {"__key__": key, "jpg": data, "json": json.dumps(meta, sort_keys=True)}
                        if it.label is not None:
                            sample["cls"] = str(it.label)
                        if extra and "txt" in extra:
                            sample["txt"] = extra["txt"]
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
        "order": order,
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
