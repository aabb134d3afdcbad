"""Lease files: coordinator-free claiming of shards by any number of processes on a shared filesystem.

A lease is `<folder>/.leases/NNNNNN.lease`, created with O_CREAT|O_EXCL (exactly one creator wins), holding its
owner (host, pid, random token). The owner's heartbeat thread touches its mtime; a lease whose mtime is older than
the timeout (or whose owner is a dead process on this host) is stale and taken over by renaming it away (exactly
one renamer wins) and creating a fresh one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.core.jsonio import parse_json
from genaug.generate.leases.common import LEASE_DIR, MAX_LEASE_BYTES, check_lease_timeout, dead_here, host, suspect_age


def lease_path(folder: Path, index: int) -> Path:
    """Path of the lease of shard `index` in a column folder."""
    return Path(folder) / LEASE_DIR / f"{index:06d}.lease"


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
    return dead_here(read_lease(path) or {})


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


def try_acquire_file(folder: Path, index: int, timeout: float, owner: dict | None = None) -> Lease | None:
    """Claim shard `index`: a new lease file, or a stale one taken over; None when a live process holds it."""
    timeout = check_lease_timeout(timeout)
    path = lease_path(folder, index)
    _lease_dir(path.parent)
    token = f"{host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    doc = {"host": host(), "pid": os.getpid(), "token": token, "since": time.time(), **(owner or {})}
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


def _lease_dir(d: Path) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise GenaugError(f"{d} exists but is not a folder: remove it (genaug keeps shard leases there)") from None
    except OSError as e:
        raise GenaugError(f"cannot create the lease folder {d} ({e.strerror or e}): check permissions") from None


def clear_stale_file_leases(folder: Path, done: set[int], timeout: float) -> list[int]:
    """Delete the stale lease files of shards already done (a crash between commit and release leaves one)."""
    timeout = check_lease_timeout(timeout)
    cleared = []
    d = Path(folder) / LEASE_DIR
    for path in sorted(d.glob("*.lease")) if d.is_dir() else []:
        index = int(path.stem) if len(path.stem) == 6 and path.stem.isascii() and path.stem.isdigit() else -1
        if index in done and is_stale(path, timeout):
            grave = path.with_name(f"{path.name}.stale-{host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, grave)
            except OSError:
                continue
            _discard(grave)
            cleared.append(index)
    return cleared


def file_lease_state(home: Path, index: int, timeout: float) -> tuple[str, dict]:
    """("none" | "stale" | "live", owner record) of shard `index`'s lease file under `home`."""
    path = lease_path(home, index)
    if lease_age(path) is None:
        return "none", {}
    return ("stale" if is_stale(path, timeout) else "live"), read_lease(path) or {}
