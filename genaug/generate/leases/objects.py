"""Shard leases kept in the object store itself, by conditional PUT (S3's If-None-Match / If-Match).

A lease is the object `<column>/.leases/NNNNNN.lease` holding its owner (host, pid, token). Claiming is a PUT with
`If-None-Match: *`: exactly one of several processes, on any machine, creates it. The heartbeat re-PUTs it with
`If-Match: <its ETag>`, which moves its Last-Modified; a failed condition means another process took it over.
A lease whose Last-Modified is older than the timeout (both read from the store's clock: the HEAD response's Date
header and the object's Last-Modified, so machines' clocks never matter) is stale, and is taken over by a PUT with
`If-Match: <the stale ETag>`: exactly one stealer wins. Release is a DELETE with `If-Match`.

Not every S3-compatible store honours these conditions. `supports_conditional_put` probes the store once per
column (a second create of the same probe object must fail); the runner falls back to filesystem leases
(`--lease-dir`, or this machine's cache folder) when it does not.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from genaug.core.errors import GenaugError
from genaug.core.jsonio import parse_json
from genaug.generate.leases.common import LEASE_DIR, MAX_LEASE_BYTES, check_lease_timeout, dead_here, host, suspect_age
from genaug.shards.storage import PRECONDITION_CODES, RemotePath, causes, s3_error_code, store_error

_PROBED: dict[str, bool] = {}


def _precondition_failed(e: BaseException) -> bool:
    """True when `e` (or what caused it) is the store refusing a conditional request."""
    if s3_error_code(e) in PRECONDITION_CODES:
        return True
    return any("pre-condition" in str(c).lower() or "precondition" in str(c).lower() for c in causes(e))


def _not_found(e: BaseException) -> bool:
    return isinstance(e, FileNotFoundError) or "NoSuchKey" in repr(e) or "Not Found" in str(e)


def _call(folder: RemotePath, op: str, **kw):
    """One S3 API call through the folder's s3fs filesystem (credentials and endpoint as for the shards)."""
    fs = folder.fs
    if not hasattr(fs, "call_s3"):
        raise GenaugError(f"{folder}: leases by conditional PUT need an s3:// store; pass --lease-dir")
    return fs.call_s3(op, **kw)


def _bucket_key(path: RemotePath) -> tuple[str, str]:
    bucket, _, key = path.key.partition("/")
    return bucket, key


def object_lease_path(folder: RemotePath, index: int) -> RemotePath:
    """The lease object of shard `index` of a column in an object store."""
    return folder / LEASE_DIR / f"{index:06d}.lease"


def supports_conditional_put(folder: RemotePath) -> bool:
    """True when the store refuses a second `If-None-Match: *` PUT of one object (probed once per folder)."""
    if str(folder) in _PROBED:
        return _PROBED[str(folder)]
    ok = False
    if folder.scheme == "s3":
        probe = folder / LEASE_DIR / f".probe-{uuid.uuid4().hex}"
        bucket, key = _bucket_key(probe)
        try:
            _call(folder, "put_object", Bucket=bucket, Key=key, Body=b"probe", IfNoneMatch="*")
            try:
                _call(folder, "put_object", Bucket=bucket, Key=key, Body=b"probe", IfNoneMatch="*")
            except Exception as e:  # noqa: BLE001 - any refusal of the condition means support
                ok = _precondition_failed(e)
            try:
                _call(folder, "delete_object", Bucket=bucket, Key=key)
            except Exception:  # noqa: BLE001 - a probe object left behind is harmless
                pass
        except GenaugError:
            raise
        except Exception as e:  # noqa: BLE001 - a store error (no bucket, denied) is a user error naming the URL
            if type(e).__name__ != "ParamValidationError" and "Unknown parameter" not in str(e):
                raise store_error(str(folder), e) from None
            # a botocore older than 1.35 cannot send If-None-Match: no conditional leases (ok stays False)
    _PROBED[str(folder)] = ok
    return ok


def _head(path: RemotePath) -> tuple[str, float] | None:
    """(ETag, age in seconds by the store's clock) of a lease object, or None when there is none."""
    bucket, key = _bucket_key(path)
    try:
        h = _call(path, "head_object", Bucket=bucket, Key=key)
    except Exception as e:  # noqa: BLE001
        if _not_found(e):
            return None
        raise store_error(str(path), e) from None
    date = (h.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}).get("date")
    now = parsedate_to_datetime(date).timestamp() if date else time.time()
    return h["ETag"], suspect_age(now - h["LastModified"].timestamp())


def _read_fresh(path: RemotePath) -> bytes:
    """The lease object's bytes by one GET, never answered from the filesystem's listing cache.

    s3fs sizes an object through its cached listing of the folder first: a lease created after `.leases/` was
    listed (a peer's, minutes ago) would read as missing without any request, and never be taken over."""
    path.fs.invalidate_cache(path.parent.key)
    path.fs.invalidate_cache(path.key)
    return path.read_bytes()


