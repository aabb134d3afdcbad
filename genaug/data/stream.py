"""The training data stream: source shards zipped with generated columns, mixed at probability p, cut into views.

Public API (what the trainer codes against):

    loader = build_train_loader(shards, split="train", gen_columns=["sd"], p=0.5, mix_views="each",
                                views_recipe=recipe.get("views"), batch_size=256, num_workers=8, seed=0,
                                rank=None, world_size=None, epoch=0, shuffle_buffer=1000,
                                augment_device="cpu", device=None, pin_memory=None, read_ahead=1)
    loader.steps_per_epoch            # batches per epoch on every rank (fixed: uneven shards never hang DDP)
    loader.set_epoch(e)               # before each epoch (same e as the current one keeps a restored position)
    for batch in loader:              # exactly steps_per_epoch batches (fewer after a mid-epoch restore)
        batch["views"]     # list of float32 [B,3,H,W], normalised, on `device`, global views first then local crops
        batch["label"]     # LongTensor [B], -1 where the split has no label
        batch["key"]       # list[str] of sample keys
        batch["replaced"]  # BoolTensor [B, n_views]: which views came from a generated variant
    loader.state_dict() / loader.load_state_dict(sd)   # epoch, step in epoch, per-worker stream position + RNG
    loader.skipped                    # corrupt samples skipped so far (counted, never fatal)

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
after a restore equal those of the uninterrupted run.

The draws of a whole pass are made in one block when the pass starts, before any of its shards is read, so the
generated columns can be read by byte ranges of the variants the views take (genaug.data.ranges, `range_reads`)
with the same draws, hence the same batches, as whole-shard reads.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genaug.core.errors import GenaugError
from genaug.data.color import apply_color_stage, normalize
from genaug.data.decode import CorruptImage
from genaug.data.mixing import MixPolicy
from genaug.data.prefetch import ShardPrefetcher, fetch_now
from genaug.data.ranges import ColumnsRead, read_columns, resolve_range_reads, variant_fields, variant_scores
from genaug.data.transforms import ViewsRecipe, eval_view, make_views, parse_views
from genaug.shards.layout import IMAGE_FIELDS
from genaug.shards.manifest import open_gen_split, open_split, read_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.scores import require_scores, score_source
from genaug.shards.storage import Location, RemotePath, file_sha256
from genaug.shards.writer import is_shard_done, read_stats

#: per-batch I/O counts a worker reports: bytes read from the store, image bytes the views used, bytes served by a
#: local shard cache (none without one), and column shards read whole because their index failed
IO_COUNTS = ("bytes_fetched", "bytes_used", "bytes_from_cache", "index_fallback")


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

    @property
    def total(self) -> int:
        """Number of samples of the split."""
        return sum(self.counts)


def open_columns(
    shards: str | Path, split: str, gen_columns: list[str] | tuple[str, ...] = (), need_scores: str | None = None
) -> Columns:
    """Check and open a split and its generated columns (same shard list, complete shards) and their scores.

    `need_scores` (the flag that needs them) makes a column without fidelity scores an error naming `genaug score`.
    """
    ss, src, man = open_split(shards, split)
    names = tuple(man.get("shards") or [])
    counts = []
    for name in names:
        st = read_stats(src, int(name[:6]))
        if st is None or not (src / name).exists():
            raise GenaugError(f"source shard {src / name} is not complete: rerun ingest or `genaug verify`")
        counts.append(int(st.get("count", 0)))
    gens, sides = [], []
    for col in gen_columns:
        gdir, gman = open_gen_split(ss, col, split, shards)
        if tuple(gman.get("shards") or []) != names:
            raise MisalignedColumn(f"generated column {gdir} lists other shards than {src}: regenerate it")
        for name in names:
            if not (gdir / name).exists():
                raise GenaugError(f"generated shard {gdir / name} is missing: finish `genaug generate` first")
        gens.append(gdir)
        found = require_scores(ss, col, split, need_scores) if need_scores else score_source(ss, col, split)
        side = found[1] if found and found[0] == "side" else None
        if side is not None:
            if tuple(read_manifest(side).get("shards") or []) != names:
                raise MisalignedColumn(f"score column {side} lists other shards than {src}: rerun `genaug score`")
            for name in names:
                if not is_shard_done(side, int(name[:6]), check_sha=False):
                    raise GenaugError(f"score shard {side / name} is not complete: rerun `genaug score` to finish it")
        sides.append(side)
    if not names:
        raise GenaugError(f"split {src} has no shards")
    return Columns(src, tuple(gens), names, tuple(counts), tuple(sides))


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
        if counter is not None:  # a local shard is read whole too (hashed, then streamed from the page cache)
            got = len(data) if data is not None else int((stats or {}).get("bytes") or 0)
            counter["bytes_fetched"] = counter.get("bytes_fetched", 0) + got
        return data, shard_intact(folder, name, data, stats)
    except FileNotFoundError:
        raise GenaugError(f"shard {folder / name} is missing: run `genaug verify` on its shard set") from None


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
    src_data, ok = _checked(cols.source, name, fetch, counter)
    if not ok:
        raise GenaugError(
            f"source shard {cols.source / name} does not match its recorded checksum: run `genaug verify`"
        )
    gens, gen_data = [], []
    side_of = dict(zip(cols.gens, cols.scores or (None,) * len(cols.gens), strict=True))
    if read_cols is not None:
        got = read_cols(name)
        for w in got.warnings:
            warnings.warn(w, stacklevel=2)
        if counter is not None:
            counter["bytes_fetched"] = counter.get("bytes_fetched", 0) + got.fetched
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
                "used (source images only); regenerate it (`genaug verify` lists the damaged shards)",
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
                "the generated column is misaligned, regenerate it (`genaug verify` shows which)"
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
                    f"{sides[j] / name} has fewer samples than {cols.source / name}: rerun `genaug score`"
                )
            if r is not None and r["__key__"] != src["__key__"]:
                raise MisalignedColumn(
                    f"{sides[j] / name} holds key {r['__key__']} where {cols.source / name} "
                    f"holds {src['__key__']}: the score column is misaligned, rerun `genaug score --overwrite`"
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
        batch_size,
        num_workers,
        seed,
        rank,
        world_size,
        steps,
        buffer,
        gpu,
        read_ahead=1,
        ranged=(),
    ):
        self.cols, self.policy, self.recipe, self.read_ahead = cols, policy, recipe, int(read_ahead)
        self.ranged = tuple(ranged) or (False,) * len(cols.gens)  # per column: read by ranges (genaug.data.ranges)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.rank, self.world_size, self.steps, self.buffer, self.gpu = rank, world_size, steps, buffer, gpu
        self.epoch = 0
        self.start_step = 0
        self.resume: dict = {}

    def _raw(self, mine: list[str], rng: np.random.Generator, counter: dict):
        passes = 0
        count = dict(zip(self.cols.shards, self.cols.counts, strict=True))
        nv = self.recipe.n_views
        while True:
            order = mine if passes == 0 else [mine[i] for i in rng.permutation(len(mine))]
            # the mixing uniforms and transform seeds of every sample of the pass, drawn before any shard is read,
            # so range reads know which variants each shard's views take (genaug.data.ranges); one block per pass
            first = dict(zip(order, np.cumsum([0] + [count[m] for m in order[:-1]]).tolist(), strict=True))
            total = sum(count[m] for m in order)
            draws, seeds = rng.random((total, 2 * nv)), rng.integers(2**63, size=total)
            n, buf = 0, []
            read_cols = None
            if any(self.ranged):

                def read_cols(name, first=first, draws=draws):
                    rows = draws[first[name] : first[name] + count[name]]
                    return read_columns(self.cols, name, rows, self.policy, nv, self.ranged)

            remote = read_cols is not None and any(isinstance(g, RemotePath) for g in self.cols.gens)
            folders = [self.cols.source] if read_cols is not None else [self.cols.source, *self.cols.gens]
            pre = ShardPrefetcher(folders, order, self.read_ahead, read_cols if remote else None)
            try:
                for i, name in enumerate(order):
                    pre.start(i)
                    got = pre.columns if remote else read_cols
                    for r, s in enumerate(_safe_shard(self.cols, name, counter, pre.fetch, got)):
                        if r >= count[name]:
                            counter["bad_shards"] += 1
                            warnings.warn(
                                f"genaug: shard {self.cols.source / name} holds more samples than its stats say: "
                                "skipping the rest of it; run `genaug verify`",
                                stacklevel=2,
                            )
                            break
                        s["u"], s["tseed"] = draws[first[name] + r], int(seeds[first[name] + r])
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
                    f"no readable sample in shards {mine[:3]}... of {self.cols.source}: run `genaug verify`"
                )
            passes += 1

    def worker_batches(self, logical: int):
        """The batches of logical worker `logical` of this rank, for the current epoch from start_step."""
        nw = max(1, self.num_workers)
        order = [
            self.cols.shards[i]
            for i in np.random.default_rng([self.seed, self.epoch, 7]).permutation(len(self.cols.shards))
        ]
        g = self.rank * nw + logical
        mine = order[g :: self.world_size * nw]
        quota = len(range(logical, self.steps, nw)) - len(range(logical, self.start_step, nw))
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch, self.rank, logical])))
        skip = int(self.resume.get("pos", {}).get(logical, 0))
        counter = {"bad_shards": 0}
        nv = self.recipe.n_views
        pos, skipped, batch, fb_seen = 0, 0, [], 0
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
                for name in ("gen_seen", "gen_filtered", *IO_COUNTS):  # counts since the last batch of this worker
                    out["_meta"][name] = counter.pop(name, 0)
                yield out
                batch, skipped = [], 0

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
        yield from self.worker_batches((j + self.start_step) % nw)


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
        self.io = dict.fromkeys(IO_COUNTS, 0)  # this epoch's I/O counts (see IO_COUNTS), summed over workers
        self.last_io = dict(self.io)  # those of the last finished epoch
        self._pos: dict[int, int] = {}
        self._rng: dict[int, dict] = {}

    def __len__(self) -> int:
        return self.steps_per_epoch - self.step

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next; the current epoch keeps a restored mid-epoch position."""
        if epoch != self.epoch:
            self.epoch, self.step, self._pos, self._rng = int(epoch), 0, {}, {}
            self.io = dict.fromkeys(IO_COUNTS, 0)

    def state_dict(self) -> dict:
        """Epoch, step within it, per-worker stream positions and RNG states, settings that must match."""
        s = self.stream
        return {
            "epoch": self.epoch,
            "step": self.step,
            "pos": dict(self._pos),
            "rng": dict(self._rng),
            "skipped": self.skipped,
            "gen_fallback": self.gen_fallback,
            "gen_seen": self.gen_seen,
            "gen_filtered": self.gen_filtered,
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

    def load_state_dict(self, sd: dict) -> None:
        """Restore a state_dict: the next iteration continues the saved epoch at the saved step."""
        s = self.stream
        for k in ("seed", "world_size", "num_workers", "batch_size"):
            if sd.get(k) != getattr(s, k):
                raise GenaugError(
                    f"cannot resume the data stream: {k} was {sd.get(k)} in the checkpoint and is "
                    f"{getattr(s, k)} now; resume with the same {k}"
                )
        self.epoch, self.step, self.skipped = int(sd["epoch"]), int(sd["step"]), int(sd.get("skipped", 0))
        self.gen_fallback = int(sd.get("gen_fallback", 0))
        self.gen_seen, self.gen_filtered = int(sd.get("gen_seen", 0)), int(sd.get("gen_filtered", 0))
        self.io = {**dict.fromkeys(IO_COUNTS, 0), **{k: int(v) for k, v in (sd.get("io") or {}).items()}}
        self._pos = {int(k): int(v) for k, v in sd.get("pos", {}).items()}
        self._rng = {int(k): v for k, v in sd.get("rng", {}).items()}

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
        for name in IO_COUNTS:
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
        s.epoch, s.start_step, s.resume = self.epoch, self.step, {"pos": dict(self._pos), "rng": dict(self._rng)}
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
            self.epoch, self.step, self._pos, self._rng = self.epoch + 1, 0, {}, {}
            self.last_io = dict(self.io)  # the finished epoch's I/O counts
            self.io = dict.fromkeys(IO_COUNTS, 0)


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
    range_reads: str = "auto",
) -> TrainLoader:
    """The training loader of one rank (see the module docstring; fidelity filtering and weighting in mixing).

    `range_reads` (auto, on, off): read generated columns by byte ranges of the variants the views use
    (genaug.data.ranges; auto: columns in an object store, see resolve_range_reads)."""
    if augment_device is not None:  # gpu_augment=True defers to any device (CPU too: tests, benchmarks)
        gpu_augment = resolve_augment_device(augment_device, device)
    if pin_memory is None:  # pinned host memory only pays for a copy to a CUDA device
        pin_memory = device is not None and torch.device(device).type == "cuda"
    rank, world_size = _dist(rank, world_size)
    policy = MixPolicy(float(p), mix_views, None if gen_min_score is None else float(gen_min_score), gen_weighting)
    why = None
    if policy.needs_scores:
        why = "--gen-min-score" if gen_min_score is not None else "--gen-weighting score"
    cols = open_columns(shards, split, list(gen_columns), need_scores=why)
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
    stream = _TrainStream(
        cols,
        policy,
        recipe,
        batch_size,
        num_workers,
        seed,
        rank,
        world_size,
        steps,
        max(1, shuffle_buffer),
        gpu_augment,
        read_ahead=max(0, int(read_ahead)),
        ranged=[resolve_range_reads(range_reads, g) for g in (cols.gens or (cols.source,))][: len(cols.gens)],
    )
    stream.epoch = int(epoch)
    loader = TrainLoader(stream, device=device, pin_memory=pin_memory)
    loader.epoch = int(epoch)
    return loader


