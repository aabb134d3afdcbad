"""`genaug generate`: claim source shards through leases, make K variants per image, commit aligned shards."""

from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Any

from PIL import Image

from genaug.core.devices import process_rank
from genaug.core.jsonio import sample_json
from genaug.generate.base import Generator, generator_class, variant_seed
from genaug.generate.column import Column, column_hash
from genaug.generate.fidelity import FidelitySettings, fidelity_doc, pixel_flags, thumbnail
from genaug.generate.job import GenerateJob
from genaug.generate.leases import Heartbeat, clear_stale_leases, lease_home, try_acquire
from genaug.generate.oom import free_memory, is_oom
from genaug.generate.recipe import GenerateRecipe
from genaug.generate.writer import ShardJob, ShardWriterThread, encode_jpeg
from genaug.shards.layout import IMAGE_FIELDS, shard_name
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.progress import reconcile
from genaug.shards.reader import decode_image, iter_shard_raw
from genaug.shards.scores import column_summary
from genaug.shards.writer import cleanup_shard, is_shard_done, read_stats


class Runner:
    """One process's share of a column: loop over claimable shards until every shard is done."""

    def __init__(
        self,
        column: Column,
        recipe: GenerateRecipe,
        generator: Generator,
        lease_timeout: float,
        progress: bool,
        device: str,
        lease_dir: str | os.PathLike | None = None,
        priority: list[int] | None = None,
    ) -> None:
        self.column, self.recipe, self.gen = column, recipe, generator
        self.priority = priority
        self.leases = lease_home(column.folder, lease_dir, in_store=True)
        self.k, self.seed = recipe.k, recipe.seed
        self.batch_size = recipe.runtime.batch_size
        self.lease_timeout = lease_timeout
        self.rank, self.world = process_rank()
        self.heartbeat = Heartbeat(max(0.05, lease_timeout / 4))
        self.rh = column_hash(recipe.as_written())
        recorded = column.manifest["fidelity"] if "fidelity" in column.manifest else None
        # scores are written only into columns made with them
        self.fid = FidelitySettings.parse(recorded, "fidelity") if recorded else None
        self.output = recipe.output
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
            recipe.output,
            self.heartbeat,
            extra,
            self._on_images,
            self._on_commit,
        )

    def _remaining_images(self) -> int:
        n = 0
        new = self.k - min(self.k, int(self.column.previous["k"])) if self.column.previous else self.k
        for i in self.column.indices:
            if not self.column.is_current(i):
                n += int((read_stats(self.column.source, i) or {}).get("count", 0)) * new
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
            if self.priority is not None:  # --order: every rank walks the trainer's order; leases split it
                order = self.priority
            elif self.world > 1 and order:  # start at a different place per rank: fewer lease collisions
                cut = (self.rank * len(order)) // self.world
                order = order[cut:] + order[:cut]
            done = {i for i in order if self.column.is_current(i)}
            clear_stale_leases(self.leases, done, self.lease_timeout)
            reconcile(self.column.folder, [shard_name(i) for i in sorted(done)], self.rh)  # commits a kill left out
            while True:
                pending = [i for i in order if not self.column.is_current(i)]
                if not pending:
                    break
                claimed = False
                for i in pending:
                    lease = try_acquire(self.leases, i, self.lease_timeout, {"rank": self.rank})
                    if lease is None:
                        continue
                    if self.column.is_current(i):
                        lease.release()
                        continue
                    claimed = True
                    self.heartbeat.add(lease)
                    cleanup_shard(self.column.folder, i)
                    self.make_shard(ShardJob(i, [], {}, lease, fidelity={} if self.fid else None))
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
                    meta = sample_json(raw["json"])
                    job.sources[key] = meta.get("source") if isinstance(meta, dict) else None
                if field is None:
                    raise ValueError("source sample has no image field")
                images[key] = decode_image(raw[field])
            except Exception as e:  # a corrupt source image: recorded, the shard goes on
                job.fail(key, e)
        return images

    def make_shard(self, job: ShardJob) -> None:
        images = self._read(job)
        kept = self._previous_variants(job) if self.column.previous else {}
        keys = [k for k in job.keys if k in images and k not in job.failed]
        first = {key: len(kept.get(key, {})) for key in keys}  # variants 0..first-1 are kept from the column
        need = [key for key in keys if self.fid or first[key] < self.k]
        conds = self._encode(job, need, images)
        if self.fid:
            self._fid = {"src": {}, "thumb": {}, "feat": {}, "flags": {}}
            for key in conds:
                self._fid["src"][key] = self.gen.cond_embedding(conds[key])
                self._fid["thumb"][key] = thumbnail(images[key], self.fid.thumb)
        if kept:
            self._keep(job, kept)
        rows = [(key, k) for key in keys if key in conds for k in range(first[key], self.k)]
        j = 0
        while j < len(rows):
            batch = rows[j : j + self.batch_size]
            self._sample_rows(job, batch, conds)
            j += len(batch)
        if self.fid:
            self._fidelity_docs(job, keys)
        self.writer.put(job, None, None)

    def _previous_variants(self, job: ShardJob) -> dict[str, dict[int, bytes]]:
        """`--update`: the variants the column already holds for this shard (those below the new k), by key.

        A source image whose generation failed keeps its failure; a shard that is not intact (e.g. a crash between
        the update's tar and its stats) keeps nothing, so all its variants are made again.
        """
        prev = self.column.previous or {}
        stats = read_stats(self.column.folder, job.index) or {}
        if stats.get("recipe_hash") != prev.get("recipe_hash") or not is_shard_done(self.column.folder, job.index):
            return {}
        keep = min(self.k, int(prev["k"]))
        out: dict[str, dict[int, bytes]] = {}
        for raw in iter_shard_raw(self.column.folder / shard_name(job.index)):
            doc = sample_json(raw.get("json"))
            if not isinstance(doc, dict):  # a damaged record: this image's variants are made again
                continue
            if doc.get("failed"):
                job.fail(raw["__key__"], doc["failed"])
                continue
            out[raw["__key__"]] = {k: raw[f"gen_{k}.jpg"] for k in range(keep)}
            black = [b for b in doc.get("black") or [] if b < keep]
            if black:
                job.black[raw["__key__"]] = black
        return out

    def _keep(self, job: ShardJob, kept: dict[str, dict[int, bytes]]) -> None:
        """Hand the kept variants to the shard as they are (and score them again when the column is scored)."""
        rows = [(key, k) for key in job.keys if key in kept and key not in job.failed for k in sorted(kept[key])]
        for key, k in rows:
            job.jpgs.setdefault(key, {})[k] = kept[key][k]
        if not self.fid:
            return
        for j in range(0, len(rows), self.batch_size):
            batch = [(key, k) for key, k in rows[j : j + self.batch_size] if key in self._fid["src"]]
            if batch:
                self._score_jpegs(job, batch, [kept[key][k] for key, k in batch])

    def _score_variants(self, job: ShardJob, batch: list[tuple[str, int]], out: list) -> None:
        """Encode the batch's variants as the writer will store them and embed the decoded JPEGs (one forward)."""
        size, quality = self.output.size, self.output.quality
        for v in out:
            v.meta["jpg"] = encode_jpeg(v.image, size, quality, self.output.resample)
        self._score_jpegs(job, batch, [v.meta["jpg"] for v in out])

    def _score_jpegs(self, job: ShardJob, batch: list[tuple[str, int]], jpgs: list[bytes]) -> None:
        """Embed the variants as stored (decoded JPEGs, one forward) and flag them against their source."""
        decoded = [decode_image(j) for j in jpgs]
        feats = self._timed(job, self.gen.embed, decoded)
        t = self.fid.thumb
        for (key, k), f, img in zip(batch, feats, decoded, strict=True):
            self._fid["feat"].setdefault(key, {})[k] = f.detach().float().cpu().flatten()
            self._fid["flags"].setdefault(key, {})[k] = pixel_flags(
                self._fid["thumb"][key], thumbnail(img, t), self.fid
            )

    def _fidelity_docs(self, job: ShardJob, keys: list[str]) -> None:
        import torch

        for key in keys:
            got = self._fid["feat"].get(key, {})
            if key in job.failed or len(got) != self.k:
                continue
            feats = torch.stack([got[k] for k in range(self.k)])
            flags = [self._fid["flags"][key][k] for k in range(self.k)]
            job.fidelity[key] = fidelity_doc(self.fid.space, self._fid["src"][key], feats, flags)
        self._fid = None

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
            if self.fid:
                self._score_variants(job, batch, out)
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


