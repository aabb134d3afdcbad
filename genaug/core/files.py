"""Atomic file writes (temp + fsync + rename) and JSON reads that name the file on error."""

from __future__ import annotations

import json
import os
import socket
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


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write JSON to a temp file, fsync it, rename it over `path`, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(path.name + tmp_suffix())
    data = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing or corrupt one is a user error naming the file."""
    from genaug.core.jsonio import read_json_file

    return read_json_file(path)


def cache_home() -> Path:
    """Folder of genaug's local caches: $GENAUG_CACHE or ~/.cache/genaug."""
    return Path(os.environ.get("GENAUG_CACHE", Path.home() / ".cache" / "genaug"))