class _EvalStream(IterableDataset):
    """Samples of a split in shard order (shards split by rank, then by worker), one center-crop view each."""

    def __init__(self, cols: Columns, recipe: ViewsRecipe, rank: int, world_size: int, num_workers: int) -> None:
        self.cols, self.recipe, self.rank, self.world_size, self.num_workers = (
            cols,
            recipe,
            rank,
            world_size,
            num_workers,
        )
        self.read_ahead = 1  # remote shards fetched ahead (genaug.data.prefetch)

    def __iter__(self):
        info = get_worker_info()
        nw, w = (info.num_workers, info.id) if info is not None else (1, 0)
        mine = list(self.cols.shards[self.rank :: self.world_size])[w::nw]
        counter = {"bad_shards": 0}
        pre = ShardPrefetcher([self.cols.source], mine, self.read_ahead)
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
) -> EvalLoader:
    """Eval/feature-extraction loader: resize + center crop (the recipe's `eval`), labels, fixed order, no mixing."""
    rank, world_size = _dist(rank, world_size)
    cols = open_columns(shards, split, [])
    recipe = views_recipe if isinstance(views_recipe, ViewsRecipe) else parse_views(views_recipe)
    return EvalLoader(_EvalStream(cols, recipe, rank, world_size, num_workers), batch_size, device=device)
