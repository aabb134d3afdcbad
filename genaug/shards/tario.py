"""Reproducible tar writing and streaming tar reading of WebDataset samples (key.field members)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from genaug.shards.layout import check_key

TAR_MTIME = 946684800  # 2000-01-01: a fixed mtime makes tars byte-identical across runs


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_samples(fileobj: BinaryIO, samples: Iterable[dict]) -> int:
    """Write samples ({'__key__': key, field: bytes}) as a reproducible tar; fields in sorted order; return count."""
    n = 0
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = check_key(sample["__key__"])
            for field in sorted(f for f in sample if not f.startswith("__")):
                data = sample[field]
                if isinstance(data, str):
                    data = data.encode("utf-8")
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"field {field!r} of {key!r} must be bytes or str, got {type(data).__name__}")
                data = bytes(data)
                tar.addfile(_member(f"{key}.{field}", len(data)), io.BytesIO(data))
            n += 1
    return n


def split_name(name: str) -> tuple[str, str]:
    """Split a member name into (key, field) at the first dot of its base name, as WebDataset does."""
    slash = name.rfind("/")
    base = name[slash + 1 :]
    dot = base.find(".")
    if dot < 0:
        return name, ""
    return name[: slash + 1] + base[:dot], base[dot + 1 :]


def _size_of(fileobj: BinaryIO) -> int | None:
    try:
        pos = fileobj.tell()
        end = fileobj.seek(0, 2)
        fileobj.seek(pos)
        return end - pos
    except (OSError, AttributeError, ValueError):
        return None


def read_samples(fileobj: BinaryIO) -> Iterator[dict]:
    """Stream samples out of a tar: consecutive members with the same key form one sample of raw bytes.

    Python's streaming tar reader takes a corrupt header in the middle for the end of the archive; when the
    size of the input is known, stopping well before its end raises tarfile.ReadError instead.
    """
    current: dict | None = None
    size = _size_of(fileobj)
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, field = split_name(info.name)
            if not field:
                continue
            f = tar.extractfile(info)
            data = f.read() if f is not None else b""
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            current[field] = data
        if size is not None and size - tar.offset > tarfile.RECORDSIZE + 2 * tarfile.BLOCKSIZE:
            raise tarfile.ReadError(f"corrupt tar header at offset {tar.offset} of {size} bytes")
    if current is not None:
        yield current
