"""Shard leases: which process makes which shard, with no coordinator.

Two kinds share one interface: lease files on a shared filesystem (`files`) and lease objects in an S3 store by
conditional PUT (`objects`); `common` holds what both need. `lease_home` picks where a column's leases live and
`try_acquire`, `lease_state` and `clear_stale_leases` dispatch on it, so the runner, the writer thread and `--status`
do not care which kind they hold. The package has no import circle: files and objects import only common.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path

from genaug.generate.leases.common import LEASE_DIR, MAX_LEASE_BYTES, check_lease_timeout
from genaug.generate.leases.files import (
    Lease,
    clear_stale_file_leases,
    file_lease_state,
    is_stale,
    lease_age,
    lease_path,
    read_lease,
    try_acquire_file,
)
from genaug.generate.leases.objects import (
    ObjectLease,
    clear_stale_object_leases,
    object_lease_state,
    try_acquire_object,
)

__all__ = [
    "LEASE_DIR",
    "MAX_LEASE_BYTES",
    "Heartbeat",
    "Lease",
    "ObjectLease",
    "check_lease_timeout",
    "clear_stale_leases",
    "is_stale",
    "lease_age",
    "lease_home",
    "lease_path",
    "lease_state",
    "read_lease",
    "try_acquire",
]


def lease_home(folder: object, lease_dir: str | os.PathLike | None = None, in_store: bool = False):
    """Folder holding a column's `.leases/`: the column folder, or under `lease_dir` (for an object store).

    A column in an object store keeps its leases: under `--lease-dir` when given (a filesystem shared by every
    process); else, with `in_store` and a store that honours conditional PUT (S3), in the store itself next to the
    column (genaug.generate.leases.objects: any number of machines); else in this machine's cache folder
    (processes on this host only), with a warning."""
    from genaug.core.files import cache_home

    remote = "://" in str(folder) and not str(folder).startswith("file://")
    if lease_dir is None and not remote:
        return Path(folder)
    if lease_dir is None and in_store:
        from genaug.generate.leases.objects import supports_conditional_put

        if supports_conditional_put(folder):  # type: ignore[arg-type]
            return folder
        warnings.warn(
            f"genaug: {folder} does not honour conditional PUT, so its shard leases are kept in this machine's "
            "cache folder: processes on other machines would not see them; pass --lease-dir on a shared filesystem",
            stacklevel=2,
        )
    base = Path(lease_dir) if lease_dir is not None else cache_home() / "leases"
    return base / re.sub(r"[^A-Za-z0-9_.-]+", "_", str(folder)).strip("_")


def _in_store(folder: object) -> bool:
    """True when `folder` is a column in an object store whose leases are objects (see lease_home)."""
    from genaug.shards.storage import RemotePath

    return isinstance(folder, RemotePath)


def try_acquire(folder: object, index: int, timeout: float, owner: dict | None = None) -> Lease | ObjectLease | None:
    """Claim shard `index`: a new lease, or a stale one taken over; None when a live process holds it."""
    if _in_store(folder):
        return try_acquire_object(folder, index, timeout, owner)  # type: ignore[arg-type]
    return try_acquire_file(Path(folder), index, timeout, owner)  # type: ignore[arg-type]


def lease_state(home: object, index: int, timeout: float) -> tuple[str, dict]:
    """("none" | "stale" | "live", owner record) of shard `index`'s lease in lease home `home` (a folder or URL)."""
    if _in_store(home):
        return object_lease_state(home, index, timeout)  # type: ignore[arg-type]
    return file_lease_state(Path(home), index, timeout)  # type: ignore[arg-type]


def clear_stale_leases(folder: object, done: set[int], timeout: float) -> list[int]:
    """Delete the stale leases of shards already done (a crash between commit and release leaves one)."""
    if _in_store(folder):
        return clear_stale_object_leases(folder, done, timeout)  # type: ignore[arg-type]
    return clear_stale_file_leases(Path(folder), done, timeout)  # type: ignore[arg-type]


class Heartbeat:
    """Background thread touching every held lease each `interval` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.leases: list[Lease] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genaug-lease-heartbeat", daemon=True)
        self._thread.start()

    def add(self, lease: Lease) -> None:
        """Keep `lease` alive until it is released."""
        with self._lock:
            self.leases.append(lease)

    def release(self, lease: Lease) -> None:
        """Stop beating `lease` and delete it."""
        with self._lock:
            if lease in self.leases:
                self.leases.remove(lease)
        lease.release()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self.leases)
            for lease in held:
                lease.touch()

    def stop(self) -> None:
        """Stop the thread and release every lease still held."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            held, self.leases = self.leases, []
        for lease in held:
            lease.release()
