"""Training on columns still being generated (`--gen-partial`): which column shards an epoch uses, its coverage.

At each epoch boundary the loader asks `committed_shards` which shards of each generated column are committed: the
column's completion record (genaug.shards.complete) when it has one (all of them), else its progress record
(genaug.shards.progress), else, when that is missing or damaged, the stats of each shard not known yet (with a
warning). Each is one GET per column, except that fallback. The sets only grow: a shard known committed stays in
(a record that lost an entry to a racing writer never takes it away). The epoch then uses exactly these shards; a
sample whose column shard is not among them takes its source image only, as when its generation failed.

`coverage` is the share of the split's samples that have variants in the epoch (in at least one column), weighted
by each shard's sample count. The sets are packed as bitmaps over the manifest's shard order for the checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from genaug.data.elastic import pack, unpack
from genaug.shards.complete import read_record
from genaug.shards.manifest import read_manifest
from genaug.shards.progress import PROGRESS_NAME, read_progress
from genaug.shards.storage import Location
from genaug.shards.writer import read_stats


def committed_shards(
    folder: Location, names: Sequence[str], counts: Sequence[int], known: frozenset[str] = frozenset()
) -> frozenset[str]:
    """The shards of column `folder` committed now (see the module docstring); `known`: those committed before."""
    man = read_manifest(folder)
    if read_record(folder, man) is not None:
        return frozenset(names)
    by_name = dict(zip(names, counts, strict=True))
    got = read_progress(folder, man, by_name)
    if got is not None:
        return frozenset(known) | frozenset(got)
    if not (folder / PROGRESS_NAME).exists():
        warnings.warn(
            f"genaug: {folder} has no progress record {PROGRESS_NAME} (made before records existed): checking its "
            "shards one by one at each epoch",
            stacklevel=2,
        )
    found = set(known)
    for name in names:
        if name in found:
            continue
        st = read_stats(folder, int(name[:6]))
        if st is not None and st.get("sha256") and st.get("count") == by_name[name]:
            found.add(name)
    return frozenset(found)


def coverage(names: Sequence[str], counts: Sequence[int], sets: Sequence[frozenset[str]]) -> float:
    """Share of the samples of shards `names` (sample `counts`) whose shard is in at least one of `sets`."""
    total = sum(int(c) for c in counts)
    covered = sum(int(c) for n, c in zip(names, counts, strict=True) if any(n in s for s in sets))
    return covered / total if total else 0.0


def pack_sets(names: Sequence[str], sets: Sequence[frozenset[str]]) -> list[bytes]:
    """Each column's set as a packed bitmap over the shard order `names` (what a checkpoint holds)."""
    return [pack(np.array([n in s for n in names], dtype=bool)) for s in sets]


def unpack_sets(names: Sequence[str], packed: Sequence[bytes]) -> tuple[frozenset[str], ...]:
    """The sets pack_sets packed."""
    return tuple(frozenset(n for n, b in zip(names, unpack(p, len(names)), strict=True) if b) for p in packed)
