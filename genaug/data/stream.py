"""The training data stream: source shards zipped with generated columns, mixed at probability p, cut into views.

Public API (what the trainer codes against):

    loader = build_train_loader(shards, split="train", gen_columns=["sd"], p=0.5, mix_views="each",
                                views_recipe=recipe.get("views"), batch_size=256, num_workers=8, seed=0,
                                rank=None, world_size=None, epoch=0, shuffle_buffer=1000,
                                augment_device="cpu", device=None, pin_memory=None, read_ahead=1,
                                cache_dir=None, cache_limit=None, range_reads="auto", gen_partial=False)
    loader.steps_per_epoch            # batches per epoch on every rank (fixed: uneven shards never hang DDP)
    loader.set_epoch(e)               # before each epoch (same e as the current one keeps a restored position)
    for batch in loader:              # exactly steps_per_epoch batches (fewer after a mid-epoch restore)
        batch["views"]     # list of float32 [B,3,H,W], normalised, on `device`, global views first then local crops
        batch["label"]     # LongTensor [B], -1 where the split has no label
        batch["key"]       # list[str] of sample keys
        batch["replaced"]  # BoolTensor [B, n_views]: which views came from a generated variant
    loader.state_dict() / loader.load_state_dict(sd)   # epoch, step in epoch, per-worker stream position + RNG
    loader.load_state_dict([sd_rank0, sd_rank1, ...])  # every rank's state: resumes on another world size too
    loader.skipped                    # corrupt samples skipped so far (counted, never fatal)
    loader.io                         # this epoch's I/O so far: {"bytes_fetched": ..., "bytes_used": ...} (IO_FIELDS)
    loader.last_io                    # those of the last finished epoch
    loader.coverage_of(e)             # gen_partial=True: share of epoch e's samples that had variants

    eval_loader = build_eval_loader(shards, split="val", views_recipe=..., batch_size=256, num_workers=4)
    for batch in eval_loader: batch["image"] (float [B,3,S,S]), batch["label"], batch["key"]  # fixed order

`views_recipe` is the `views:` section of a trainer recipe (schema in genaug.data.transforms) or a ViewsRecipe.

Where the colour stage runs (`augment_device`, see resolve_augment_device): "cpu" in the workers, which deliver
colour-augmented uint8 views (the main process normalises them to float32); "cuda" (and "auto" with a CUDA
`device`) on the device: workers deliver uint8 crops plus their parameter rows [B, PARAM_WIDTH], the loader pins
them, copies them (1/4 of the float32 bytes) and runs colour, blur, solarize and normalisation batched on `device`.

How it works: the shard list is shuffled per epoch with (seed, epoch), the same on every rank; logical worker
g = rank * W + w of the R x W workers takes shards g, g + R*W, ... and must deliver the batches w, w + W, ... of
its rank's epoch (the DataLoader's round robin), re-reading its shards (reshuffled) if they run out, so every rank
yields the same number of batches. Each worker reads source and generated tars in lockstep (equal keys asserted),
shuffles within a buffer (remote shards of a pass are fetched `read_ahead` shards ahead, genaug.data.prefetch,
which changes timing only), and for each sample draws the mixing uniforms and a transform seed from one numpy RNG
seeded with (seed, epoch, rank, worker). Batches are formed in the workers; the loader records, for each worker,
how many samples it had read and its RNG state at its last delivered batch. Restoring replays each worker's reads
and draws up to that position without decoding (cheap), checks the RNG state matches, and goes on: the batches
after a restore equal those of the uninterrupted run. The loader also records which samples (shard offset + row)
its batches consumed in the epoch; restored on another number of ranks or workers, from every rank's state, it
deals the samples the epoch has left over the new ones (genaug.data.elastic).

The draws of a whole pass are made in one block when the pass starts, before any of its shards is read, so the
generated columns can be read by byte ranges of the variants the views take (genaug.data.ranges, `range_reads`)
with the same draws, hence the same batches, as whole-shard reads. In the rest of an elastically resumed epoch a
pass draws for every row of its shards and uses those of the rows its span holds (range reads fetch only theirs).

With `cache_dir`, remote shards come through the machine's shard cache (genaug.shards.cache): that changes where
the bytes come from, never the stream. The rule between the two: with a cache, generated columns are read whole
through it (later epochs and runs read them locally); without one, columns in an object store are read by ranges
(`range_reads` auto; `on` reads by ranges even with a cache, past it). `loader.io` counts the epoch's bytes fetched
from the store (local shards read whole count too), served by the cache, of the images the views used, and the
column shards read whole because their index failed (IO_FIELDS).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genaug.core.errors import GenaugError
from genaug.data.color import apply_color_stage, normalize
from genaug.data.decode import CorruptImage
from genaug.data.elastic import RestPlan, offsets, pack, plan_rest, union, unpack
from genaug.data.mixing import MixPolicy
from genaug.data.partial import committed_shards, coverage, pack_sets, unpack_sets
from genaug.data.prefetch import ShardPrefetcher, count_bytes, fetch_now, take_counts
from genaug.data.ranges import RANGE_GAP, ColumnsRead, read_columns, resolve_range_reads, variant_fields, variant_scores
from genaug.data.transforms import ViewsRecipe, eval_view, make_views, parse_views
from genaug.shards.cache import ShardCache, open_cache, parse_size
from genaug.shards.complete import read_record
from genaug.shards.layout import IMAGE_FIELDS, column_command, finish_ingest, status_command, verify_command
from genaug.shards.manifest import check_column_source, open_gen_split, open_split, read_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.scores import require_scores, score_source
from genaug.shards.storage import Location, RemotePath, file_sha256
from genaug.shards.writer import is_shard_done, read_stats

#: per-epoch I/O counts of the training stream (metrics.jsonl, loader.io), one set for range reads and the cache:
#: bytes read from the store (tars, their ranges, stats and indexes; local shards read whole count too), image bytes
#: the views used, bytes served by the local shard cache (none without one), and column shards read whole because
#: their index failed
IO_FIELDS = ("bytes_fetched", "bytes_used", "bytes_from_cache", "index_fallback")


class MisalignedColumn(GenaugError):
    """A generated column whose shard does not hold the source shard's keys in the same order."""


