"""The writer thread: resize + JPEG-encode variants, assemble each shard in source order, commit it, note it in the
column's progress record (genaug.shards.progress), free its lease."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from genaug.generate.base import Variant
from genaug.generate.column import required_fields
from genaug.generate.leases import Heartbeat, Lease
from genaug.shards.progress import note_committed
from genaug.shards.scores import summarize
from genaug.shards.storage import as_location
from genaug.shards.writer import commit_shard

if TYPE_CHECKING:
    from genaug.generate.recipe import Output

RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS, "nearest": Image.NEAREST}


@dataclass
class ShardJob:
    """One shard in flight: its keys in source order, the encoded variants so far, failures, timings."""

    index: int
    keys: list[str]
    seeds: dict[str, list[int]]
    lease: Lease
    sources: dict[str, str] = field(default_factory=dict)
    jpgs: dict[str, dict[int, bytes]] = field(default_factory=dict)
    black: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    model_seconds: float = 0.0
    fidelity: dict[str, dict] | None = None  # key -> fidelity doc, when the column is scored

    def fail(self, key: str, error: BaseException | str) -> None:
        """Record that source image `key` produced no variants (its sample keeps only json)."""
        msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failed.setdefault(key, " ".join(str(msg).split())[:500])


def encode_jpeg(image: Image.Image, size: int | None, quality: int, resample: str) -> bytes:
    """Resize to size x size (when given and different) and encode as JPEG at an explicit quality."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if size and image.size != (size, size):
        image = image.resize((size, size), RESAMPLE[resample])
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


class ShardWriterThread:
    """Consumes (job, rows, variants) and (job, None, None) items; commits finished shards in source order."""

    def __init__(
        self,
        folder: Path,
        k: int,
        recipe_hash: str,
        output: Output,
        heartbeat: Heartbeat,
        stats_extra: dict,
        on_images: Callable[[int], None],
        on_commit: Callable[[ShardJob, dict], None],
    ):
        self.folder, self.k, self.recipe_hash = as_location(folder), k, recipe_hash
        self.size, self.quality, self.resample = output.size, output.quality, output.resample
        self.heartbeat, self.stats_extra = heartbeat, stats_extra
        self.on_images, self.on_commit = on_images, on_commit
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.busy_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="genaug-shard-writer", daemon=True)
        self._thread.start()

    def put(self, job: ShardJob, rows: list[tuple[str, int]] | None, variants: list[Variant] | None) -> None:
        """Hand over a batch of variants (rows = (key, k)), or the end of a shard (rows None)."""
        self.check()
        self.queue.put((job, rows, variants))

    def check(self) -> None:
        """Re-raise an error of the writer thread in the caller."""
        if self.error is not None:
            raise self.error

    def flush(self) -> None:
        """Wait until everything queued so far is encoded and committed."""
        self.queue.join()
        self.check()

    def close(self) -> None:
        """Finish everything queued and stop the thread."""
        self.queue.put(None)
        self._thread.join()
        self.check()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                if self.error is None:  # after a failure only drain; the main thread re-raises it
                    self._handle(item)
            finally:
                self.queue.task_done()

    def _handle(self, item: tuple) -> None:
        t0 = time.perf_counter()
        try:
            job, rows, variants = item
            if rows is None:
                self._commit(job)
            else:
                for (key, k), v in zip(rows, variants, strict=True):
                    jpg = v.meta.pop("jpg", None)  # already encoded (and scored) by the runner when fidelity is on
                    if jpg is None:
                        jpg = encode_jpeg(v.image, self.size, self.quality, self.resample)
                    job.jpgs.setdefault(key, {})[k] = jpg
                    if v.meta.get("black"):
                        job.black.setdefault(key, []).append(k)
                self.on_images(len(rows))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e
        self.busy_seconds += time.perf_counter() - t0

    def _commit(self, job: ShardJob) -> None:
        samples, failures = [], []
        for key in job.keys:
            got = job.jpgs.get(key, {})
            if key not in job.failed and len(got) != self.k:
                job.fail(key, f"only {len(got)} of {self.k} variants were made")
            doc: dict[str, Any] = {"seeds": job.seeds.get(key, []), "recipe_hash": self.recipe_hash}
            if key in job.failed:
                doc["failed"] = job.failed[key]
                failures.append({"key": key, "source": job.sources.get(key), "error": job.failed[key]})
                samples.append({"__key__": key, "json": json.dumps(doc, sort_keys=True)})
                continue
            doc["failed"] = None
            doc["black"] = sorted(job.black.get(key, []))
            if job.fidelity is not None and key in job.fidelity:
                doc["fidelity"] = job.fidelity[key]
            sample = {"__key__": key, "json": json.dumps(doc, sort_keys=True)}
            sample.update({f"gen_{k}.jpg": got[k] for k in range(self.k)})
            samples.append(sample)
        if job.lease.lost:  # another process took the shard over: it writes the same bytes; leave it to it
            self.heartbeat.release(job.lease)
            return
        made = sum(len(v) for key, v in job.jpgs.items() if key not in job.failed)
        stats = {
            **self.stats_extra,
            "failures": failures,
            "images": made,
            "black": sum(len(v) for key, v in job.black.items() if key not in job.failed),
            "seconds": round(time.time() - job.started, 3),
            "model_seconds": round(job.model_seconds, 3),
            "k": self.k,
            "recipe_hash": self.recipe_hash,
        }
        if job.fidelity is not None:
            space = next((d.get("space") for d in job.fidelity.values()), None)
            stats["fidelity"] = summarize([d for key, d in job.fidelity.items() if key not in job.failed], space)
        doc = commit_shard(self.folder, job.index, samples, required_fields(self.k), stats, with_index=True)
        note_committed(self.folder, doc["shard"], doc, self.recipe_hash)  # what `train --gen-partial` reads
        self.heartbeat.release(job.lease)
        self.on_commit(job, doc)