def _get(path: RemotePath) -> tuple[str, dict] | None:
    """(ETag, owner record; {} when malformed) of a lease object, or None when there is none.

    The record is read after the HEAD: if it changed in between, a PUT conditioned on this ETag fails, so a
    decision made on a newer record is never acted on."""
    head = _head(path)
    if head is None:
        return None
    try:
        raw = _read_fresh(path)
    except Exception as e:  # noqa: BLE001
        if _not_found(e):
            return None
        raise store_error(str(path), e) from None
    try:
        doc = parse_json(raw, path, max_bytes=MAX_LEASE_BYTES)
    except GenaugError:
        doc = {}
    return head[0], doc if isinstance(doc, dict) else {}


def _put(path: RemotePath, doc: dict, **cond) -> str | None:
    """PUT the lease record under a condition; its new ETag, or None when the condition failed."""
    bucket, key = _bucket_key(path)
    try:
        r = _call(path, "put_object", Bucket=bucket, Key=key, Body=json.dumps(doc).encode("utf-8"), **cond)
    except Exception as e:  # noqa: BLE001
        if _precondition_failed(e) or (cond.get("IfMatch") and _not_found(e)):
            return None
        raise store_error(str(path), e) from None
    return r["ETag"]


@dataclass
class ObjectLease:
    """A held lease object: its URL, owner record and current ETag; `lost` turns True once another process has it."""

    path: RemotePath
    doc: dict
    etag: str
    lost: bool = False

    @property
    def token(self) -> str:
        """This owner's token."""
        return str(self.doc["token"])

    def owned(self) -> bool:
        """True while the lease object is still the one this owner last wrote."""
        got = _head(self.path)
        return got is not None and got[0] == self.etag

    def touch(self) -> None:
        """Heartbeat: re-PUT the record if its ETag is still ours (moves Last-Modified), else mark the lease lost."""
        if self.lost:
            return
        doc = {**self.doc, "beat": time.time()}
        etag = _put(self.path, doc, IfMatch=self.etag)
        if etag is None:
            self.lost = True
        else:
            self.doc, self.etag = doc, etag

    def release(self) -> None:
        """Delete the lease object if it is still ours (DELETE with If-Match)."""
        if not self.lost:
            bucket, key = _bucket_key(self.path)
            try:
                _call(self.path, "delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
            except Exception as e:  # noqa: BLE001
                if not (_precondition_failed(e) or _not_found(e)):
                    raise store_error(str(self.path), e) from None
        self.lost = True


def try_acquire_object(folder: RemotePath, index: int, timeout: float, owner: dict | None = None) -> ObjectLease | None:
    """Claim shard `index` by conditional PUT: a new lease, or a stale one taken over; None when a live one holds it."""
    timeout = check_lease_timeout(timeout)
    path = object_lease_path(folder, index)
    token = f"{host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    doc = {"host": host(), "pid": os.getpid(), "token": token, "since": time.time(), **(owner or {})}
    for _ in range(3):
        etag = _put(path, doc, IfNoneMatch="*")
        if etag is not None:
            return ObjectLease(path, doc, etag)
        head = _head(path)
        if head is None:  # released between our PUT and our HEAD: try again
            continue
        seen_etag, age = head
        if age <= timeout:
            got = _get(path)
            if got is None:
                continue
            seen_etag, seen = got
            if not dead_here(seen):
                return None
        etag = _put(path, doc, IfMatch=seen_etag)  # exactly one of several stealers matches the stale ETag
        if etag is not None:
            return ObjectLease(path, doc, etag)
        return None
    return None


def clear_stale_object_leases(folder: RemotePath, done: set[int], timeout: float) -> list[int]:
    """Delete the stale lease objects of shards already done (a crash between commit and release leaves one)."""
    timeout = check_lease_timeout(timeout)
    cleared = []
    d = folder / LEASE_DIR
    for p in d.glob("*.lease") if d.is_dir() else []:
        stem = p.name[: -len(".lease")]
        if not (len(stem) == 6 and stem.isdigit()) or int(stem) not in done:
            continue
        head = _head(p)
        if head is None or head[1] <= timeout:
            continue
        bucket, key = _bucket_key(p)
        try:
            _call(p, "delete_object", Bucket=bucket, Key=key, IfMatch=head[0])
        except Exception as e:  # noqa: BLE001
            if _precondition_failed(e) or _not_found(e):
                continue
            raise store_error(str(p), e) from None
        cleared.append(int(stem))
    return cleared


def object_lease_state(folder: RemotePath, index: int, timeout: float) -> tuple[str, dict]:
    """("none" | "stale" | "live", owner record) of shard `index`'s lease object (read-only: for --status)."""
    got = _get(object_lease_path(folder, index))
    if got is None:
        return "none", {}
    head = _head(object_lease_path(folder, index))
    if head is None:
        return "none", {}
    return ("stale" if head[1] > timeout or dead_here(got[1]) else "live"), got[1]