@dataclass(frozen=True)
class Columns:
    """Where one split's source shards and generated columns are, and how many samples each shard holds."""

    source: Location
    gens: tuple[Location, ...]
    shards: tuple[str, ...]
    counts: tuple[int, ...]
    scores: tuple[Location | None, ...] = ()  # per column: its score side column, or None (scores inline, or none)
    stats: dict = field(default_factory=dict, compare=False)  # str(folder / shard) -> stats read at open (remote)

    @property
    def total(self) -> int:
        """Number of samples of the split."""
        return sum(self.counts)


def open_columns(
    shards: str | Path,
    split: str,
    gen_columns: list[str] | tuple[str, ...] = (),
    need_scores: str | None = None,
    partial: bool = False,
) -> Columns:
    """Check and open a split and its generated columns (same shard list, complete shards) and their scores.

    `need_scores` (the flag that needs them) makes a column without fidelity scores an error naming `genaug score`.
    `partial` (--gen-partial) accepts generated columns whose shards are not all committed yet (genaug.data.partial).
    A folder with a valid completion record (genaug.shards.complete) is opened from it with one read; one without
    (written before records existed, or not finished) is checked shard by shard.
    """
    ss, src, man = open_split(shards, split)
    names = tuple(man.get("shards") or [])
    rec = read_record(src, man)
    counts, pinned = [], {}
    for name in names:
        st = rec.get(name) if rec is not None else read_stats(src, int(name[:6]))
        if st is None or (rec is None and not (src / name).exists()):
            raise GenaugError(f"source shard {src / name} is not complete: {finish_ingest(src, man)}")
        counts.append(int(st.get("count", 0)))
        if isinstance(src, RemotePath):
            pinned[str(src / name)] = st
    gens, sides = [], []
    for col in gen_columns:
        gdir, gman = open_gen_split(ss, col, split, shards)
        if tuple(gman.get("shards") or []) != names:
            raise MisalignedColumn(f"generated column {gdir} lists other shards than {src}: regenerate it")
        if not partial and read_record(gdir, gman) is None:
            for name in names:
                if not (gdir / name).exists():
                    raise GenaugError(
                        f"generated shard {gdir / name} is missing: finish the column (rerun the generate command "
                        f"that made it; {status_command(gdir)} shows what is left), or pass --gen-partial to train "
                        "on the shards committed so far"
                    )
        gens.append(gdir)
        found = require_scores(ss, col, split, need_scores) if need_scores else score_source(ss, col, split)
        side = found[1] if found and found[0] == "side" else None
        if side is not None:
            sman = read_manifest(side)
            check_column_source(side, sman, src, man)
            if tuple(sman.get("shards") or []) != names:
                raise MisalignedColumn(
                    f"score column {side} lists other shards than {src}: "
                    f"rerun {column_command('score', side, '--overwrite')}"
                )
            if read_record(side, sman) is None:
                for name in names:
                    if not is_shard_done(side, int(name[:6]), check_sha=False):
                        raise GenaugError(
                            f"score shard {side / name} is not complete: "
                            f"rerun {column_command('score', side)} to finish it"
                        )
        sides.append(side)
    if not names:
        raise GenaugError(f"split {src} has no shards")
    return Columns(src, tuple(gens), names, tuple(counts), tuple(sides), pinned)


def _variants(raw: dict, side: dict | None = None) -> tuple[list[bytes], list[float | None]]:
    """The variants of a generated sample and their fidelity scores (from `side`, a score sample, or inline)."""
    fields = variant_fields(raw)
    return [raw[f] for f in fields], variant_scores(raw, fields, side)


def _label(raw: dict) -> int:
    try:
        return int(raw["cls"].decode("ascii").strip()) if "cls" in raw else -1
    except (ValueError, UnicodeDecodeError):
        return -1


def shard_intact(folder: Location, name: str, data: bytes | None = None, stats: dict | None = None) -> bool:
    """True when the shard's bytes (`data` when fetched already) hash to the sha256 its stats recorded at commit.

    Hashing a shard before it is decoded costs about 1% of decoding it, and leaves it in the page cache."""
    st = (stats if stats is not None else read_stats(folder, int(name[:6]))) or {}
    want = st.get("sha256")
    if not want:
        return True
    got = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(folder / name)
    return got == want


def _checked(folder: Location, name: str, fetch: Callable, counter: dict | None = None) -> tuple[bytes | None, bool]:
    """(the shard's bytes when remote, whether they match its recorded checksum); a missing shard is a GenaugError."""
    try:
        data, stats = fetch(folder, name)
        if data is None:  # a local shard is read whole too (hashed, then streamed from the page cache); the bytes
            count_bytes(counter, int((stats or {}).get("bytes") or 0), False)  # of a remote one: counted by fetch
        return data, shard_intact(folder, name, data, stats)
    except FileNotFoundError:
        raise GenaugError(f"shard {folder / name} is missing: run {verify_command(folder)}") from None


def zip_shard(
    cols: Columns,
    name: str,
    counter: dict | None = None,
    fetch: Callable = fetch_now,
    read_cols: Callable[[str], ColumnsRead] | None = None,
):
    """Samples of one source shard zipped with its generated columns: key, image, label, variants (raw bytes).

    A remote shard's bytes come from `fetch(folder, name)` (a ShardPrefetcher's read-ahead, or fetched now). With
    `read_cols` the generated columns come from it instead (genaug.data.ranges: range reads; a variant no view
    uses is None), and bytes fetched and index fallbacks are counted in counter["bytes_fetched"/"index_fallback"].

    Each shard is checked against its recorded checksum when it is opened: a damaged source shard is an error
    (the caller skips it), a damaged generated shard is left out (its samples use the source images only) with a
    warning, and every sample served that way is counted in counter["gen_fallback"]."""
    if fetch is fetch_now:  # fetched now: its bytes counted here
        fetch = partial(fetch_now, counter=counter)
    src_data, ok = _checked(cols.source, name, fetch, counter)
    if not ok:
        raise GenaugError(
            f"source shard {cols.source / name} does not match its recorded checksum: run {verify_command(cols.source)}"
        )
    gens, gen_data = [], []
    side_of = dict(zip(cols.gens, cols.scores or (None,) * len(cols.gens), strict=True))
    if read_cols is not None:
        got = read_cols(name)
        for w in got.warnings:
            warnings.warn(w, stacklevel=2)
        count_bytes(counter, got.fetched, False)
        if counter is not None and got.fallbacks:
            counter["index_fallback"] = counter.get("index_fallback", 0) + got.fallbacks
        gens = [g for g, r in zip(cols.gens, got.rows, strict=True) if r is not None]
        its = [iter(r) for r in got.rows if r is not None]
        side_its = [
            _side_rows(got.sides[c], side_of[g], name) for c, g in enumerate(cols.gens) if got.rows[c] is not None
        ]
        yield from _zipped(cols, name, counter, src_data, gens, its, side_its)
        return
    for g in cols.gens:
        try:
            data, ok = _checked(g, name, fetch, counter)
        except GenaugError as e:  # gone or unreadable since the loader opened: like a damaged one
            data, ok = None, False
            warnings.warn(f"genaug: {e}", stacklevel=2)
        if ok:
            gens.append(g)
            gen_data.append(data)
        else:
            warnings.warn(
                f"genaug: generated shard {g / name} does not match its recorded checksum: its variants are not "
                f"used (source images only); regenerate it ({verify_command(g)} lists the damaged shards)",
                stacklevel=2,
            )
    its = [iter_shard_raw(g / name, d) for g, d in zip(gens, gen_data, strict=True)]
    side_its = [iter_shard_raw(side_of[g] / name) if side_of[g] is not None else None for g in gens]
    yield from _zipped(cols, name, counter, src_data, gens, its, side_its)


