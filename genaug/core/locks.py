"""Advisory folder locks: one writer per folder (an ingest split, a training run), the holder named on refusal.

`with folder_lock(path, what="training run"): ...` takes an exclusive, non-blocking lock on `path/.genaug.lock`
(fcntl.flock on POSIX, msvcrt.locking on Windows) and writes the holder (host, pid, command, start time) into the
file. A second holder, in this or any process (on a local filesystem or NFS with lock support), gets a one-line
GenaugError naming the holder and the folder. The kernel drops the lock when its process dies (even by SIGKILL), so
a crash never leaves a folder locked. The lock file itself stays (deleting it would let two processes lock two
different files of the same name); it is tiny and genaug's readers, `verify` and `--overwrite` ignore it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.core.jsonio import parse_json

LOCK_NAME = ".genaug.lock"
_MAX_HOLDER_BYTES = 4096

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


def lock_path(folder: str | os.PathLike) -> Path:
    """Path of the lock file of `folder`."""
    return Path(folder) / LOCK_NAME


def read_holder(folder: str | os.PathLike) -> dict:
    """The holder record written into `folder`'s lock file ({} when absent or unreadable)."""
    try:
        fd = os.open(lock_path(folder), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    try:
        raw = os.read(fd, _MAX_HOLDER_BYTES)
    except OSError:
        return {}
    finally:
        os.close(fd)
    try:
        doc = parse_json(raw, "lock holder", max_bytes=_MAX_HOLDER_BYTES)
    except GenaugError:
        return {}
    return doc if isinstance(doc, dict) else {}


def describe_holder(holder: dict) -> str:
    """A short human description of a lock holder: `pid 123 on host node7 (genaug ingest, since 12:03:01)`."""
    if not holder:
        return "another process (holder unknown)"
    host = str(holder.get("host", "?"))[:100]
    pid = holder.get("pid", "?")
    parts = [f"pid {pid} on host {host}"]
    extra = []
    if holder.get("command"):
        extra.append(str(holder["command"])[:80])
    if isinstance(holder.get("since"), (int, float)):
        try:
            extra.append("since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])))
        except (OverflowError, OSError, ValueError):
            pass
    if extra:
        parts.append(f"({', '.join(extra)})")
    return " ".join(parts)


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as e:  # e.g. a filesystem without lock support: say so instead of a traceback
            raise GenaugError(f"cannot lock {e.filename or 'the lock file'} ({e.strerror or e})") from None
        return True
    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "genaug process", create: bool = True) -> Iterator[Path]:
    """Hold an exclusive advisory lock on `folder` for the `with` block; a second holder gets a one-line error."""
    folder = Path(folder)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GenaugError(f"cannot create {folder} ({e.strerror or e}): choose a writable folder") from None
    path = lock_path(folder)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise GenaugError(
            f"cannot open the lock file {path} ({e.strerror or e}): it must be a regular writable file; "
            f"remove whatever is at that path"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted at the lock path
            raise GenaugError(f"the lock file {path} is not a regular file: remove it and rerun")
        if not _try_lock(fd):
            holder = describe_holder(read_holder(folder))
            raise GenaugError(
                f"{folder} is in use by another {what}: {holder} holds {path}; wait for it to finish or stop it "
                "(the lock is released when that process exits), or use another folder"
            )
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.time(),
            "what": what,
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:4]))[:200],
        }
        data = json.dumps(record, sort_keys=True).encode("utf-8") + b"\n"
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        try:
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            _unlock(fd)
    finally:
        os.close(fd)
