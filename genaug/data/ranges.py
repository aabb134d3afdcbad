"""Range reads of generated columns: fetch only the variant members that a shard's views use, checked by the index.

The training stream draws the mixing uniforms of every sample of a shard before the shard is read (genaug.data.
stream). With them, `read_columns` decides, for each sample, which variants its views take (MixPolicy.decide on the
same inputs the stream gives it later), then fetches from each generated column's tar only the byte ranges of those
members, plus the small non-image members (json: failed flag, inline fidelity scores), coalesced (ranges closer than
data.range_gap merged, fsspec's merge_offset_ranges) and read in one concurrent `cat_ranges` call per column and round.
Every member is checked against the CRC-32 of its index (genaug.shards.index). The samples it returns hold the
fetched members and None for each variant no view uses, so the stream's draws and views are those of a whole read.

A column shard whose index is missing, does not match its stats, names a range outside the tar, or whose member
bytes do not match their checksum falls back to the whole tar and its sha256, as before indexes existed (counted,
with a warning); a column that fails that check too is left out of the shard, exactly as on the whole-shard path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

from genaug.core.errors import GenaugError
from genaug.core.jsonio import sample_json
from genaug.data.mixing import MixPolicy
from genaug.shards.index import IndexMismatch, index_name, member_crc, members_by_key, read_index
from genaug.shards.layout import column_command, stats_name, verify_command
from genaug.shards.reader import iter_shard_raw
from genaug.shards.scores import raw_fidelity
from genaug.shards.storage import Location, RemotePath, as_location, read_bytes, read_many, read_ranges
from genaug.shards.writer import parse_stats, read_stats

GEN_FIELD = re.compile(r"^gen_(\d+)\.(jpg|jpeg|png|webp)$")
#: default data.range_gap: ranges of one column shard closer than this are fetched as one request (a tar header is
#: 512 bytes, a json member ~1 KiB); a wider gap trades bytes for requests (BENCHMARKS.md, range reads)
RANGE_GAP = 4096
RANGE_MODES = ("auto", "on", "off")


def variant_fields(raw: dict) -> list[str]:
    """The variant fields of a generated sample in variant order (none when its json says generation failed).

    A sample read by ranges may lack its json bytes (None): its index's `failed` list stands for them."""
    if raw.get("__failed__"):
        return []
    meta = sample_json(raw.get("json"))
    if isinstance(meta, dict) and meta.get("failed"):
        return []
    found = ((GEN_FIELD.match(f), f) for f in raw)
    return [f for _, f in sorted((int(m.group(1)), f) for m, f in found if m)]


def variant_scores(raw: dict, fields: list[str], side: dict | None) -> list[float | None]:
    """Fidelity scores of the variants `fields` of a sample (from its score-column sample `side`, or inline)."""
    doc = raw_fidelity(side if side is not None else raw)
    scores = list(doc["scores"]) if doc is not None else []
    return scores if len(scores) == len(fields) else [None] * len(fields)


