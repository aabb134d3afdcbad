"""Bounded read-ahead of remote shards: while one shard is decoded, the next ones are fetched in background threads.

A training worker reads its shards one after another, and an object fetched whole costs a round trip plus its size
over the bandwidth. Without read-ahead the worker sits idle during every fetch. `ShardPrefetcher` fetches the
objects of the next `depth` shards of the worker's pass, with their stats objects (every column of a shard at once,
one thread per column)
while the current one is decoded. Memory is bounded by (depth + 1) shards per column per worker. Local files are
never prefetched (the page cache and the kernel's read-ahead already do it), and the bytes, hence the stream, are
the same whatever the depth. A failed fetch is raised where the shard is read, exactly as without read-ahead.

With a shard cache (genaug.shards.cache, `data.cache_dir`) a remote shard and its stats are fetched through it:
the whole tar keyed and checked by the sha256 its stats recorded, so each byte crosses the network once per machine.
The stats are those read when the split was opened (`known`, pinned for the run: a warm epoch sends no request),
else fetched through the cache and revalidated by one HEAD. Every fetch adds its bytes to the worker's counter:
`bytes_fetched` (from the store) or `bytes_from_cache`.

With range reads (genaug.data.ranges) the generated columns of a shard are one job, `columns(name)`, run ahead
the same way: its index, the members the shard's views take, their checks (its bytes are counted where the job's
result is used, genaug.data.stream.zip_shard, never here).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from genaug.core.errors import GenaugError
from genaug.shards.cache import ShardCache
from genaug.shards.layout import stats_name
from genaug.shards.storage import Location, RemotePath
from genaug.shards.writer import read_stats

_COUNT_LOCK = threading.Lock()


def count_bytes(counter: dict | None, n: int, from_cache: bool) -> None:
    """Add `n` bytes to counter["bytes_from_cache"] or counter["bytes_fetched"] (thread-safe)."""
    if counter is None or not n:
        return
    name = "bytes_from_cache" if from_cache else "bytes_fetched"
    with _COUNT_LOCK:
        counter[name] = counter.get(name, 0) + int(n)


def take_counts(counter: dict, names: Sequence[str]) -> dict[str, int]:
    """Remove the counts `names` from `counter` and return them (thread-safe against count_bytes)."""
    with _COUNT_LOCK:
        return {name: counter.pop(name, 0) for name in names}


def _remote_stats(folder: RemotePath, name: str, cache: ShardCache | None, counter: dict | None) -> dict | None:
    """The stats of a remote shard (None when missing or unreadable, as read_stats), through `cache` if any."""
    path = folder / stats_name(int(name[:6]))
    try:
        raw, hit = cache.fetch(path) if cache is not None else (path.read_bytes(), False)
    except (FileNotFoundError, GenaugError):
        return None
    count_bytes(counter, len(raw), hit)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def fetch_now(
    folder: Location,
    name: str,
    cache: ShardCache | None = None,
    counter: dict | None = None,
    stats: dict | None = None,
) -> tuple[bytes | None, dict | None]:
    """(a remote shard's bytes, or None for a local file read as a stream instead; its stats), read now.

    A remote shard comes through `cache` when one is given (local files never do); its bytes are counted. `stats`
    (read when the split was opened) saves fetching them again."""
    if not isinstance(folder, RemotePath):
        return None, read_stats(folder, int(name[:6]))
    if stats is None:
        stats = _remote_stats(folder, name, cache, counter)
    sha = (stats or {}).get("sha256")
    if cache is not None and sha:
        data, hit = cache.fetch(folder / name, str(sha))
    else:
        data, hit = (folder / name).read_bytes(), False
    count_bytes(counter, len(data), hit)
    return data, stats


class ShardPrefetcher:
    """Fetches the remote objects of the shards of `order` (in every folder of `folders`) up to `depth` ahead."""

    def __init__(
        self,
        folders: Sequence[Location],
        order: Sequence[str],
        depth: int,
        cache: ShardCache | None = None,
        counter: dict | None = None,
        known: dict | None = None,
        columns: Callable | None = None,
        skip: Callable[[Location, str], bool] | None = None,
    ) -> None:
        self.skip = skip  # (folder, name) -> True for a shard not to fetch (a column shard the epoch leaves out)
        self.cache, self.counter = cache, counter  # where remote shards come through; where their bytes are counted
        self.known = known or {}  # str(folder / name) -> its stats, read when the split was opened
        self.folders = [f for f in folders if isinstance(f, RemotePath)]
        self.order, self.depth = list(order), max(0, int(depth))
        self.job = columns  # name -> what the generated columns of that shard read (range reads), run ahead too
        self.pending: dict[tuple[str, str], Future] = {}
        workers = len(self.folders) + (columns is not None)
        self.pool = ThreadPoolExecutor(workers) if workers and self.depth > 0 else None

    def start(self, i: int) -> None:
        """Shard order[i] is about to be read: make sure it and the next `depth` shards are being fetched."""
        if self.pool is None:
            return
        for name in self.order[i : i + 1 + self.depth]:
            for folder in self.folders:
                key = (str(folder), name)
                if key not in self.pending and not (self.skip is not None and self.skip(folder, name)):
                    self.pending[key] = self.pool.submit(fetch_now, folder, name, *self._how(folder, name))
            if self.job is not None and ("", name) not in self.pending:
                self.pending[("", name)] = self.pool.submit(self.job, name)

    def fetch(self, folder: Location, name: str) -> tuple[bytes | None, dict | None]:
        """(bytes, stats) of folder/name: from its read-ahead (waiting for it if needed), else read now."""
        fut = self.pending.pop((str(folder), name), None)
        return fut.result() if fut is not None else fetch_now(folder, name, *self._how(folder, name))

    def _how(self, folder: Location, name: str) -> tuple:
        """The cache, counter and known stats a fetch of folder/name is made with."""
        return self.cache, self.counter, self.known.get(str(folder / name))

    def columns(self, name: str):
        """The generated columns of shard `name` as the `columns` job reads them: from its read-ahead, or now."""
        fut = self.pending.pop(("", name), None)
        return fut.result() if fut is not None else self.job(name)

    def close(self) -> None:
        """Drop what was fetched ahead and stop the threads (fetches under way finish in the background)."""
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def shard_bytes(path: Location) -> tuple[bytes | None, dict | None]:
    """(a remote shard's bytes, its stats) through the process's shard cache (--cache-dir of eval and inspect).

    (None, None) means: read it as before (a local file, or no cache set); with a cache, a warm read sends nothing."""
    from genaug.shards.cache import env_cache

    cache = env_cache() if isinstance(path, RemotePath) else None
    return fetch_now(path.parent, path.name, cache) if cache is not None else (None, None)
