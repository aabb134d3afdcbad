"""Lease files: coordinator-free claiming of shards by any number of processes on a shared filesystem.

(A column in an object store can instead keep its leases as objects, by conditional PUT: see
genaug.generate.object_leases; `try_acquire` and `clear_stale_leases` dispatch on the lease home's type.)

A lease is `<folder>/.leases/NNNNNN.lease`, created with O_CREAT|O_EXCL (exactly one creator wins), holding its
owner (host, pid, random token). The owner's heartbeat thread touches its mtime; a lease whose mtime is older than
the timeout (or whose owner is a dead process on this host) is stale and taken over by renaming it away (exactly
one renamer wins) and creating a fresh one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import stat
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.core.jsonio import parse_json

LEASE_DIR = ".leases"
#: a lease holds a small JSON record; anything bigger is malformed
MAX_LEASE_BYTES = 64 * 1024
MAX_PID = 2**31


def lease_home(folder: object, lease_dir: str | os.PathLike | None = None, in_store: bool = False):
    """Folder holding a column's `.leases/`: the column folder, or under `lease_dir` (for an object store).

    A column in an object store keeps its leases: under `--lease-dir` when given (a filesystem shared by every
    process); else, with `in_store` and a store that honours conditional PUT (S3), in the store itself next to the
    column (genaug.generate.object_leases: any number of machines); else in this machine's cache folder
    (processes on this host only), with a warning."""
    from genaug.core.files import cache_home

    remote = "://" in str(folder) and not str(folder).startswith("file://")
    if lease_dir is None and not remote:
        return Path(folder)
    if lease_dir is None and in_store:
        from genaug.generate.object_leases import supports_conditional_put

        if supports_conditional_put(folder):  # type: ignore[arg-type]
            return folder
        warnings.warn(
            f"genaug: {folder} does not honour conditional PUT, so its shard leases are kept in this machine's "
            "cache folder: processes on other machines would not see them; pass --lease-dir on a shared filesystem",
            stacklevel=2,
        )
    base = Path(lease_dir) if lease_dir is not None else cache_home() / "leases"
    return base / re.sub(r"[^A-Za-z0-9_.-]+", "_", str(folder)).strip("_")


def lease_path(folder: Path, index: int) -> Path:
    """Path of the lease of shard `index` in a column folder."""
    return Path(folder) / LEASE_DIR / f"{index:06d}.lease"


def _host() -> str:
    return socket.gethostname()


def check_lease_timeout(timeout: object, flag: str = "--lease-timeout") -> float:
    """Return `timeout` as float if it is a finite positive number of seconds, else raise a one-line GenaugError."""
    try:
        value = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        value = float("nan")
    if isinstance(timeout, bool) or not math.isfinite(value) or value <= 0:
        raise GenaugError(
            f"{flag} must be a positive number of seconds (e.g. 300), got {timeout!r}: it is how long a shard's "
            "lease may go without a heartbeat before another process takes the shard over"
        )
    return value


def _valid_pid(pid: object) -> bool:
    # bool is an int; 0 and negatives address process groups in kill(); above 2**31 os.kill overflows
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < MAX_PID


def _pid_alive(pid: int) -> bool:
    if not _valid_pid(pid):
        return True  # not a pid we can check: only the timeout decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def read_lease(path: Path) -> dict | None:
    """Owner record of a lease ({} while being written or when unreadable/malformed), or None when there is none."""
    try:
        # O_NONBLOCK: a FIFO at the path must not hang; O_NOFOLLOW: a symlink is malformed, not followed
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # a directory, a symlink, no permission: a malformed lease, stale once old enough
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        raw = os.read(fd, MAX_LEASE_BYTES + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(raw) > MAX_LEASE_BYTES:
        return {}
    try:
        doc = parse_json(raw, path, max_bytes=MAX_LEASE_BYTES)
    except GenaugError:  # non-UTF-8, malformed, or absurd numbers/nesting
        return {}
    return doc if isinstance(doc, dict) else {}


def suspect_age(age: float) -> float:
    """A lease's age for the staleness test: a heartbeat time in the future counts by its distance from now.

    Clamping it to 0 would keep a lease planted (or written under a clock far ahead) alive forever; taken as its
    distance, a small skew between hosts still reads as fresh, and one beyond the timeout is stale."""
    return abs(age) if math.isfinite(age) else math.inf


def lease_age(path: Path) -> float | None:
    """Seconds since the lease's last heartbeat (its distance from now when in the future), None without a lease."""
    try:
        return suspect_age(time.time() - os.lstat(path).st_mtime)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def is_stale(path: Path, timeout: float) -> bool:
    """True when the lease exists and its heartbeat is older than `timeout` or its owner died on this host."""
    age = lease_age(path)
    if age is None:
        return False
    if age > timeout:
        future = _mtime(path) > time.time()
        if future:
            warnings.warn(
                f"genaug: lease {path} has a heartbeat time {age:.0f} s in the future (a clock far ahead, or a "
                "planted file): it is taken as stale and taken over",
                stacklevel=2,
            )
        return True
    doc = read_lease(path) or {}
    return doc.get("host") == _host() and _valid_pid(doc.get("pid")) and not _pid_alive(doc["pid"])