def resolve_range_reads(mode: str, folder: Location, cached: bool = False) -> bool:
    """Whether the stream reads `folder`'s column shards by ranges: `on`/`off`, or `auto` (see docs/design.md).

    auto: a column in an object store (s3://, gs://) is read by ranges unless a local shard cache is configured
    (`cached`: whole shards then go through the cache, and later epochs read them locally); a local column is read
    whole (measured: scripts/bench_stream.py --remote --ranges, BENCHMARKS.md); an https:// column is read whole
    (a static host may ignore Range requests: `on` when it serves them)."""
    if mode not in RANGE_MODES:
        raise GenaugError(f"data.range_reads must be one of {', '.join(RANGE_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    return isinstance(folder, RemotePath) and folder.writable and not cached


@dataclass
class ColumnsRead:
    """The generated columns of one shard as read for the stream: per column its samples, or None (left out)."""

    rows: list[list[dict] | None]
    sides: list[list[dict] | None]  # per column: its score-column samples when planning needed them, else None
    fetched: int = 0  # bytes read from the store (tars, ranges, indexes)
    fallbacks: int = 0  # column shards whose index failed: read whole instead
    warnings: list[str] = field(default_factory=list)


class _Ranged:
    """A column shard read by ranges: its index table and its samples (non-image members fetched, variants None)."""

    def __init__(self, path: Location, doc: dict, tar_bytes: int, gap: int = RANGE_GAP) -> None:
        self.path, self.gap = path, int(gap)
        self.keys, self.table = members_by_key(doc)
        for key in self.keys:
            for f, (off, size, _) in self.table[key].items():
                if off < 0 or size < 0 or off + size > tar_bytes:
                    raise IndexMismatch(f"{path}: index member {key}.{f} lies outside the {tar_bytes}-byte tar")
        self.rows = [{"__key__": k, **{f: None for f in self.table[k]}} for k in self.keys]

    def fetch(self, wanted: list[tuple[int, str]]) -> int:
        """Fetch members (sample number, field) into the rows, checked by CRC; the bytes read. IndexMismatch."""
        wanted = [(i, f) for i, f in wanted if self.rows[i][f] is None]
        if not wanted:
            return 0
        from fsspec.utils import merge_offset_ranges

        spans = [self.table[self.keys[i]][f] for i, f in wanted]
        n = len(spans)
        _, starts, ends = merge_offset_ranges(
            [""] * n, [s[0] for s in spans], [s[0] + s[1] for s in spans], max_gap=self.gap, sort=True
        )
        blocks = read_ranges(self.path, list(zip(starts, ends, strict=True)))
        got = 0
        for b, a, e in zip(blocks, starts, ends, strict=True):
            if len(b) != e - a:
                raise IndexMismatch(f"{self.path}: range {a}-{e} returned {len(b)} bytes")
            got += len(b)
        for (i, f), (off, size, crc) in zip(wanted, spans, strict=True):
            j = int(np.searchsorted(starts, off, side="right")) - 1
            data = bytes(blocks[j][off - starts[j] : off - starts[j] + size])
            if member_crc(data) != crc:
                raise IndexMismatch(f"{self.path}: member {self.keys[i]}.{f} does not match its index checksum")
            self.rows[i][f] = data
        return got


def _whole(path: Location, stats: dict | None, out: ColumnsRead) -> list[dict] | None:
    """A column shard read whole and checked by sha256 (the path without index); None when it is left out."""
    try:
        data = read_bytes(path)
    except (FileNotFoundError, GenaugError) as e:
        why = f"shard {path} is missing" if isinstance(e, FileNotFoundError) else str(e)
        out.warnings.append(f"genaug: {why}")
        data = None
    if data is not None:
        out.fetched += len(data)
        want = (stats or {}).get("sha256")
        if not want or hashlib.sha256(data).hexdigest() == want:
            return list(iter_shard_raw(path, data))
    out.warnings.append(
        f"genaug: generated shard {path} does not match its recorded checksum: its variants are not "
        f"used (source images only); regenerate it ({verify_command(path)} lists the damaged shards)"
    )
    return None


def stats_and_index(folder: Location, name: str) -> tuple[dict | None, bytes | None]:
    """The stats of column shard `name` and the bytes at its index's usual name, read together: one concurrent
    round trip from a store instead of two in a row (None for either when it is missing or unusable; when either
    cannot be read, the stats are read alone and the index is left to read_index, which reports it)."""
    n = int(name[:6])
    stats_path = as_location(folder) / stats_name(n)
    try:
        raw_stats, raw_index = read_many([stats_path, as_location(folder) / index_name(n)])
    except (GenaugError, OSError):  # one of the two unreadable: the stats alone, the index then fails on its own
        return read_stats(folder, n), None
    return parse_stats(raw_stats, stats_path), raw_index


def _open_ranged(
    folder: Location, name: str, stats: dict, out: ColumnsRead, scores: bool, gap: int, fetched: bytes | None = None
) -> _Ranged:
    """The column shard's index (`fetched` with its stats, or read now), checked against its stats; its json
    members fetched when `scores` needs them.

    Without scores the index's `failed` list says which samples have no variants, so nothing else is fetched."""
    doc, n = read_index(folder, int(name[:6]), stats, fetched)
    out.fetched += n
    if doc.get("tar_sha256") != stats.get("sha256") or doc.get("tar_bytes") != stats.get("bytes"):
        raise IndexMismatch(f"{folder / name}: its index describes another version of the tar")
    col = _Ranged(folder / name, doc, int(stats["bytes"]), gap)
    failed = doc.get("failed")
    if isinstance(failed, list) and not scores:
        gone = set(failed)
        for row in col.rows:
            row["__failed__"] = row["__key__"] in gone
        return col
    small = [(i, f) for i, k in enumerate(col.keys) for f in col.table[k] if not GEN_FIELD.match(f)]
    out.fetched += col.fetch(small)
    return col


def read_columns(
    cols,
    name: str,
    draws: np.ndarray,
    policy: MixPolicy,
    n_views: int,
    ranged: Sequence[bool],
    keep: AbstractSet[int] | None = None,
    gap: int = RANGE_GAP,
) -> ColumnsRead:
    """Read shard `name` of every generated column of `cols`: by ranges where `ranged` and indexed, else whole.

    `draws` holds the mixing uniforms of the shard's samples (one row of 2 x n_views each), in shard order; `keep`
    the rows the stream reads (the rest of an elastically resumed epoch, genaug.data.elastic), None for all: the
    variants of the other rows are not fetched. Ranges of one column shard closer than `gap` bytes are one request."""
    out = ColumnsRead([None] * len(cols.gens), [None] * len(cols.gens))
    state: list = []
    for g, use in zip(cols.gens, ranged, strict=True):
        stats, fetched = stats_and_index(g, name) if use else (read_stats(g, int(name[:6])), None)
        if use and stats is not None and "index" in stats:
            try:
                state.append(_open_ranged(g, name, stats, out, policy.needs_scores, gap, fetched))
                continue
            except IndexMismatch as e:
                out.fallbacks += 1
                out.warnings.append(
                    f"genaug: {e}: reading the whole shard instead ({column_command('index', g)} rebuilds it)"
                )
        state.append(_whole(g / name, stats, out))
    sides = list(cols.scores or (None,) * len(cols.gens))
    while True:
        if policy.needs_scores:
            for c, side in enumerate(sides):
                if side is not None and state[c] is not None and out.sides[c] is None:
                    out.fetched += int((read_stats(side, int(name[:6])) or {}).get("bytes") or 0)
                    out.sides[c] = list(iter_shard_raw(side / name))
        wanted = _plan(state, out.sides, draws, policy, n_views, keep)
        broken = None
        for c, items in wanted.items():
            try:
                out.fetched += state[c].fetch(items)
            except IndexMismatch as e:
                out.fallbacks += 1
                out.warnings.append(
                    f"genaug: {e}: reading the whole shard instead "
                    f"({column_command('index', cols.gens[c])} rebuilds it)"
                )
                broken = c
                break
        if broken is None:
            break
        g = cols.gens[broken]
        state[broken] = _whole(g / name, read_stats(g, int(name[:6])), out)  # then plan again with what is left
    for c, s in enumerate(state):
        out.rows[c] = s.rows if isinstance(s, _Ranged) else s
    return out


def _plan(
    state: list, sides: list, draws: np.ndarray, policy: MixPolicy, n_views: int, keep: AbstractSet[int] | None = None
) -> dict[int, list]:
    """Column -> [(sample number, variant field)] that the views of the shard's samples take (ranged columns only)."""
    live = [c for c, s in enumerate(state) if s is not None]
    rows = {c: (state[c].rows if isinstance(state[c], _Ranged) else state[c]) for c in live}
    wanted: dict[int, list] = {c: [] for c in live if isinstance(state[c], _Ranged)}
    n = min(len(draws), min((len(r) for r in rows.values()), default=0))
    for i in range(n):
        if keep is not None and i not in keep:
            continue
        where, scores = [], []
        for c in live:
            raw = rows[c][i]
            side = sides[c][i] if sides[c] is not None and i < len(sides[c]) else None
            fields = variant_fields(raw)
            where += [(c, f) for f in fields]
            scores += variant_scores(raw, fields, side)
        for src in set(policy.decide(draws[i], n_views, len(where), scores)):
            if src > 0 and where[src - 1][0] in wanted:
                wanted[where[src - 1][0]].append((i, where[src - 1][1]))
    return wanted
