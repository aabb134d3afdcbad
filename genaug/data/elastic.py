"""Elastic resume of the training stream: which samples an epoch has consumed, and who reads the rest of it.

A sample's id is its place in the split: the offset of its shard (manifest order, counts from the stats or the
completion record) plus its row in that shard. The loader of each rank keeps, for the current epoch, a bitmap of
the ids its delivered batches consumed (corrupt samples skipped on the way count as consumed), and checkpoints it
packed (np.packbits, then zlib: a mid-epoch bitmap is long runs of whole shards, so it packs to a few KB).

Resuming with another world size or worker count (N x W -> N' x W'): the union of the N ranks' bitmaps is what the
interrupted epoch has consumed. The M ids left are dealt out again, deterministically, so every rank computes the
same plan from the checkpoint alone:

- the shards holding left ids are put in a random order drawn from (seed, epoch, ids consumed), and their left ids
  laid end to end (rows of one shard stay together, so a worker reads few shards, each at most once);
- the rest of the epoch is S = M // (N' x B) steps on every rank; rank r' takes the S x B ids from r' x S x B on;
- within a rank, worker w' (which the DataLoader asks for batches w', w' + W', ...) takes the next
  len(range(w', S, W')) x B ids: exactly the samples of its batches, so no worker runs short or reads another's.

A worker then reads its shards as usual (only the rows of its span), shuffles them in its buffer, and draws the
mixing uniforms and transform seeds from an RNG seeded with (seed, epoch, rank, worker, 1, ids consumed). Limits:
the M mod (N' x B) ids that do not fill a last step are left out of the epoch (as a fresh epoch leaves out
T mod (N x B)); the order within the rest of the epoch is not the one the old world size would have produced
(no order could be: the RNG streams are per rank and worker); a corrupt sample is skipped as usual, and the worker
fills its batch by re-reading its span. The next epoch is a fresh one with N' x W'.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genaug.core.errors import GenaugError


def pack(seen: np.ndarray) -> bytes:
    """A boolean bitmap as compact bytes (packbits + zlib)."""
    return zlib.compress(np.packbits(seen.astype(bool)).tobytes(), 6)


def unpack(data: bytes, total: int) -> np.ndarray:
    """The boolean bitmap of `total` ids that pack() wrote."""
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), dtype=np.uint8))
    if bits.size < total or bits[total:].any():
        raise GenaugError(f"the data stream state holds a bitmap of {bits.size} samples, not {total}: the data changed")
    return bits[:total].astype(bool)


def offsets(counts: Sequence[int]) -> np.ndarray:
    """The id of each shard's first sample (shards in manifest order)."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])[:-1]


def union(states: Sequence[dict], total: int) -> np.ndarray:
    """The ids consumed by any of `states` (the loader states of every rank of a checkpoint)."""
    seen = np.zeros(total, dtype=bool)
    for st in states:
        if st.get("seen") is None:
            raise GenaugError(
                "the checkpoint's data state does not record the samples it consumed (written before elastic "
                "resume existed): resume with the same number of processes and --workers"
            )
        seen |= unpack(st["seen"], total)
    return seen


@dataclass(frozen=True)
class RestPlan:
    """Who reads what in the rest of an interrupted epoch (see the module docstring)."""

    steps: int  # S: steps left on every rank
    consumed: int  # ids consumed before the plan: part of the workers' RNG seed
    order: np.ndarray  # the left ids laid end to end (shard-grouped)

    def spans(
        self, rank: int, num_workers: int, batch_size: int, names: Sequence[str], counts: Sequence[int]
    ) -> dict[int, list[tuple[str, np.ndarray]]]:
        """{logical worker: [(shard name, its rows to read), ...]} of `rank`: the samples of that worker's batches."""
        starts = offsets(counts)
        cut = rank * self.steps * batch_size
        out = {}
        for w in range(max(1, num_workers)):
            n = len(range(w, self.steps, max(1, num_workers))) * batch_size
            ids = self.order[cut : cut + n]
            cut += n
            shard = np.searchsorted(starts, ids, side="right") - 1
            groups, edges = [], np.flatnonzero(np.diff(shard)) + 1
            for part in np.split(np.arange(ids.size), edges):
                if part.size:
                    s = int(shard[part[0]])
                    groups.append((names[s], (ids[part] - starts[s]).astype(np.int64)))
            out[w] = groups
        return out


def plan_rest(
    seen: np.ndarray, counts: Sequence[int], seed: int, epoch: int, world_size: int, batch_size: int
) -> RestPlan:
    """The plan of the rest of an epoch of which `seen` is consumed, on `world_size` ranks of `batch_size`."""
    starts = offsets(counts)
    left = np.flatnonzero(~seen)
    consumed = int(seen.sum())
    shard = np.searchsorted(starts, left, side="right") - 1
    present = np.unique(shard)
    rank_of = np.empty(len(counts), dtype=np.int64)
    rank_of[present] = np.random.default_rng([seed, epoch, 11, consumed]).permutation(present.size)
    order = left[np.lexsort((left, rank_of[shard]))] if left.size else left
    return RestPlan(left.size // (world_size * batch_size), consumed, order)
