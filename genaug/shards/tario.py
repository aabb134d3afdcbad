"""genaug's thin layer over webdataset's tar I/O: its TarWriter writes, its tar iterator and key grouping read.

What genaug adds, and why each addition exists:
- reproducible bytes: webdataset's TarWriter with a fixed mtime, empty owner names, mode 0444, and USTAR headers
  (webdataset 1.0 accepts a `format` argument but does not hand it to tarfile, so the writer's tar stream is set
  to USTAR after construction; without it the headers would be PAX and the bytes would change);
- strict sample checks before anything is written: a key is genaug's safe key (no dots), a field is non-empty text
  without '/' or a leading '_', values are bytes or text (webdataset would drop '_' fields silently and crash on
  an empty one);
- corrupt-header and truncation detection: Python's streaming tar reader, which webdataset uses, takes a corrupt
  header or a cut in the middle of a tar for the end of the archive, so a damaged shard would read as a silently
  short one. After webdataset's iterator stops, every byte left in the stream must be zero padding and the stream
  must end with the end-of-archive marker (two zero blocks); anything else is a tarfile.ReadError.
- exact field names: key grouping is webdataset's (`base_plus_ext`: the key is the name up to the first dot of its
  base name), with lower-casing off so a field reads back exactly as it was written.

webdataset's package imports torch, so it is imported on first use here: the spawned ingest workers, which never
read or write a tar, stay free of torch.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from genaug.core.errors import GenaugError
from genaug.shards.layout import check_key

TAR_MTIME = 946684800  # 2000-01-01: a fixed mtime makes tars byte-identical across runs
_CHUNK = 1 << 16
_END = 2 * tarfile.BLOCKSIZE  # a tar ends with two zero blocks (then zero padding)


def _tariterators():
    """webdataset.tariterators (imported on first use: webdataset imports torch)."""
    from webdataset import tariterators

    return tariterators


def split_name(name: str) -> tuple[str | None, str | None]:
    """Split a member name into (key, field) by webdataset's rule (key up to the first dot of the base name)."""
    return _tariterators().base_plus_ext(name)


def _check_field(key: str, field: object) -> str:
    if not isinstance(field, str) or not field or field.startswith("_") or "/" in field:
        raise GenaugError(
            f"field {field!r} of sample {key!r} is invalid: a field is non-empty text without '/' and not starting "
            "with '_'"
        )
    return field


def _as_bytes(key: str, field: str, data: object) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"field {field!r} of {key!r} must be bytes or str, got {type(data).__name__}")
    return bytes(data)


def tar_writer(fileobj: BinaryIO):
    """webdataset's TarWriter on `fileobj`, set up for reproducible bytes (fixed mtime, owner, mode, USTAR)."""
    from webdataset.writer import TarWriter

    writer = TarWriter(fileobj, user="", group="", mode=0o444, mtime=TAR_MTIME, encoder=False, format="USTAR_FORMAT")
    writer.tarstream.format = tarfile.USTAR_FORMAT  # see the module docstring: webdataset does not pass `format` on
    return writer


def write_samples(fileobj: BinaryIO, samples: Iterable[dict]) -> int:
    """Write samples ({"__key__": key, field: bytes or str}) as a reproducible tar, fields sorted; return count."""
    n = 0
    with tar_writer(fileobj) as writer:
        for sample in samples:
            key = check_key(sample["__key__"])
            clean = {"__key__": key}
            for field, data in sample.items():
                if isinstance(field, str) and field.startswith("__"):
                    continue
                clean[_check_field(key, field)] = _as_bytes(key, field, data)
            writer.write(clean)
            n += 1
    return n


class _TailStream:
    """A read-only stream that remembers how many bytes were read and the last two tar blocks of them."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj, self.count, self.tail = fileobj, 0, b""

    def read(self, size: int = -1) -> bytes:
        """Read like the wrapped stream, keeping count and tail."""
        data = self.fileobj.read(size)
        self.count += len(data)
        self.tail = (self.tail + data)[-_END:] if len(data) < _END else data[-_END:]
        return data

    def check_end(self) -> None:
        """Raise tarfile.ReadError unless the rest is zero padding and the tar ends with its end-of-archive marker."""
        while True:
            chunk = self.read(_CHUNK)
            if not chunk:
                break
            if chunk.count(0) != len(chunk):
                raise tarfile.ReadError("corrupt tar header: data follows the point where the tar reader stopped")
        if self.count % tarfile.BLOCKSIZE or self.tail != bytes(_END):
            raise tarfile.ReadError(f"truncated tar: {self.count} bytes, not ending with the end-of-archive marker")


def read_samples(fileobj: BinaryIO, url: str = "<stream>") -> Iterator[dict]:
    """Stream samples out of a tar with webdataset's iterator and key grouping: {'__key__': key, field: bytes}.

    Raises tarfile.ReadError on a truncated tar or a corrupt header (see the module docstring).
    """
    tit = _tariterators()

    def reraise(exn: Exception) -> bool:
        raise exn

    stream = _TailStream(fileobj)
    members = tit.tar_file_expander([{"url": url, "stream": stream}], handler=reraise, eof_value=None)
    for sample in tit.group_by_keys(members, lcase=False, handler=reraise):
        sample.pop("__url__", None)
        yield sample
    stream.check_end()
