"""Bounded read-ahead of remote shards: while one shard is decoded, the next ones are fetched in background threads.

A training worker reads its shards one after another, and an object fetched whole costs a round trip plus its size
over the bandwidth. Without read-ahead the worker sits idle during every fetch. `ShardPrefetcher` fetches the
objects of the next `depth` shards of the worker's pass, with their stats objects (every column of a shard at once,
one thread per column)
while the current one is decoded. Memory is bounded by (depth + 1) shards per column per worker. Local files are
never prefetched (the page cache and the kernel's read-ahead already do it), and the bytes, hence the stream, are
the same whatever the depth. A failed fetch is raised where the shard is read, exactly as without read-ahead.

With range reads (genaug.data.ranges) the generated columns of a shard are one job, `columns(name)`, run ahead
the same way: its index, the members the shard's views take, their checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from genaug.shards.storage import Location, RemotePath
from genaug.shards.writer import read_stats


def fetch_now(folder: Location, name: str) -> tuple[bytes | None, dict | None]:
    """(a remote shard's bytes, or None for a local file read as a stream instead; its stats), read now."""
    stats = read_stats(folder, int(name[:6]))
    return ((folder / name).read_bytes() if isinstance(folder, RemotePath) else None), stats


class ShardPrefetcher:
    """Fetches the remote objects of the shards of `order` (in every folder of `folders`) up to `depth` ahead."""

    def __init__(
        self, folders: Sequence[Location], order: Sequence[str], depth: int, columns: Callable | None = None
    ) -> None:
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
                if key not in self.pending:
                    self.pending[key] = self.pool.submit(fetch_now, folder, name)
            if self.job is not None and ("", name) not in self.pending:
                self.pending[("", name)] = self.pool.submit(self.job, name)

    def fetch(self, folder: Location, name: str) -> tuple[bytes | None, dict | None]:
        """(bytes, stats) of folder/name: from its read-ahead (waiting for it if needed), else read now."""
        fut = self.pending.pop((str(folder), name), None)
        return fut.result() if fut is not None else fetch_now(folder, name)

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
