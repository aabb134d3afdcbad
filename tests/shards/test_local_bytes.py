"""Local shard bytes are those genaug wrote before the storage seam: a stored checksum pins them."""

import hashlib
import json

from genaug.shards.storage import RemotePath, as_location
from genaug.shards.writer import commit_shard

#: sha256 of the tar below as written by genaug before genaug.shards.storage existed (same on every platform:
#: fixed bytes, USTAR headers with a fixed mtime, uid/gid 0, mode 0444)
PINNED_SHA256 = "b66faf2fcf4133ada697182756e7026a511663cf0b9d3cf53ccf10677e541e29"


def _samples():
    return [
        {
            "__key__": f"s000003r{r:06d}",
            "jpg": bytes(range(256)) * (r + 1),
            "cls": str(r % 3),
            "json": json.dumps({"source": f"c/{r}.jpg"}, sort_keys=True),
        }
        for r in range(5)
    ]


def test_local_tar_bytes_match_the_pinned_checksum(tmp_path):
    st = commit_shard(tmp_path, 3, _samples(), ("jpg", "json"))
    data = (tmp_path / "000003.tar").read_bytes()
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256 == st["sha256"]
    assert st["bytes"] == len(data) == 20480
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000003.json", "000003.tar"]  # no temp file left


def test_locations():
    assert not isinstance(as_location("shards/x"), RemotePath)
    assert str(as_location("file:///tmp/x")) == "/tmp/x"
    p = as_location("s3://bucket/pre/set/")
    assert isinstance(p, RemotePath) and str(p) == "s3://bucket/pre/set"
    assert str(p / "train" / "000000.tar") == "s3://bucket/pre/set/train/000000.tar"
    assert p.name == "set" and str(p.parent) == "s3://bucket/pre"
    assert (p / "train").with_name("val") == as_location("s3://bucket/pre/set/val")