def _side_rows(rows: list[dict] | None, side: Location | None, name: str):
    """The score-column samples of shard `name`: those already read, else streamed from `side` (None: no column)."""
    if rows is not None:
        return iter(rows)
    return iter_shard_raw(side / name) if side is not None else None


def _zipped(cols: Columns, name: str, counter: dict | None, src_data, gens: list, gen_its: list, side_its: list):
    """The source shard's samples zipped with the column samples of `gen_its`, alignment checked (see zip_shard)."""
    fallback = len(gens) < len(cols.gens)
    side_of = dict(zip(cols.gens, cols.scores or (None,) * len(cols.gens), strict=True))
    sides = [side_of[g] for g in gens]
    its = [iter_shard_raw(cols.source / name, src_data), *gen_its]
    for rows in itertools.zip_longest(*its):
        side_rows = [next(it, None) if it is not None else None for it in side_its]
        src = rows[0]
        if any(r is None for r in rows):
            bad = [str(gens[j - 1] / name) for j, r in enumerate(rows) if j and (r is None) != (src is None)]
            raise MisalignedColumn(
                f"{', '.join(bad)} has a different number of samples than {cols.source / name}: "
                f"the generated column is misaligned, regenerate it ({verify_command(cols.source)} shows which)"
            )
        for j, r in enumerate(rows[1:]):
            if r["__key__"] != src["__key__"]:
                raise MisalignedColumn(
                    f"{gens[j] / name} holds key {r['__key__']} where {cols.source / name} "
                    f"holds {src['__key__']}: the column is misaligned, regenerate it"
                )
        for j, r in enumerate(side_rows):
            if src is not None and sides[j] is not None and r is None:
                raise MisalignedColumn(
                    f"{sides[j] / name} has fewer samples than {cols.source / name}: "
                    f"rerun {column_command('score', sides[j], '--overwrite')}"
                )
            if r is not None and r["__key__"] != src["__key__"]:
                raise MisalignedColumn(
                    f"{sides[j] / name} holds key {r['__key__']} where {cols.source / name} "
                    f"holds {src['__key__']}: the score column is misaligned, "
                    f"rerun {column_command('score', sides[j], '--overwrite')}"
                )
        image = next((src[f] for f in IMAGE_FIELDS if f in src), None)
        variants, scores = [], []
        for j, r in enumerate(rows[1:]):
            v, sc = _variants(r, side_rows[j])
            variants += v
            scores += sc
        if fallback and counter is not None:
            counter["gen_fallback"] = counter.get("gen_fallback", 0) + 1
        yield {"key": src["__key__"], "image": image, "label": _label(src), "variants": variants, "scores": scores}


def _safe_shard(cols: Columns, name: str, counter: dict, fetch: Callable = fetch_now, read_cols=None):
    try:
        yield from zip_shard(cols, name, counter, fetch, read_cols)
    except MisalignedColumn:
        raise
    except GenaugError as e:  # an unreadable tar: skip the rest of it, keep the epoch going
        counter["bad_shards"] += 1
        warnings.warn(f"genaug: skipping the rest of a shard: {e}", stacklevel=2)


