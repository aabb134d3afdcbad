"""Manifests and stats files: small JSON documents written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from genaug.errors import GenaugError

FORMAT = "genaug-shards/1"


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
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise GenaugError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenaugError(f"{path} is not valid JSON ({e}): delete it and rerun the stage that wrote it") from None


def read_manifest(folder: Path) -> dict:
    """Read `folder/manifest.json` and check its format tag."""
    doc = read_json(Path(folder) / "manifest.json")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GenaugError(f"{Path(folder) / 'manifest.json'} is not a genaug manifest (format {FORMAT} expected)")
    return doc


def write_manifest(folder: Path, doc: dict) -> None:
    """Write `folder/manifest.json` atomically, adding the format tag."""
    doc = dict(doc)
    doc["format"] = FORMAT
    write_json_atomic(Path(folder) / "manifest.json", doc)


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys): the identity of a plan or a recipe."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path, bufsize: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
