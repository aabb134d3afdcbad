"""`genaug generate`: claim source shards through leases, make K variants per image, commit aligned shards."""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from typing import Any

from PIL import Image

from genaug.core.devices import process_rank
from genaug.core.errors import GenaugError
from genaug.generate.base import Generator, generator_class, variant_seed
from genaug.generate.column import Column, column_hash, open_column
from genaug.generate.leases import Heartbeat, check_lease_timeout, clear_stale_leases, try_acquire
from genaug.generate.oom import free_memory, is_oom
from genaug.generate.recipe import resolve_recipe
from genaug.generate.writer import ShardJob, ShardWriterThread
from genaug.shards.layout import IMAGE_FIELDS, shard_name
from genaug.shards.reader import decode_image, iter_shard_raw
from genaug.shards.writer import cleanup_shard, is_shard_done, read_stats


class Runner:
    """One process's share of a column: loop over claimable shards until every shard is done."""

    def __init__(
        self, column: Column, recipe: dict, generator: Generator, lease_timeout: float, progress: bool, device: str
    ) -> None:
        self.column, self.recipe, self.gen = column, recipe, generator
        self.k, self.seed = int(recipe["k"]), int(recipe["seed"])
        self.batch_size = int((recipe.get("runtime") or {}).get("batch_size", 8))
        self.lease_timeout = lease_timeout
        self.rank, self.world = process_rank()
        self.heartbeat = Heartbeat(max(0.05, lease_timeout / 4))
        self.rh = column_hash(recipe)
        self.summary = {"shards": [], "images": 0, "failures": 0, "model_seconds": 0.0}
        total = self._remaining_images()
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit="img",
                desc=f"generate[{self.rank}] {column.name}",
                position=int(os.environ.get("LOCAL_RANK", 0)),
                dynamic_ncols=True,
                smoothing=0.1,
            )
        extra = {"host": socket.gethostname(), "pid": os.getpid(), "device": device, "batch_size": self.batch_size}
        self.writer = ShardWriterThread(
            column.folder,
            self.k,
            self.rh,
            recipe.get("output") or {},
            self.heartbeat,
            extra,
            self._on_images,
            self._on_commit,
        )

    def _remaining_images(self) -> int:
        n = 0
        for i in self.column.indices:
            if not is_shard_done(self.column.folder, i, check_sha=False):
                n += int((read_stats(self.column.source, i) or {}).get("count", 0)) * self.k
        return n

    def _on_images(self, n: int) -> None:
        self.summary["images"] += n
        if self.bar is not None:
            self.bar.update(n)

    def _on_commit(self, job: ShardJob, stats: dict) -> None:
        self.summary["shards"].append(job.index)
        self.summary["failures"] += len(stats["failures"])

    def run(self) -> dict:
        """Claim and make shards until all are done (waiting on shards that live peers hold)."""
        t0 = time.perf_counter()
        try:
            order = self.column.indices
            if self.world > 1 and order:  # start at a different place per rank: fewer lease collisions
                cut = (self.rank * len(order)) // self.world
                order = order[cut:] + order[:cut]
            done = {i for i in order if is_shard_done(self.column.folder, i, check_sha=False)}
            clear_stale_leases(self.column.folder, done, self.lease_timeout)
            while True:
                pending = [i for i in order if not is_shard_done(self.column.folder, i, check_sha=False)]
                if not pending:
                    break
                claimed = False
                for i in pending:
                    lease = try_acquire(self.column.folder, i, self.lease_timeout, {"rank": self.rank})
                    if lease is None:
                        continue
                    if is_shard_done(self.column.folder, i, check_sha=False):
                        lease.release()
                        continue
                    claimed = True
                    self.heartbeat.add(lease)
                    cleanup_shard(self.column.folder, i)
                    self._make_shard(ShardJob(i, [], {}, lease))
                if not claimed:
                    if self.writer.queue.unfinished_tasks:  # our own shards are still being committed
                        self.writer.flush()
                        continue
                    self.writer.check()  # everything left is held by live peers: wait, take over if they stop
                    time.sleep(min(2.0, max(0.05, self.lease_timeout / 8)))
            self.writer.close()
        finally:
            self.heartbeat.stop()
            if self.bar is not None:
                self.bar.close()
        self.summary["seconds"] = time.perf_counter() - t0
        self.summary["writer_seconds"] = self.writer.busy_seconds
        return self.summary

    # -- one shard -------------------------------------------------------------------------------------------------

    def _timed(self, job: ShardJob, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            dt = time.perf_counter() - t
            job.model_seconds += dt
            self.summary["model_seconds"] += dt

    def _read(self, job: ShardJob) -> dict[str, Image.Image]:
        images = {}
        for raw in iter_shard_raw(self.column.source / shard_name(job.index)):
            key = raw["__key__"]
            job.keys.append(key)
            job.seeds[key] = [variant_seed(self.seed, key, k) for k in range(self.k)]
            field = next((f for f in IMAGE_FIELDS if f in raw), None)
            try:
                if "json" in raw:
                    job.sources[key] = json.loads(raw["json"]).get("source")
                if field is None:
                    raise ValueError("source sample has no image field")
                images[key] = decode_image(raw[field])
            except Exception as e:  # a corrupt source image: recorded, the shard goes on
                job.fail(key, e)
        return images

    def _make_shard(self, job: ShardJob) -> None:
        images = self._read(job)
        keys = [k for k in job.keys if k in images]
        conds = self._encode(job, keys, images)
        rows = [(key, k) for key in keys if key in conds for k in range(self.k)]
        j = 0
        while j < len(rows):
            batch = rows[j : j + self.batch_size]
            self._sample_rows(job, batch, conds)
            j += len(batch)
        self.writer.put(job, None, None)

    def _encode(self, job: ShardJob, keys: list[str], images: dict) -> dict[str, Any]:
        conds: dict[str, Any] = {}
        j = 0
        while j < len(keys):
            chunk = keys[j : j + self.batch_size]
            try:
                got = self._timed(job, self.gen.encode, [images[k] for k in chunk])
                conds.update(zip(chunk, got, strict=True))
            except Exception as e:
                if is_oom(e) and self.batch_size > 1:
                    free_memory()
                    self._halve(e)
                    continue
                for key in chunk:  # find the culprit: one image at a time
                    try:
                        conds[key] = self._timed(job, self.gen.encode, [images[key]])[0]
                    except Exception as e1:
                        job.fail(key, e1)
            j += len(chunk)
        return conds

    def _halve(self, e: BaseException) -> None:
        self.batch_size = max(1, self.batch_size // 2)
        warnings.warn(
            f"genaug generate: out of memory ({type(e).__name__}); batch size now {self.batch_size}", stacklevel=2
        )

    def _sample_rows(self, job: ShardJob, batch: list[tuple[str, int]], conds: dict) -> None:
        batch = [(key, k) for key, k in batch if key not in job.failed]
        if not batch:
            return
        try:
            out = self._timed(
                job, self.gen.sample, [conds[key] for key, _ in batch], [job.seeds[key][k] for key, k in batch]
            )
            self.writer.put(job, batch, out)
            return
        except Exception as e:
            if is_oom(e) and len(batch) > 1:
                free_memory()
                self._halve(e)
                for j in range(0, len(batch), self.batch_size):
                    self._sample_rows(job, batch[j : j + self.batch_size], conds)
                return
            if len({key for key, _ in batch}) == 1:
                job.fail(batch[0][0], e)
                return
        for key in dict.fromkeys(key for key, _ in batch):  # isolate the failing image(s)
            self._sample_rows(job, [r for r in batch if r[0] == key], conds)


def generate(
    model: str = "tiny",
    shards: str = "",
    split: str = "train",
    weights: str | None = None,
    column: str | None = None,
    k: int | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    dtype: str | None = None,
    compile: bool | None = None,
    device: str | None = None,
    limit_shards: int | None = None,
    seed: int | None = None,
    guidance: float | None = None,
    lease_timeout: float = 300.0,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Materialize K variants per source image of `split` into the generated column (default name: the recipe's).

    Any number of processes may run this at once on a shared filesystem; each returns its own summary (shards it
    committed, images, failures, seconds, model_seconds, load_seconds, column folder).
    """
    recipe = resolve_recipe(model, k, batch_size, steps, dtype, compile, seed, guidance, overrides)
    lease_timeout = check_lease_timeout(lease_timeout)
    if limit_shards is not None and limit_shards < 1:
        raise GenaugError(f"--limit-shards must be at least 1 (got {limit_shards})")
    col = open_column(shards, split, recipe, column)
    if limit_shards is not None:
        col.indices = col.indices[:limit_shards]
    base = {
        "column": col.name,
        "folder": str(col.folder),
        "shards": [],
        "images": 0,
        "failures": 0,
        "seconds": 0.0,
        "model_seconds": 0.0,
        "load_seconds": 0.0,
    }
    if all(is_shard_done(col.folder, i, check_sha=False) for i in col.indices):
        clear_stale_leases(col.folder, set(col.indices), lease_timeout)
        return base  # nothing to do: do not even load the model
    from genaug.core.devices import default_device

    cls = generator_class(recipe["generator"])
    dev = device or default_device()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _quiet_hub_bars()
        gen = cls(recipe, device=dev, weights=weights)
    load = time.perf_counter() - t
    try:
        out = Runner(col, recipe, gen, lease_timeout, progress, dev).run()
    finally:
        gen.close()
    return {**base, **out, "load_seconds": load}


def _quiet_hub_bars() -> None:
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except (ImportError, AttributeError):
        pass