class _TrainStream(IterableDataset):
    """Per-worker stream of ready batches (uint8 views); see the module docstring."""

    def __init__(
        self,
        cols,
        policy,
        recipe,
        *,  # ten numbers in a row: keywords only, so no two can be swapped silently
        batch_size,
        num_workers,
        seed,
        rank,
        world_size,
        steps,
        buffer,
        gpu,
        read_ahead=1,
        cache: ShardCache | None = None,
        ranged=(),
        range_gap: int = RANGE_GAP,
    ):
        self.cols, self.policy, self.recipe, self.read_ahead = cols, policy, recipe, int(read_ahead)
        self.cache = cache  # the machine's shard cache (remote shards only), or None
        self.ranged = tuple(ranged) or (False,) * len(cols.gens)  # per column: read by ranges (genaug.data.ranges)
        self.range_gap = int(range_gap)  # ranges of a column shard closer than this are one request
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.rank, self.world_size, self.steps, self.buffer, self.gpu = rank, world_size, steps, buffer, gpu
        self.epoch = 0
        self.start_step = 0
        self.resume: dict = {}
        self.rest: RestPlan | None = None  # rest of an epoch interrupted on another world size (genaug.data.elastic)
        self.first = 0  # the step at which that rest began (0: a whole epoch)
        self.partial = False  # --gen-partial: the epoch uses only the column shards of `avail` (genaug.data.partial)
        self.avail: tuple[frozenset[str], ...] | None = None  # per column: its shards this epoch uses (None: all)

    def cols_for(self, name: str) -> tuple[Columns, tuple[bool, ...]]:
        """The columns (and their range-read flags) whose shard `name` this epoch uses: all but a partial column's
        shards not committed when the epoch started (their samples take their source images only)."""
        if self.avail is None:
            return self.cols, self.ranged
        use = [c for c, got in enumerate(self.avail) if name in got]
        if len(use) == len(self.cols.gens):
            return self.cols, self.ranged
        scores = self.cols.scores or (None,) * len(self.cols.gens)
        cols = replace(self.cols, gens=tuple(self.cols.gens[c] for c in use), scores=tuple(scores[c] for c in use))
        return cols, tuple(self.ranged[c] for c in use)

    def _raw(self, mine: list[tuple[str, np.ndarray | None]], rng: np.random.Generator, counter: dict):
        """Samples of (shard, rows to read or None for all) `mine`, shuffled in a buffer, each with its id."""
        start = dict(zip(self.cols.shards, offsets(self.cols.counts).tolist(), strict=True))
        count = dict(zip(self.cols.shards, self.cols.counts, strict=True))
        keep_of = {name: None if rows is None else set(rows.tolist()) for name, rows in mine}  # a shard at most once
        passes = 0
        nv = self.recipe.n_views
        while True:
            order = mine if passes == 0 else [mine[i] for i in rng.permutation(len(mine))]
            # the mixing uniforms and transform seeds of every row of the pass's shards (those of the rows a rest span
            # leaves out unused), drawn before any shard is read, so range reads know which variants each shard's
            # views take (genaug.data.ranges); one block per pass
            sizes = [count[name] for name, _ in order]
            first = {name: int(a) for (name, _), a in zip(order, offsets(sizes).tolist(), strict=True)}
            total = sum(sizes)
            draws, seeds = rng.random((total, 2 * nv)), rng.integers(2**63, size=total)
            n, buf = 0, []
            read_cols = None
            if any(self.ranged):

                def read_cols(name, first=first, draws=draws, keep_of=keep_of):
                    rows = draws[first[name] : first[name] + count[name]]
                    cols, ranged = self.cols_for(name)
                    return read_columns(cols, name, rows, self.policy, nv, ranged, keep_of[name], self.range_gap)

            remote = read_cols is not None and any(isinstance(g, RemotePath) for g in self.cols.gens)
            folders = [self.cols.source] if read_cols is not None else [self.cols.source, *self.cols.gens]
            known = self.cols.stats if self.cache is not None else None  # with a cache: a warm epoch sends nothing
            names = [m[0] for m in order]
            pre = ShardPrefetcher(
                folders, names, self.read_ahead, self.cache, counter, known, read_cols if remote else None,
                skip=self._unused if self.avail is not None else None,
            )  # fmt: skip
            try:
                for i, (name, _) in enumerate(order):
                    pre.start(i)
                    keep = keep_of[name]
                    got = pre.columns if remote else read_cols
                    for row, s in enumerate(_safe_shard(self.cols_for(name)[0], name, counter, pre.fetch, got)):
                        if row >= count[name]:
                            counter["bad_shards"] += 1
                            warnings.warn(
                                f"genaug: shard {self.cols.source / name} holds more samples than its stats say: "
                                f"skipping the rest of it; run {verify_command(self.cols.source)}",
                                stacklevel=2,
                            )
                            break
                        if keep is not None and row not in keep:
                            continue
                        s["id"] = start[name] + row
                        s["u"], s["tseed"] = draws[first[name] + row], int(seeds[first[name] + row])
                        n += 1
                        if len(buf) < self.buffer:
                            buf.append(s)
                            continue
                        j = int(rng.integers(len(buf)))
                        buf[j], s = s, buf[j]
                        yield s
            finally:
                pre.close()
            for j in rng.permutation(len(buf)):  # drain at the end of a pass: passes never mix
                yield buf[j]
            if n == 0:
                raise GenaugError(
                    f"no readable sample in shards {[m[0] for m in mine[:3]]}... of {self.cols.source}: "
                    f"run {verify_command(self.cols.source)}"
                )
            passes += 1

    def _unused(self, folder: Location, name: str) -> bool:
        """True for a generated column's shard this epoch does not use (never fetched ahead)."""
        return any(folder == g and name not in got for g, got in zip(self.cols.gens, self.avail or (), strict=False))

    def worker_batches(self, logical: int):
        """The batches of logical worker `logical` of this rank, for the current epoch from start_step."""
        nw = max(1, self.num_workers)
        entropy = [self.seed, self.epoch, self.rank, logical]
        if self.rest is None:
            order = epoch_shard_order(self.cols.shards, self.seed, self.epoch)
            g = self.rank * nw + logical
            mine = [(name, None) for name in order[g :: self.world_size * nw]]
        else:  # the rest of an epoch interrupted on another world size: this worker's span of the left samples
            mine = self.rest.spans(self.rank, nw, self.batch_size, self.cols.shards, self.cols.counts)[logical]
            entropy += [1, self.rest.consumed]
        first = self.first + logical
        quota = len(range(first, self.steps, nw)) - len(range(first, max(self.first, self.start_step), nw))
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        skip = int(self.resume.get("pos", {}).get(logical, 0))
        counter = {"bad_shards": 0}
        nv = self.recipe.n_views
        pos, skipped, batch, fb_seen, ids = 0, 0, [], 0, []
        stream = self._raw(mine, rng, counter)
        while quota > 0:
            s = next(stream)
            u, tseed = s["u"], s["tseed"]
            pos += 1
            if pos <= skip:
                if pos == skip and "rng" in self.resume and logical in self.resume["rng"]:
                    if rng.bit_generator.state != self.resume["rng"][logical]:
                        raise GenaugError(
                            "restored data stream diverged from the checkpoint (shards, seed or "
                            "workers changed): resume with the same data and settings"
                        )
                continue
            ids.append(s["id"])  # consumed, delivered or skipped as corrupt
            n_var = len(s["variants"])
            if n_var:
                counter["gen_seen"] = counter.get("gen_seen", 0) + 1
                if self.policy.min_score is not None and not self.policy.usable(n_var, s["scores"]):
                    counter["gen_filtered"] = counter.get("gen_filtered", 0) + 1  # none left: source image only
            sources = self.policy.decide(u, nv, n_var, s["scores"])
            used = [s["image"], *(s["variants"][j - 1] for j in set(sources) if j > 0)]
            if any(b is None for b in used[1:]):  # a range read left out a variant a view takes: a bug, never used
                raise RuntimeError(f"sample {s['key']}: a variant its views use was not read")
            counter["bytes_used"] = counter.get("bytes_used", 0) + sum(len(b) for b in used if b is not None)
            try:
                if s["image"] is None:
                    raise CorruptImage("sample has no image field")
                crops, rows = make_views([s["image"], *s["variants"]], sources, self.recipe, random.Random(tseed))
            except CorruptImage as e:
                skipped += 1
                warnings.warn(f"genaug: skipping corrupt sample {s['key']}: {e}", stacklevel=2)
                continue
            batch.append((s, sources, crops, rows))
            if len(batch) == self.batch_size:
                quota -= 1
                fallback = counter.get("gen_fallback", 0) - fb_seen
                fb_seen += fallback
                out = self._collate(batch, logical, pos, rng.bit_generator.state, skipped, fallback)
                for name, n in take_counts(counter, ("gen_seen", "gen_filtered", *IO_FIELDS)).items():
                    out["_meta"][name] = n  # counts since the last batch of this worker
                out["_meta"]["ids"] = ids
                yield out
                batch, skipped, ids = [], 0, []

    def _collate(self, batch, logical, pos, state, skipped, fallback: int = 0) -> dict:
        nv = self.recipe.n_views
        views, params = [], []
        for v in range(nv):
            x = torch.stack([b[2][v] for b in batch])
            pr = torch.tensor([b[3][v] for b in batch], dtype=torch.float32)
            views.append(x if self.gpu else apply_color_stage(x, pr))
            params.append(pr)
        return {
            "views": views,
            "params": params if self.gpu else None,
            "label": torch.tensor([b[0]["label"] for b in batch], dtype=torch.long),
            "key": [b[0]["key"] for b in batch],
            "replaced": torch.tensor([[src > 0 for src in b[1]] for b in batch], dtype=torch.bool),
            "_meta": {"worker": logical, "pos": pos, "rng": state, "skipped": skipped, "gen_fallback": fallback},
        }

    def __iter__(self):
        info = get_worker_info()
        nw = max(1, self.num_workers)
        j = info.id if info is not None else 0
        if info is not None:
            torch.set_num_threads(1)  # one core per worker: the workers are the parallelism
        yield from self.worker_batches((j + self.start_step - self.first) % nw)