def _discard(path: Path) -> None:
    """Delete a renamed-away lease: a file, or a directory planted at the lease path (inside .leases/ only)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError, OSError):
        if path.is_dir() and not path.is_symlink() and path.parent.name == LEASE_DIR:
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class Lease:
    """A held lease: its path and owner token; `lost` turns True if another process took it over."""

    path: Path
    token: str
    lost: bool = False

    def owned(self) -> bool:
        """True while the lease file still carries this owner's token."""
        doc = read_lease(self.path)
        return bool(doc) and doc.get("token") == self.token

    def touch(self) -> None:
        """Heartbeat: refresh the mtime, or mark the lease lost when it is no longer ours."""
        if self.lost:
            return
        if not self.owned():
            self.lost = True
            return
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.lost = True

    def release(self) -> None:
        """Delete the lease if it is still ours."""
        if not self.lost and self.owned():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.lost = True


def _create(path: Path, owner: dict) -> Lease | None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:  # a live, stale or malformed lease (even a directory or symlink): the caller decides
        return None
    except OSError as e:
        raise GenaugError(
            f"cannot create the lease {path} ({e.strerror or e}): check the folder's permissions"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(owner, f)
        f.flush()
        os.fsync(f.fileno())
    return Lease(path, owner["token"])


def try_acquire(folder: Path, index: int, timeout: float, owner: dict | None = None) -> Lease | None:
    """Claim shard `index`: a new lease, or a stale one taken over; None when a live process holds it."""
    if _in_store(folder):
        from genaug.generate.object_leases import try_acquire_object

        return try_acquire_object(folder, index, timeout, owner)  # type: ignore[return-value,arg-type]
    timeout = check_lease_timeout(timeout)
    path = lease_path(folder, index)
    _lease_dir(path.parent)
    token = f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    doc = {"host": _host(), "pid": os.getpid(), "token": token, "since": time.time(), **(owner or {})}
    for _ in range(3):
        lease = _create(path, doc)
        if lease is not None:
            return lease
        seen = read_lease(path)
        if seen is None:  # released between our create and our read: try again
            continue
        if not is_stale(path, timeout):
            return None
        grave = path.with_name(f"{path.name}.stale-{token}")
        try:
            os.rename(path, grave)  # exactly one of several stealers gets it
        except FileNotFoundError:
            continue
        took = read_lease(grave)
        if seen and took and took.get("token") != seen.get("token"):
            # A live owner replaced the stale lease between our check and our rename: give it back.
            try:
                os.link(grave, path)
            except OSError:  # FileExistsError, or no hard links on this filesystem
                pass
            _discard(grave)
            return None
        _discard(grave)
    return None


def lease_state(home: object, index: int, timeout: float) -> tuple[str, dict]:
    """("none" | "stale" | "live", owner record) of shard `index`'s lease in lease home `home` (a folder or URL)."""
    if _in_store(home):
        from genaug.generate.object_leases import object_lease_state

        return object_lease_state(home, index, timeout)  # type: ignore[arg-type]
    path = lease_path(home, index)  # type: ignore[arg-type]
    if lease_age(path) is None:
        return "none", {}
    return ("stale" if is_stale(path, timeout) else "live"), read_lease(path) or {}


def _in_store(folder: object) -> bool:
    """True when `folder` is a column in an object store whose leases are objects (see lease_home)."""
    from genaug.shards.storage import RemotePath

    return isinstance(folder, RemotePath)


def _lease_dir(d: Path) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise GenaugError(f"{d} exists but is not a folder: remove it (genaug keeps shard leases there)") from None
    except OSError as e:
        raise GenaugError(f"cannot create the lease folder {d} ({e.strerror or e}): check permissions") from None


def clear_stale_leases(folder: Path, done: set[int], timeout: float) -> list[int]:
    """Delete the stale leases of shards already done (a crash between commit and release leaves one)."""
    if _in_store(folder):
        from genaug.generate.object_leases import clear_stale_object_leases

        return clear_stale_object_leases(folder, done, timeout)  # type: ignore[arg-type]
    timeout = check_lease_timeout(timeout)
    cleared = []
    d = Path(folder) / LEASE_DIR
    for path in sorted(d.glob("*.lease")) if d.is_dir() else []:
        index = int(path.stem) if len(path.stem) == 6 and path.stem.isascii() and path.stem.isdigit() else -1
        if index in done and is_stale(path, timeout):
            grave = path.with_name(f"{path.name}.stale-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, grave)
            except OSError:
                continue
            _discard(grave)
            cleared.append(index)
    return cleared


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
