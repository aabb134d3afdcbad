"""Atomic file writes (temp + fsync + rename) and JSON reads that name the file on error."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any


def tmp_suffix() -> str:
    """Suffix of this process's temporary files: .tmp-<host>-<pid>."""
    return f".tmp-{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def fsync_dir(folder: Path) -> None:
    """Flush a directory entry (renames) to disk where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write `data` so a reader sees all of it or nothing: a temp file of this process and thread (two writers never
    share one), fsync, rename over `path`, fsync the folder; the temp file is removed when anything fails."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{tmp_suffix()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write JSON (indented, sorted keys) atomically (write_bytes_atomic)."""
    write_bytes_atomic(path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n")


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing or corrupt one is a user error naming the file."""
    from genaug.core.jsonio import read_json_file

    return read_json_file(path)


def cache_home() -> Path:
    """Folder of genaug's local caches: $GENAUG_CACHE or ~/.cache/genaug."""
    return Path(os.environ.get("GENAUG_CACHE", Path.home() / ".cache" / "genaug"))