def epoch_shard_order(shards: list[str], seed: int, epoch: int) -> list[str]:
    """The order in which the ranks and workers of a run read the source shards in `epoch` (same on every rank)."""
    return [shards[i] for i in np.random.default_rng([seed, epoch, 7]).permutation(len(shards))]


def resolve_augment_device(choice: str | None, device=None) -> bool:
    """Whether the colour stage is deferred to `device`: "cpu" never, "cuda" always, "auto" when it is CUDA."""
    dev = torch.device(device) if device is not None else None
    choice = choice or "cpu"
    if choice not in ("auto", "cpu", "cuda"):
        raise GenaugError(f"--augment-device must be auto, cpu or cuda, got {choice!r}")
    if choice == "cuda" and (dev is None or dev.type != "cuda"):
        raise GenaugError(
            f"--augment-device cuda needs a CUDA training device, got {dev or 'none'}: use --augment-device auto or cpu"
        )
    return choice == "cuda" or (choice == "auto" and dev is not None and dev.type == "cuda")


class TrainLoader:
    """Iterable of training batches with a fixed number of steps per epoch and a resumable state."""

    def __init__(self, stream: _TrainStream, device=None, pin_memory: bool = False, prefetch: int = 2) -> None:
        self.stream = stream
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = pin_memory
        self.prefetch = prefetch
        self.steps_per_epoch = stream.steps
        self.epoch = stream.epoch
        self.step = 0
        self.skipped = 0
        self.gen_fallback = 0  # samples read from shards whose generated column failed its checksum
        self.gen_seen = 0  # samples with generated variants served so far
        self.gen_filtered = 0  # of those, samples none of whose variants passed --gen-min-score (source only)
        self.io = dict.fromkeys(IO_FIELDS, 0)  # this epoch's I/O counts (see IO_FIELDS), summed over workers
        self.last_io = dict(self.io)  # those of the last finished epoch
        self._pos: dict[int, int] = {}
        self._rng: dict[int, dict] = {}
        self._seen: np.ndarray | None = None  # ids of the samples this epoch's delivered batches consumed
        self._rest: tuple[bytes, int, RestPlan] | None = None  # (consumed before, first step, plan) of an elastic rest
        self.partial = stream.partial  # --gen-partial: each epoch uses the column shards committed when it started
        self._sets: dict[int, tuple[frozenset[str], ...]] = {}  # epoch -> per column: the shards it uses (partial)
        self.coverage: dict[int, float] = {}  # epoch -> share of samples with variants in it (partial)

    def __len__(self) -> int:
        return self.steps_per_epoch - self.step

    def _new_epoch(self, epoch: int) -> None:
        self.epoch, self.step, self._pos, self._rng = int(epoch), 0, {}, {}
        self._seen, self._rest = None, None  # (the byte counts start again when the next epoch's first batch does)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next; the current epoch keeps a restored mid-epoch position."""
        if epoch != self.epoch:
            self._new_epoch(epoch)

    def _seen_now(self) -> np.ndarray:
        if self._seen is None:
            self._seen = np.zeros(self.stream.cols.total, dtype=bool)
        return self._seen

    def _epoch_sets(self) -> tuple[frozenset[str], ...]:
        """The column shards the current epoch uses: recorded (a resumed epoch), else looked up now (partial)."""
        if self.epoch not in self._sets:
            s = self.stream
            before = [e for e in self._sets if e < self.epoch]
            known = self._sets[max(before)] if before else (frozenset(),) * len(s.cols.gens)
            sets = None
            if s.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                box = [None]  # one look, on rank 0, for every rank: the ranks' epochs use the same shards
                if s.rank == 0:
                    box = [self._look(known)]
                torch.distributed.broadcast_object_list(box, src=0)
                sets = box[0]
            self._sets[self.epoch] = sets if sets is not None else self._look(known)
            self.coverage[self.epoch] = coverage(s.cols.shards, s.cols.counts, self._sets[self.epoch])
        return self._sets[self.epoch]

    def _look(self, known: tuple[frozenset[str], ...]) -> tuple[frozenset[str], ...]:
        s = self.stream
        return tuple(
            committed_shards(g, s.cols.shards, s.cols.counts, k) for g, k in zip(s.cols.gens, known, strict=True)
        )

    def coverage_of(self, epoch: int) -> float | None:
        """The share of samples with variants in data epoch `epoch` (--gen-partial; None otherwise or not started)."""
        return self.coverage.get(int(epoch)) if self.partial else None

    def _partial_state(self) -> dict | None:
        if not self.partial:
            return None
        names = self.stream.cols.shards
        return {
            "sets": {str(e): pack_sets(names, sets) for e, sets in sorted(self._sets.items())},
            "coverage": {str(e): c for e, c in sorted(self.coverage.items())},
        }

    def _load_partial(self, saved: dict | None) -> None:
        """The shard sets (and coverage) of the epochs a checkpoint recorded: the interrupted epoch reuses its own."""
        self._sets, self.coverage = {}, {}
        if not self.partial or not isinstance(saved, dict):
            return
        names = self.stream.cols.shards
        for e, packed in (saved.get("sets") or {}).items():
            if len(packed) != len(self.stream.cols.gens):
                raise GenaugError(
                    f"cannot resume the data stream: its checkpoint records {len(packed)} generated columns' shards, "
                    f"this run has {len(self.stream.cols.gens)}: resume with the same --gen"
                )
            self._sets[int(e)] = unpack_sets(names, packed)
        self.coverage = {int(e): float(c) for e, c in (saved.get("coverage") or {}).items()}

    def state_dict(self) -> dict:
        """Epoch, step within it, per-worker stream positions and RNG states, settings that must match."""
        s = self.stream
        return {
            "gen_partial": self._partial_state(),  # --gen-partial: the column shards each epoch used, its coverage
            "epoch": self.epoch,
            "step": self.step,
            "pos": dict(self._pos),
            "rng": dict(self._rng),
            "skipped": self.skipped,
            "gen_fallback": self.gen_fallback,
            "gen_seen": self.gen_seen,
            "gen_filtered": self.gen_filtered,
            "seen": pack(self._seen_now()),  # what an elastic resume deals out again (genaug.data.elastic)
            "total": s.cols.total,
            "rest": None if self._rest is None else {"consumed": self._rest[0], "first": self._rest[1]},
            "io": dict(self.io),
            "seed": s.seed,
            "rank": s.rank,
            "world_size": s.world_size,
            "num_workers": s.num_workers,
            "batch_size": s.batch_size,
            "p": s.policy.p,
            "mix_views": s.policy.mix_views,
            "gen_min_score": s.policy.min_score,
            "gen_weighting": s.policy.weighting,
        }

    def load_state_dict(self, sd: dict | list[dict], rebatch: bool = False) -> None:
        """Restore a state_dict: the next iteration continues the saved epoch at the saved step.

        `sd` is this rank's state, or the list of every rank's states (what a Trainer checkpoint holds). With the
        same world size, workers and batch size the stream continues bitwise; with others (the list needed) the rest
        of the interrupted epoch is dealt out again over this world size (genaug.data.elastic). Another batch size
        is refused unless `rebatch` (a caller that keeps the global batch itself, as `genaug train` does)."""
        s = self.stream
        states = list(sd) if isinstance(sd, (list, tuple)) else [sd]
        if not states:
            raise GenaugError("cannot resume the data stream: the checkpoint holds no data state")
        for k in ("seed", "batch_size"):
            if k == "batch_size" and rebatch:
                continue
            if states[0].get(k) != getattr(s, k):
                raise GenaugError(
                    f"cannot resume the data stream: {k} was {states[0].get(k)} in the checkpoint and is "
                    f"{getattr(s, k)} now; resume with the same {k}"
                )
        old_world, old_workers = states[0].get("world_size"), states[0].get("num_workers")
        if old_world == s.world_size and old_workers == s.num_workers and states[0].get("batch_size") == s.batch_size:
            mine = states[s.rank] if len(states) == old_world else states[0]
            if len(states) != old_world and states[0].get("rank") != s.rank:
                raise GenaugError(
                    f"cannot resume the data stream of rank {s.rank}: the state given is that of rank "
                    f"{states[0].get('rank')}; pass every rank's state (the Trainer's checkpoint holds them)"
                )
            self._restore(mine)
            return
        if len(states) != old_world or sorted(int(st.get("rank", -1)) for st in states) != list(range(old_world)):
            raise GenaugError(
                f"cannot resume the data stream on {s.world_size} x {s.num_workers} workers: it was checkpointed "
                f"on {old_world} x {old_workers}, and another world size (or batch size) needs the data state of "
                f"every one of its {old_world} ranks (the Trainer's checkpoint holds them), got {len(states)}"
            )
        self._elastic(states)

    def _restore(self, sd: dict) -> None:
        """Same world size and workers: continue exactly where `sd` (this rank's state) stopped."""
        s = self.stream
        self.epoch, self.step, self.skipped = int(sd["epoch"]), int(sd["step"]), int(sd.get("skipped", 0))
        self.gen_fallback = int(sd.get("gen_fallback", 0))
        self.gen_seen, self.gen_filtered = int(sd.get("gen_seen", 0)), int(sd.get("gen_filtered", 0))
        self.io = _io_counts(sd.get("io"))
        self._pos = {int(k): int(v) for k, v in sd.get("pos", {}).items()}
        self._rng = {int(k): v for k, v in sd.get("rng", {}).items()}
        total = s.cols.total
        self._seen = unpack(sd["seen"], total) if sd.get("seen") is not None and sd.get("total") == total else None
        self._load_partial(sd.get("gen_partial"))
        self._rest = None
        if sd.get("rest"):  # in the rest of an elastically resumed epoch: the same plan again
            base = unpack(sd["rest"]["consumed"], total)
            plan = plan_rest(base, s.cols.counts, s.seed, self.epoch, s.world_size, s.batch_size)
            self._rest = (sd["rest"]["consumed"], int(sd["rest"]["first"]), plan)

    def _elastic(self, states: list[dict]) -> None:
        """Another world size or worker count: deal the samples the interrupted epoch has left over this one."""
        s = self.stream
        epochs = {(int(st["epoch"]), int(st["step"])) for st in states}
        if len(epochs) != 1:
            raise GenaugError(f"cannot resume the data stream: its ranks were checkpointed at {sorted(epochs)}")
        epoch, step = epochs.pop()
        totals = {st.get("total") for st in states}
        if totals != {s.cols.total}:
            raise GenaugError(
                f"cannot resume the data stream: the checkpoint's split held {sorted(map(str, totals))} samples and "
                f"{s.cols.source} holds {s.cols.total}: resume on the same data"
            )
        seen = union(states, s.cols.total)
        self._new_epoch(epoch)
        self._load_partial(states[0].get("gen_partial"))  # the same on every rank (rank 0 looked for all)
        if s.rank == 0:  # the counters are per rank: rank 0 carries the old ranks' sums, so the totals stay right
            for k in ("skipped", "gen_fallback", "gen_seen", "gen_filtered"):
                setattr(self, k, sum(int(st.get(k, 0)) for st in states))
            olds = [_io_counts(st.get("io")) for st in states]  # and the interrupted epoch's I/O so far
            self.io = {k: sum(io[k] for io in olds) for k in IO_FIELDS}
        if not seen.any() and step == 0:
            return  # checkpointed at an epoch boundary: a fresh epoch on the new world size
        plan = plan_rest(seen, s.cols.counts, s.seed, epoch, s.world_size, s.batch_size)
        if plan.steps == 0:
            self.last_io = dict(self.io)
            self._new_epoch(epoch + 1)  # fewer samples left than one step of every rank: the epoch is over
            return
        self.step = self.steps_per_epoch - plan.steps
        self._seen = seen.copy()
        self._rest = (pack(seen), self.step, plan)

    @property
    def deferred(self) -> bool:
        """True when the colour stage runs here (on `device`), not in the workers."""
        return bool(self.stream.gpu)

    def _finish(self, b: dict) -> dict:
        meta = b.pop("_meta")
        self._pos[meta["worker"]] = meta["pos"]
        self._rng[meta["worker"]] = meta["rng"]
        self.skipped += meta["skipped"]
        self.gen_fallback += meta.get("gen_fallback", 0)
        self.gen_seen += meta.get("gen_seen", 0)
        self.gen_filtered += meta.get("gen_filtered", 0)
        ids = np.asarray(meta.get("ids", []), dtype=np.int64)
        self._seen_now()[ids[ids >= 0]] = True
        for name in IO_FIELDS:
            self.io[name] += int(meta.get(name, 0))
        params = b.pop("params")
        r = self.stream.recipe
        views = []
        for v, x in enumerate(b["views"]):
            if self.device is not None:
                x = x.to(self.device, non_blocking=True)
            if params is not None:
                x = apply_color_stage(x, params[v])
            views.append(normalize(x, r.mean, r.std))
        b["views"] = views
        return b

    def __iter__(self):
        s = self.stream
        if self.step >= self.steps_per_epoch:
            self.set_epoch(self.epoch + 1)
        if self.step == 0:  # an epoch starts: its byte counts start at 0
            self.io = dict.fromkeys(IO_FIELDS, 0)
        s.epoch, s.start_step, s.resume = self.epoch, self.step, {"pos": dict(self._pos), "rng": dict(self._rng)}
        s.rest, s.first = (self._rest[2], self._rest[1]) if self._rest is not None else (None, 0)
        s.avail = self._epoch_sets() if self.partial else None  # fixed for the whole epoch
        if s.num_workers > 0:
            it = DataLoader(
                s,
                batch_size=None,
                num_workers=s.num_workers,
                pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch,
                persistent_workers=False,
            )
        else:
            it = s
        for b in it:
            out = self._finish(b)
            self.step += 1
            yield out
        if self.step >= self.steps_per_epoch:
            self.last_io = dict(self.io)  # the finished epoch's I/O counts
            self._new_epoch(self.epoch + 1)


