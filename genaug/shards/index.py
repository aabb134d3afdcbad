"""Per-shard member index: where each member's bytes lie in a tar, their size and a CRC-32, so readers fetch ranges.

A generated column's shard NNNNNN.tar gets a sidecar NNNNNN.idx.json when it is committed (genaug.shards.writer,
before the stats file, which records the sidecar's size and sha256: a shard is complete only with its index):

    {"format": "genaug-index/1", "shard": "000003.tar", "tar_bytes": 1234, "tar_sha256": "...",
     "checksum": "crc32", "failed": ["s000003_000007"],
     "members": [["s000003_000000.gen_0.jpg", 512, 20311, 2860181467], ...]}

Each member is [name, offset of its data in the tar, size, zlib.crc32 of its bytes], in tar order. `failed` lists
the samples whose json member says their generation failed (they have no variants), so a reader plans which
variants to fetch without fetching every json member first. The checksum is
zlib's CRC-32 (standard library, ~0.7 GB/s on one core of the shared test machine, twice sha256): it guards against
an index that disagrees with its tar and against damaged bytes, not against an adversary, and a 32-bit CRC detects
every burst error up to 32 bits. A reader that finds the sidecar missing, not matching the stats, or a member whose
bytes do not match falls back to the whole tar and its sha256 (genaug.data.ranges).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib

from genaug.core.errors import GenaugError
from genaug.shards.storage import Location, RemotePath, as_location, put_atomic, read_bytes

FORMAT = "genaug-index/1"
CHECKSUM = "crc32"


class IndexMismatch(GenaugError):
    """An index that disagrees with its stats or its tar (missing, damaged, wrong offsets or checksums)."""


def index_name(index: int) -> str:
    """File name of the member index of shard `index`: 000042.idx.json."""
    return f"{index:06d}.idx.json"


def member_crc(data: bytes) -> int:
    """The checksum an index records for a member's bytes (zlib CRC-32)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def build_index(data: bytes, shard: str) -> dict:
    """The index document of the tar `data` (named `shard`): every regular member's offset, size and CRC-32."""
    members, failed = [], []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            if m.isfile():
                off, size = int(m.offset_data), int(m.size)
                members.append([m.name, off, size, member_crc(data[off : off + size])])
                if m.name.endswith(".json") and _says_failed(data[off : off + size]):
                    failed.append(m.name[: -len(".json")])
    return {
        "format": FORMAT,
        "shard": shard,
        "tar_bytes": len(data),
        "tar_sha256": hashlib.sha256(data).hexdigest(),
        "checksum": CHECKSUM,
        "failed": failed,
        "members": members,
    }


def _says_failed(data: bytes) -> bool:
    """True when a json member is an object whose `failed` is set (a generated sample without variants)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and bool(doc.get("failed"))


def encode_index(doc: dict) -> bytes:
    """The stored bytes of an index document (compact JSON: one short line per member)."""
    head = {k: v for k, v in doc.items() if k != "members"}
    lines = [json.dumps(m, separators=(",", ":")) for m in doc["members"]]
    body = json.dumps(head, sort_keys=True)[:-1] + ', "members": [\n' + ",\n".join(lines) + "\n]}\n"
    return body.encode("utf-8")


def write_index(folder: Location, index: int, doc: dict) -> dict:
    """Store the index of shard `index` atomically; return the entry the stats record for it (name, bytes, sha256)."""
    data = encode_index(doc)
    put_atomic(as_location(folder) / index_name(index), data)
    return {"name": index_name(index), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def parse_index(data: bytes, entry: dict | None, where: str) -> dict:
    """The index document in `data`, checked against the stats' `entry` (size, sha256) and its own format."""
    sha = hashlib.sha256(data).hexdigest()
    if entry is not None and (len(data) != entry.get("bytes") or sha != entry.get("sha256")):
        raise IndexMismatch(f"{where} does not match the size and sha256 its stats recorded")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise IndexMismatch(f"{where} is not valid JSON ({e})") from None
    ok = isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("checksum") == CHECKSUM
    if not ok or not isinstance(doc.get("members"), list):
        raise IndexMismatch(f"{where} is not a {FORMAT} index with {CHECKSUM} checksums")
    for m in doc["members"]:
        ok = isinstance(m, list) and len(m) == 4 and isinstance(m[0], str)
        if not (ok and all(isinstance(x, int) for x in m[1:])):
            raise IndexMismatch(f"{where}: member entry {m!r} is not [name, offset, size, crc]")
    return doc


def read_index(folder: Location, index: int, stats: dict, fetched: bytes | None = None) -> tuple[dict, int]:
    """(the index of shard `index` as its stats record it, bytes read); IndexMismatch when it is missing or damaged.

    `fetched`: the bytes at the index's usual name, read together with the stats (used when the stats name it)."""
    entry = stats.get("index")
    if not isinstance(entry, dict):
        raise IndexMismatch(f"{as_location(folder) / index_name(index)}: the stats record no index")
    name = str(entry.get("name") or index_name(index))
    path = as_location(folder) / name
    if fetched is not None and name == index_name(index):
        return parse_index(fetched, entry, str(path)), len(fetched)
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        raise IndexMismatch(f"{path} is missing") from None
    except OSError as e:  # a folder or an unreadable file where the index should be: the whole shard is read
        raise IndexMismatch(f"{path} cannot be read ({e.strerror or e})") from None
    except GenaugError as e:
        if isinstance(folder, RemotePath):
            raise IndexMismatch(f"{path} cannot be read ({e})") from None
        raise
    return parse_index(data, entry, str(path)), len(data)


def check_index(doc: dict, data: bytes, stats: dict | None = None) -> list[str]:
    """Problems of an index against its tar's bytes: members, offsets, sizes and checksums ([] when it agrees)."""
    problems = []
    if doc.get("tar_bytes") != len(data):
        problems.append(f"indexes a tar of {doc.get('tar_bytes')} bytes, the tar has {len(data)}")
    if stats is not None and doc.get("tar_sha256") != stats.get("sha256"):
        problems.append("indexes another version of the tar (tar_sha256 differs from the stats)")
    want = build_index(data, doc.get("shard", ""))["members"]
    got = doc.get("members") or []
    if [m[0] for m in got] != [m[0] for m in want]:
        problems.append(f"lists {len(got)} members, the tar has {len(want)} (or other names or order)")
    for g, w in zip(got, want, strict=False):
        if g[0] != w[0]:
            continue
        if g[1:3] != w[1:3]:
            problems.append(f"member {g[0]}: offset/size {g[1]}/{g[2]}, the tar has {w[1]}/{w[2]}")
        elif g[3] != w[3]:
            problems.append(f"member {g[0]}: checksum {g[3]} differs from its bytes' {w[3]}")
    return problems


def members_by_key(doc: dict) -> tuple[list[str], dict[str, dict[str, tuple[int, int, int]]]]:
    """(keys in tar order, key -> field -> (offset, size, crc)), grouped by webdataset's key rule."""
    from genaug.shards.tario import split_name

    keys: list[str] = []
    table: dict[str, dict[str, tuple[int, int, int]]] = {}
    for name, off, size, crc in doc["members"]:
        key, field = split_name(name)
        if key is None or field is None:
            raise IndexMismatch(f"index member {name!r} has no key.field name")
        if key not in table:
            keys.append(key)
            table[key] = {}
        table[key][field] = (off, size, crc)
    return keys, table
