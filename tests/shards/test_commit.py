"""The commit protocol: a killed writer leaves nothing that verify or a reader accepts; a rerun completes it."""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

from genaug.shards import iter_shard_raw
from genaug.shards.manifest import write_manifest
from genaug.shards.reader import complete_shards, decode_sample
from genaug.shards.tario import read_samples, write_samples
from genaug.shards.verify import verify_folder
from genaug.shards.writer import ShardValidationError, ShardWriter, cleanup_shard, commit_shard, is_shard_done


def _samples(shard, n):
    return [
        {"__key__": f"s{shard:06d}r{r:06d}", "jpg": bytes([r]) * 10, "json": json.dumps({"r": r})} for r in range(n)
    ]


def test_tar_round_trip_and_field_split():
    buf = io.BytesIO()
    write_samples(buf, [{"__key__": "a1", "jpg": b"x", "gen_0.jpg": b"y", "cls": "3"}])
    (s,) = list(read_samples(io.BytesIO(buf.getvalue())))
    assert s == {"__key__": "a1", "jpg": b"x", "gen_0.jpg": b"y", "cls": b"3"}


def test_key_with_dot_is_refused():
    from genaug.core.errors import GenaugError

    with pytest.raises(GenaugError, match="no dots"):
        write_samples(io.BytesIO(), [{"__key__": "a.b", "jpg": b"x"}])


def test_commit_writes_stats_last_and_is_done(tmp_path):
    stats = commit_shard(tmp_path, 3, _samples(3, 4), ("jpg", "json"), {"failures": [{"key": "x", "error": "e"}]})
    assert (tmp_path / "000003.tar").exists() and (tmp_path / "000003.json").exists()
    assert stats["count"] == 4 and stats["failures"][0]["key"] == "x"
    assert is_shard_done(tmp_path, 3)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_validation_refuses_missing_fields(tmp_path):
    bad = _samples(0, 2)
    del bad[1]["json"]
    with pytest.raises(ShardValidationError):
        commit_shard(tmp_path, 0, bad, ("jpg", "json"))
    assert not list(tmp_path.iterdir())  # neither the temp file nor a tar is left


def test_corrupted_tar_is_not_done(tmp_path):
    commit_shard(tmp_path, 0, _samples(0, 3), ("jpg",))
    p = tmp_path / "000000.tar"
    data = bytearray(p.read_bytes())
    data[600] ^= 0xFF
    p.write_bytes(bytes(data))
    assert is_shard_done(tmp_path, 0, check_sha=False)  # same size: only the checksum can tell
    assert not is_shard_done(tmp_path, 0)


CHILD = textwrap.dedent(
    """
    import json, sys
    from genaug.shards.writer import commit_shard
    folder = sys.argv[1]
    for shard in range(3):
        samples = [{"__key__": f"s{shard:06d}r{r:06d}", "jpg": bytes([r]) * 10, "json": json.dumps({"r": r})}
                   for r in range(4)]
        commit_shard(folder, shard, samples, ("jpg", "json"))
    """
)


@pytest.mark.parametrize("point", ["tar-tmp-written", "tar-renamed"])
def test_killed_mid_shard_leaves_nothing_accepted_and_rerun_completes(tmp_path, point):
    folder = tmp_path / "split"
    folder.mkdir()
    write_manifest(folder, {"kind": "source", "shards": [f"{i:06d}.tar" for i in range(3)], "classes": None})
    env = dict(os.environ, GENAUG_FAULT=f"{point}:1")
    r = subprocess.run([sys.executable, "-c", CHILD, str(folder)], env=env)
    assert r.returncode == -9  # SIGKILL, as kill -9 would
    # shard 0 is done; shard 1 is half-written in the way `point` says; shard 2 was never started
    assert is_shard_done(folder, 0) and not is_shard_done(folder, 1)
    assert [p.name for p in complete_shards(folder)] == ["000000.tar"]
    rep = verify_folder(folder)
    assert any("000001.tar" in p for p in rep.problems) and any("000002.tar" in p for p in rep.problems)
    leftovers = sorted(p.name for p in folder.iterdir() if p.name.startswith("000001"))
    assert leftovers  # there is something half-written to clean up
    # the rerun: a resumable writer skips shard 0, deletes the orphan, and completes 1 and 2
    w = ShardWriter(folder, {"kind": "source", "shards": [f"{i:06d}.tar" for i in range(3)], "classes": None})
    w.prepare()
    assert w.pending(range(3)) == [1, 2]
    assert not [p for p in folder.iterdir() if p.name.startswith("000001")]
    subprocess.run([sys.executable, "-c", CHILD, str(folder)], check=True)
    assert verify_folder(folder).problems == []
    keys = [s["__key__"] for p in complete_shards(folder) for s in iter_shard_raw(p)]
    assert len(keys) == 12 == len(set(keys))


def test_cleanup_keeps_done_shards(tmp_path):
    commit_shard(tmp_path, 0, _samples(0, 2), ("jpg",))
    (tmp_path / "000000.tar.tmp-otherhost-1").write_bytes(b"junk")
    removed = cleanup_shard(tmp_path, 0)
    assert [p.name for p in removed] == ["000000.tar.tmp-otherhost-1"]
    assert is_shard_done(tmp_path, 0)


def test_reader_never_unpickles(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = {
        "__key__": "s000000r000000",
        "jpg": b"x",
        "pyd": pickle.dumps(Boom()),
        "pth": pickle.dumps(Boom()),
        "json": "{}",
    }
    commit_shard(tmp_path, 0, [evil], ("jpg",))
    (raw,) = list(iter_shard_raw(tmp_path / "000000.tar"))
    dec = decode_sample(raw, images="bytes")
    assert isinstance(dec["pyd"], bytes) and isinstance(dec["pth"], bytes)
    assert not (tmp_path / "pwned").exists()


def test_corrupt_header_mid_tar_is_an_error_not_a_short_shard(tmp_path):
    from genaug.core.errors import GenaugError

    commit_shard(tmp_path, 0, _samples(0, 6), ("jpg",))
    p = tmp_path / "000000.tar"
    data = bytearray(p.read_bytes())
    data[512 * 6 + 100 : 512 * 6 + 160] = b"\xff" * 60  # garble the 4th member's header (name/mode/size)
    p.write_bytes(bytes(data))
    with pytest.raises(GenaugError, match="corrupt tar header"):
        list(iter_shard_raw(p))