def _io_counts(saved: dict | None) -> dict[str, int]:
    """The I/O counts of a saved loader state (IO_FIELDS; 0 for those it lacks: saved before they existed)."""
    saved = saved if isinstance(saved, dict) else {}
    return {k: int(saved.get(k) or 0) for k in IO_FIELDS}


def _dist(rank, world_size) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def build_train_loader(
    shards: str | Path,
    split: str = "train",
    gen_columns: list[str] | tuple[str, ...] = (),
    p: float = 0.0,
    mix_views: str = "each",
    views_recipe: dict | ViewsRecipe | None = None,
    batch_size: int = 256,
    num_workers: int = 4,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    epoch: int = 0,
    shuffle_buffer: int = 1000,
    gpu_augment: bool = False,
    device=None,
    pin_memory: bool | None = None,
    augment_device: str | None = None,
    gen_min_score: float | None = None,
    gen_weighting: str = "uniform",
    read_ahead: int = 1,
    cache_dir: str | Path | None = None,
    cache_limit: str | int | None = None,
    range_reads: str = "auto",
    range_gap: int | str = RANGE_GAP,
    gen_partial: bool = False,
) -> TrainLoader:
    """The training loader of one rank (see the module docstring; fidelity filtering and weighting in mixing).

    `cache_dir` (and its size `cache_limit`, e.g. "500G") is the machine's shard cache of remote shards.
    `range_reads` (auto, on, off): read generated columns by byte ranges of the variants the views use
    (genaug.data.ranges; auto: columns in an object store when no cache is set, see resolve_range_reads);
    `range_gap` (bytes, or text such as 64K): ranges of one column shard closer than this are one request.
    `gen_partial` (--gen-partial): train on generated columns still being made; each epoch uses the column shards
    committed when it starts (genaug.data.partial), the others' samples their source images only."""
    if augment_device is not None:  # gpu_augment=True defers to any device (CPU too: tests, benchmarks)
        gpu_augment = resolve_augment_device(augment_device, device)
    if pin_memory is None:  # pinned host memory only pays for a copy to a CUDA device
        pin_memory = device is not None and torch.device(device).type == "cuda"
    rank, world_size = _dist(rank, world_size)
    policy = MixPolicy(float(p), mix_views, None if gen_min_score is None else float(gen_min_score), gen_weighting)
    why = None
    if policy.needs_scores:
        why = "--gen-min-score" if gen_min_score is not None else "--gen-weighting score"
    if gen_partial and not gen_columns:
        raise GenaugError("--gen-partial needs a generated column to train on while it is made: pass --gen NAME")
    cols = open_columns(shards, split, list(gen_columns), need_scores=why, partial=bool(gen_partial))
    recipe = views_recipe if isinstance(views_recipe, ViewsRecipe) else parse_views(views_recipe)
    if p > 0 and not gen_columns:
        raise GenaugError(f"--p {p} needs at least one generated column: pass --gen NAME (or --p 0 for plain SSL)")
    nw = max(1, num_workers)
    if len(cols.shards) < world_size * nw:
        raise GenaugError(
            f"split {cols.source} has {len(cols.shards)} shards, fewer than ranks x workers = "
            f"{world_size} x {nw}: lower --workers to {max(1, len(cols.shards) // world_size)} "
            "or ingest with more, smaller shards"
        )
    if batch_size < 1:
        raise GenaugError(f"--batch-size must be >= 1, got {batch_size}")
    steps = cols.total // (world_size * batch_size)
    if steps == 0:
        raise GenaugError(
            f"split {cols.source} has {cols.total} samples, fewer than ranks x batch size = "
            f"{world_size} x {batch_size}: lower --batch-size"
        )
    cache = _cache_for(cols, cache_dir, cache_limit)
    if cache is not None:
        cols = _pin_column_stats(cols)
    resolve_range_reads(range_reads, cols.source, cache is not None)  # checks the mode without a column too
    stream = _TrainStream(
        cols,
        policy,
        recipe,
        batch_size=batch_size,
        num_workers=num_workers,
        seed=seed,
        rank=rank,
        world_size=world_size,
        steps=steps,
        buffer=max(1, shuffle_buffer),
        gpu=gpu_augment,
        read_ahead=max(0, int(read_ahead)),
        cache=cache,
        ranged=[resolve_range_reads(range_reads, g, cache is not None) for g in cols.gens],
        range_gap=parse_size(range_gap, "data.range_gap"),
    )
    stream.epoch = int(epoch)
    stream.partial = bool(gen_partial)
    loader = TrainLoader(stream, device=device, pin_memory=pin_memory)
    loader.epoch = int(epoch)
    return loader