def run_leases(job: GenerateJob) -> dict:
    """The lease engine: this process claims shards through leases, alongside any number of peers."""
    col, opts = job.column, job.opts
    base = job.summary()
    if all(col.is_current(i) for i in col.indices):
        clear_stale_leases(lease_home(col.folder, opts.lease_dir, in_store=True), set(col.indices), opts.lease_timeout)
        if col.finish_update():  # an update's manifest first; the record is tied to it
            finish_column(col)
        return base  # nothing to do: do not even load the model
    from genaug.core.devices import default_device

    dev = opts.device or default_device()
    t = time.perf_counter()
    recipe = job.recipe.as_written()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        quiet_hub_bars()
        gen = generator_class(job.recipe.generator)(recipe, device=dev, weights=opts.weights)
    load = time.perf_counter() - t
    try:
        runner = Runner(col, job.recipe, gen, opts.lease_timeout, opts.progress, dev, opts.lease_dir, job.priority)
        out = runner.run()
    finally:
        gen.close()
    if col.finish_update():  # an update's manifest first; the record is tied to it
        finish_column(col)
    return {**base, **out, "load_seconds": load}


def finish_column(col: Column) -> None:
    """After this process's last commit: the column's score summary, then its completion record (both idempotent)."""
    from genaug.shards.complete import finish_folder

    write_fidelity_summary(col)
    finish_folder(col.folder)  # last: the record is tied to the manifest the summary rewrites


def write_fidelity_summary(col: Column) -> None:
    """Once every shard of a scored column is done: the merged score summary into its manifest (idempotent)."""
    if not col.manifest.get("fidelity") or not all(is_shard_done(col.folder, i, False) for i in col.indices):
        return
    if col.indices != sorted(int(n[:6]) for n in col.manifest.get("shards") or []):
        return  # --limit-shards: a partial column has no column-wide summary yet
    man = read_manifest(col.folder)
    summary = column_summary(col.folder)
    if man.get("fidelity", {}).get("summary") != summary:
        man["fidelity"] = {**man["fidelity"], "summary": summary}
        write_manifest(col.folder, man)


def quiet_hub_bars() -> None:
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except (ImportError, AttributeError):
        pass
