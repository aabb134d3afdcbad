"""Range reads of generated columns (genaug.data.ranges, genaug.shards.index): bytes fetched counted at a real moto
S3 server through the byte-counting proxy, the same batches as whole-shard reads, and fallbacks that never use
wrong bytes."""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.data.stream import build_train_loader
from genaug.shards.complete import finish_folder
from genaug.shards.index import build_index, encode_index, index_name, write_index
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.storage import as_location, set_storage_options
from genaug.shards.writer import commit_shard, read_stats
from genaug.testing.shards import write_synthetic_split


def _noise_jpeg(rng: np.random.Generator, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def write_noise_column(root: Path, name: str, k: int, failed=(), with_index=True, split="train") -> Path:
    """A generated column in generate's sample format whose variants are textured (realistic sizes, not flat).

    Samples in `failed` say so in their json but keep variant members (an older or foreign writer's leftovers)."""
    src, dst = root / split, root / "gen" / name / split
    dst.mkdir(parents=True, exist_ok=True)
    man = read_manifest(src)
    write_manifest(
        dst, {"kind": "generated", "recipe_hash": name, "k": k, "source_split": split, "shards": man["shards"]}
    )
    rng = np.random.default_rng(k)
    for sname in man["shards"]:
        samples = []
        for raw in iter_shard_raw(src / sname):
            key = raw["__key__"]
            doc = {"seeds": list(range(k)), "recipe_hash": name, "failed": "boom" if key in failed else None}
            if key not in failed:
                doc["black"] = []
            s = {"__key__": key, "json": json.dumps(doc, sort_keys=True)}
            # a failed sample keeps its variants here: its json, not their absence, says none may be used
            s.update({f"gen_{j}.jpg": _noise_jpeg(rng, 128) for j in range(k)})
            samples.append(s)
        commit_shard(dst, int(sname[:6]), samples, with_index=with_index)
    finish_folder(dst)  # its completion record, as generate writes it (`genaug index` must leave it valid)
    return dst


@pytest.fixture(scope="module")
def local_set(tmp_path_factory):
    """Split `train` (4 shards x 8 images of 192 px); columns g (K = 10, 128 px) and h (K = 3, 11 failed)."""
    root = tmp_path_factory.mktemp("ranges") / "set"
    write_synthetic_split(root, "train", num_shards=4, per_shard=8, size=192, seed=3, quality=95)
    write_noise_column(root, "g", 10)
    write_noise_column(root, "h", 3, failed=tuple(f"s{i // 8:06d}r{i % 8:06d}" for i in range(0, 32, 3)))
    return root


@pytest.fixture
def remote_set(local_set, s3):
    as_location(f"s3://{s3}").fs.put(str(local_set), f"{s3}/set", recursive=True)
    return f"s3://{s3}/set"


def _run(shards, gens=("g",), p=0.5, mode="auto", **kw):
    """(batches as comparable tuples, the loader) of one epoch."""
    loader = build_train_loader(
        shards, gen_columns=list(gens), p=p, batch_size=8, num_workers=0, seed=4, range_reads=mode, **kw
    )
    out = []
    for b in loader:
        out.append((b["key"], b["replaced"].tolist(), [round(v.double().sum().item(), 4) for v in b["views"]]))
    return out, loader


def _proxy_bytes(path: Path) -> int:
    """The proxy's count, once it has stopped changing (the proxy writes it after relaying each chunk)."""
    last = -1
    for _ in range(50):
        now = int(path.read_text())
        if now == last:
            return now
        last = now
        time.sleep(0.1)
    return last


def test_an_epoch_fetches_little_more_than_the_images_it_uses(local_set, remote_set, s3_server, monkeypatch, tmp_path):
    """K = 10, p = 0.5: bytes the store sent (counted by the proxy in front of moto) <= 1.25 x image bytes used."""
    from genaug.testing.servers import start_latency_proxy, stop_server

    count = tmp_path / "relayed"
    proc, far = start_latency_proxy(s3_server, delay_ms=0, count_file=count)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", far)
        set_storage_options(None)
        sent = {}
        for mode in ("on", "off"):
            loader = build_train_loader(
                remote_set, gen_columns=["g"], p=0.5, batch_size=8, num_workers=0, seed=4, range_reads=mode
            )
            before = _proxy_bytes(count)
            n = sum(1 for _ in loader)
            sent[mode] = _proxy_bytes(count) - before
            io_counts = loader.last_io
            assert n == 4 and io_counts["bytes_used"] > 0
            assert io_counts["bytes_fetched"] <= sent[mode]  # genaug's own count leaves out only headers and stats
        used = io_counts["bytes_used"]  # the same draws, hence the same images, in both modes
    finally:
        stop_server(proc)
        set_storage_options(None)
    assert sent["on"] <= 1.25 * used, (sent, used)
    assert sent["off"] >= 3 * used  # whole shards: all ten variants of every sample cross the network


def test_range_reads_give_the_batches_of_whole_shard_reads(local_set, remote_set):
    ref, whole = _run(str(local_set), gens=("g", "h"), mode="off")
    assert whole.last_io["index_fallback"] == 0
    for shards in (str(local_set), remote_set):
        got, loader = _run(shards, gens=("g", "h"), mode="on")
        assert got == ref
        assert loader.last_io["index_fallback"] == 0
        assert loader.last_io["bytes_used"] == whole.last_io["bytes_used"]
        assert loader.last_io["bytes_fetched"] < whole.last_io["bytes_fetched"] / 2
    assert any(any(r) for _, rep, _ in ref for r in rep)  # some views did take variants


def _copy(local_set: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(local_set, dst)
    return dst


def test_an_index_that_disagrees_with_its_tar_falls_back_to_the_whole_shard(local_set, tmp_path):
    root = _copy(local_set, tmp_path / "set")
    col = root / "gen" / "g" / "train"
    ref, _ = _run(str(root), mode="off")
    # shard 1: an index consistent with its stats but pointing every member one block off (wrong bytes if used)
    data = (col / "000001.tar").read_bytes()
    doc = build_index(data, "000001.tar")
    doc["members"] = [[m, off + 512 if m.endswith(".jpg") else off, size, crc] for m, off, size, crc in doc["members"]]
    stats = read_stats(col, 1)
    stats["index"] = write_index(col, 1, doc)
    (col / "000001.json").write_text(json.dumps(stats))
    # shard 2: an index file damaged after commit (no longer the bytes its stats recorded)
    bad = (col / index_name(2)).read_bytes().replace(b'"crc32"', b'"crc33"')
    (col / index_name(2)).write_bytes(bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, loader = _run(str(root), mode="on")
    said = " ".join(str(w.message) for w in caught)
    assert "000001.tar" in said and "index checksum" in said and "reading the whole shard instead" in said
    assert index_name(2) in said
    assert got == ref and loader.last_io["index_fallback"] == 2


def test_an_unreadable_index_falls_back_to_the_whole_shard(local_set, tmp_path):
    """An index that exists but cannot be read (here a folder where the file was) is a counted fallback to the
    whole shard with a warning, never a traceback: the stats and the index are read together, so a read error of
    either one must not escape the range job."""
    root = _copy(local_set, tmp_path / "set")
    col = root / "gen" / "g" / "train"
    ref, _ = _run(str(root), mode="off")
    (col / index_name(3)).unlink()
    (col / index_name(3)).mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, loader = _run(str(root), mode="on")
    said = " ".join(str(w.message) for w in caught)
    assert index_name(3) in said and "reading the whole shard instead" in said
    assert got == ref and loader.last_io["index_fallback"] == 1


def test_a_column_without_index_still_trains(local_set, tmp_path):
    root = _copy(local_set, tmp_path / "set")
    write_noise_column(root, "old", 10, with_index=False)
    assert not list((root / "gen" / "old" / "train").glob("*.idx.json"))
    ref, _ = _run(str(root), gens=("old",), mode="off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: a column made before indexes is simply read whole
        got, loader = _run(str(root), gens=("old",), mode="on")
    assert got == ref and loader.last_io["index_fallback"] == 0


def test_the_index_records_every_member_and_commits_before_the_stats(local_set):
    col = local_set / "gen" / "g" / "train"
    stats = read_stats(col, 0)
    data = (col / "000000.tar").read_bytes()
    idx = (col / index_name(0)).read_bytes()
    assert stats["index"]["name"] == index_name(0) and stats["index"]["bytes"] == len(idx)
    doc = json.loads(idx)
    assert idx == encode_index(build_index(data, "000000.tar"))
    assert len(doc["members"]) == 8 * 11 and doc["tar_sha256"] == stats["sha256"]
    name, off, size, _ = doc["members"][0]
    first = next(iter_shard_raw(col / "000000.tar"))
    assert name == f"{first['__key__']}.gen_0.jpg" and data[off : off + size] == first["gen_0.jpg"]


def test_verify_catches_an_index_that_disagrees_with_its_tar(local_set, tmp_path):
    from genaug.shards.verify import verify_set

    root = _copy(local_set, tmp_path / "set")
    col = root / "gen" / "g" / "train"
    assert verify_set(str(root))[1] == []
    doc = build_index((col / "000003.tar").read_bytes(), "000003.tar")
    doc["members"][5][3] ^= 1  # one member's checksum
    doc["members"][7][1] += 512  # another member's offset
    stats = read_stats(col, 3)
    stats["index"] = write_index(col, 3, doc)  # consistent with the stats: only the tar can tell it is wrong
    (col / "000003.json").write_text(json.dumps(stats))
    (col / index_name(1)).write_bytes(b"{}")  # damaged after commit
    problems = verify_set(str(root))[1]
    said = "\n".join(problems)
    assert len(problems) == 3, said
    assert f"member {doc['members'][5][0]}: checksum" in said and f"member {doc['members'][7][0]}: offset" in said
    assert f"{index_name(1)} does not match the size and sha256" in said


def test_verify_hints_at_an_index_command_that_rebuilds_a_damaged_index(tmp_path, capsys, monkeypatch):
    """verify names `genaug index` for the damaged column as a command; run as printed, it rebuilds the index."""
    import re
    import shlex

    from genaug.cli import main

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=4, size=16, seed=0)
    col = write_noise_column(root, "g", 1)
    (col / index_name(1)).write_bytes(b"{}")  # damaged after commit
    capsys.readouterr()
    assert main(["verify", "--shards", str(root)]) == 1
    out = capsys.readouterr()
    hints = sorted(set(re.findall(r"`(genaug index [^`]+)`", out.out + out.err)))
    assert hints == [f"genaug index --shards {root} --gen g --split train"], out.out + out.err
    assert main(shlex.split(hints[0])[1:]) == 0
    capsys.readouterr()
    assert main(["verify", "--shards", str(root)]) == 0


def _index_killed_at(root: Path, fault: str) -> int:
    """Run the indexing in a child process that the fault point kills with SIGKILL; its return code."""
    import os
    import subprocess
    import sys

    code = f"from genaug.shards.indexing import index_column; index_column({str(root)!r}, 'old')"
    env = {**os.environ, "GENAUG_FAULT": fault}
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=300).returncode


def test_genaug_index_adds_an_index_to_an_old_column_and_resumes_after_a_kill(local_set, tmp_path, capsys):
    from genaug.cli import main
    from genaug.shards.verify import verify_set

    root = _copy(local_set, tmp_path / "set")
    col = write_noise_column(root, "old", 4, with_index=False)
    ref, _ = _run(str(root), gens=("old",), mode="off")
    assert _index_killed_at(root, "index-sidecar-written:2") == -9
    assert [("index" in read_stats(col, i)) for i in range(4)] == [True, True, False, False]
    assert (col / index_name(2)).exists()  # written, not yet recorded by the stats: not taken for done
    argv = ["index", "--shards", str(root), "--gen", "old"]
    assert main(argv) == 0 and "2 shards indexed, 2 already indexed" in capsys.readouterr().err
    assert main(argv) == 0 and "0 shards indexed, 4 already indexed" in capsys.readouterr().err  # nothing left
    assert verify_set(str(root))[1] == []
    got, loader = _run(str(root), gens=("old",), mode="on")
    _, whole = _run(str(root), gens=("old",), mode="off")
    assert got == ref and loader.last_io["bytes_fetched"] < whole.last_io["bytes_fetched"]


def test_genaug_index_works_on_a_bucket(local_set, s3, tmp_path):
    from genaug.shards.indexing import index_column

    root = _copy(local_set, tmp_path / "set")
    write_noise_column(root, "old", 2, with_index=False)
    as_location(f"s3://{s3}").fs.put(str(root / "gen" / "old"), f"{s3}/set/gen/old", recursive=True)
    as_location(f"s3://{s3}").fs.put(str(root / "train"), f"{s3}/set/train", recursive=True)
    url = f"s3://{s3}/set"
    assert [len(r.indexed) for r in index_column(url, "old")] == [4]
    assert [r.skipped for r in index_column(url, "old")] == [4]
    col = as_location(url) / "gen" / "old" / "train"
    from genaug.shards.verify import verify_folder

    rep = verify_folder(col)
    assert rep.problems == [] and rep.notes == [] and rep.shards == 4  # indexed (no "no member index" note), intact
    ref, _ = _run(str(root), gens=("old",), mode="off")
    got, loader = _run(url, gens=("old",), mode="auto")  # a bucket: ranges by default
    assert got == ref and loader.last_io["index_fallback"] == 0 and "index" in read_stats(col, 3)


def test_a_writer_killed_after_the_index_leaves_nothing_taken_for_done(tmp_path):
    import os
    import subprocess
    import sys

    from genaug.shards.writer import cleanup_shard, is_shard_done

    code = (
        "from genaug.shards.writer import commit_shard; "
        f"commit_shard({str(tmp_path)!r}, 0, [{{'__key__': 'a', 'json': '{{}}', 'gen_0.jpg': b'x'}}], with_index=True)"
    )
    env = {**os.environ, "GENAUG_FAULT": "index-written:0"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == -9
    assert (tmp_path / index_name(0)).exists() and not (tmp_path / "000000.json").exists()
    assert not is_shard_done(tmp_path, 0)
    assert {p.name for p in cleanup_shard(tmp_path, 0)} == {"000000.tar", index_name(0)}
    assert list(tmp_path.iterdir()) == []


def test_a_mid_epoch_restore_with_range_reads_continues_the_same_batches(local_set):
    full, _ = _run(str(local_set), gens=("g", "h"), mode="on")
    kw = dict(gen_columns=["g", "h"], p=0.5, batch_size=8, num_workers=0, seed=4, range_reads="on")
    first = build_train_loader(str(local_set), **kw)
    it = iter(first)
    next(it)
    next(it)
    state = first.state_dict()
    again = build_train_loader(str(local_set), **kw)
    again.load_state_dict(state)
    rest = [(b["key"], b["replaced"].tolist(), [round(v.double().sum().item(), 4) for v in b["views"]]) for b in again]
    assert rest == full[2:]


def test_range_reads_fetch_only_the_rows_a_rest_span_keeps(local_set):
    """The rest of an elastically resumed epoch reads some rows of a shard: only their variants are fetched."""
    from genaug.data.mixing import MixPolicy
    from genaug.data.ranges import GEN_FIELD, read_columns
    from genaug.data.stream import open_columns

    cols = open_columns(str(local_set), "train", ["g"])
    name, n = cols.shards[1], cols.counts[1]
    draws = np.random.default_rng(0).random((n, 4))
    policy = MixPolicy(1.0, "each", None, "uniform")  # every view takes a variant

    def fetched(row: dict) -> int:
        return sum(1 for f, v in row.items() if GEN_FIELD.match(f) and v is not None)

    every = read_columns(cols, name, draws, policy, 2, (True,))
    assert all(fetched(r) >= 1 for r in every.rows[0]) and every.fallbacks == 0
    some = read_columns(cols, name, draws, policy, 2, (True,), keep={2, 5})
    assert [fetched(r) > 0 for r in some.rows[0]] == [i in (2, 5) for i in range(n)]
    assert [fetched(r) for r in some.rows[0] if fetched(r)] == [fetched(every.rows[0][i]) for i in (2, 5)]
    assert some.fetched < every.fetched


def test_a_wider_range_gap_sends_fewer_requests_for_the_same_batches(local_set, tmp_path, monkeypatch):
    """data.range_gap trades bytes for requests: counted by moto's own request recorder, the column's GETs fall as
    the gap widens, its bytes rise, and the batches stay those of whole-shard reads."""
    import boto3

    from genaug.testing.request_log import start_recording_moto
    from genaug.testing.servers import AWS_TEST_ENV, stop_server

    proc, url, log = start_recording_moto(tmp_path)
    try:
        for k, v in {"AWS_ENDPOINT_URL": url, **AWS_TEST_ENV}.items():
            monkeypatch.setenv(k, v)
        set_storage_options(None)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="gap")
        as_location("s3://gap").fs.put(str(local_set), "gap/set", recursive=True)
        ref, _ = _run(str(local_set), mode="off")
        seen = {}
        for gap in (4096, "64K", "1M"):
            log.start()
            got, loader = _run("s3://gap/set", mode="on", range_gap=gap)
            reqs = [r for r in log.stop() if r.method == "GET" and "/gen/g/" in f"/{r.key}" and r.range]
            assert got == ref
            seen[gap] = (len(reqs), sum(log.get_bytes(reqs).values()), loader.last_io["bytes_used"])
    finally:
        stop_server(proc)
        set_storage_options(None)
    (n4, b4, used), (n64, b64, _), (n1m, b1m, _) = seen[4096], seen["64K"], seen["1M"]
    assert n4 > n64 > n1m >= 4, seen  # at least one ranged request per column shard
    assert b4 < b64 < b1m, seen
    assert b4 <= 1.25 * used, seen