def _pin_column_stats(cols: Columns) -> Columns:
    """`cols` with the stats of every generated shard read now (16 at a time), pinned for the run like the source's.

    With a cache, a worker then needs no request for a shard it holds; a shard rewritten during the run no longer
    matches its pinned sha256 and is handled as a damaged one (never wrong bytes)."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [(g, name) for g in cols.gens for name in cols.shards if isinstance(g, RemotePath)]
    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(lambda gn: read_stats(gn[0], int(gn[1][:6])), todo))
    pinned = {str(g / name): st for (g, name), st in zip(todo, found, strict=True) if st is not None}
    return replace(cols, stats={**cols.stats, **pinned})


def _cache_for(cols: Columns, cache_dir, cache_limit) -> ShardCache | None:
    """The shard cache of a remote split (checked here, once, before workers start); None for local sets."""
    from genaug.shards.cache import parse_size

    limit = parse_size(cache_limit, "--cache-limit (data.cache_limit)")  # a bad size is an error, remote or not
    if not cache_dir or not isinstance(cols.source, RemotePath):
        return None
    return open_cache(cache_dir, limit)


class _EvalStream(IterableDataset):
    """Samples of a split in shard order (shards split by rank, then by worker), one center-crop view each."""

    def __init__(
        self,
        cols: Columns,
        recipe: ViewsRecipe,
        rank: int,
        world_size: int,
        num_workers: int,
        cache: ShardCache | None = None,
    ) -> None:
        self.cols, self.recipe, self.rank, self.world_size, self.num_workers = (
            cols,
            recipe,
            rank,
            world_size,
            num_workers,
        )
        self.read_ahead = 1  # remote shards fetched ahead (genaug.data.prefetch)
        self.cache = cache  # the machine's shard cache (remote shards only), or None

    def __iter__(self):
        info = get_worker_info()
        nw, w = (info.num_workers, info.id) if info is not None else (1, 0)
        mine = list(self.cols.shards[self.rank :: self.world_size])[w::nw]
        counter = {"bad_shards": 0}
        pre = ShardPrefetcher([self.cols.source], mine, self.read_ahead, self.cache)
        try:
            yield from self._samples(mine, counter, pre)
        finally:
            pre.close()

    def _samples(self, mine: list[str], counter: dict, pre: ShardPrefetcher):
        for i, name in enumerate(mine):
            pre.start(i)
            for s in _safe_shard(self.cols, name, counter, pre.fetch):
                try:
                    if s["image"] is None:
                        raise CorruptImage("sample has no image field")
                    x = eval_view(s["image"], self.recipe.eval_size, self.recipe.eval_resize)
                except CorruptImage as e:
                    warnings.warn(f"genaug: skipping corrupt sample {s['key']}: {e}", stacklevel=2)
                    continue
                yield {"image": x, "label": s["label"], "key": s["key"]}


class EvalLoader:
    """Deterministic batches of one normalised center-crop view per sample, with labels and keys."""

    def __init__(self, stream: _EvalStream, batch_size: int, device=None) -> None:
        self.stream, self.batch_size = stream, batch_size
        self.device = torch.device(device) if device is not None else None

    def __iter__(self):
        s = self.stream
        collate = _eval_collate
        if s.num_workers > 0:
            it = DataLoader(s, batch_size=self.batch_size, num_workers=s.num_workers, collate_fn=collate)
        else:
            it = (collate(list(c)) for c in _chunks(iter(s), self.batch_size))
        r = s.recipe
        for b in it:
            x = b["image"].to(self.device) if self.device is not None else b["image"]
            b["image"] = normalize(x, r.mean, r.std)
            yield b


def _chunks(it, n: int):
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def _eval_collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([i["image"] for i in items]),
        "label": torch.tensor([i["label"] for i in items], dtype=torch.long),
        "key": [i["key"] for i in items],
    }


def build_eval_loader(
    shards: str | Path,
    split: str = "val",
    views_recipe: dict | ViewsRecipe | None = None,
    batch_size: int = 256,
    num_workers: int = 2,
    rank: int | None = None,
    world_size: int | None = None,
    device=None,
    cache_dir: str | Path | None = None,
    cache_limit: str | int | None = None,
) -> EvalLoader:
    """Eval/feature-extraction loader: resize + center crop (the recipe's `eval`), labels, fixed order, no mixing.

    `cache_dir`/`cache_limit` (default: $GENAUG_CACHE_DIR/$GENAUG_CACHE_LIMIT, set by the CLIs' --cache-dir) is
    the machine's shard cache of remote shards."""
    import os

    from genaug.shards.cache import ENV_DIR, ENV_LIMIT

    rank, world_size = _dist(rank, world_size)
    cols = open_columns(shards, split, [])
    recipe = views_recipe if isinstance(views_recipe, ViewsRecipe) else parse_views(views_recipe)
    if cache_dir is None:
        cache_dir, cache_limit = os.environ.get(ENV_DIR), os.environ.get(ENV_LIMIT) or None
    cache = _cache_for(cols, cache_dir, cache_limit)
    return EvalLoader(_EvalStream(cols, recipe, rank, world_size, num_workers, cache), batch_size, device=device)
