"""Ingest against hostile inputs: FIFOs, /dev/zero, oversized files, duplicate tar keys, bad labels, bad flags,
--overwrite next to unrelated files, and two ingests into one split."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.cli import main
from genaug.ingest.run import ingest
from genaug.ingest.sources import check_label, parse_cls
from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards
from genaug.shards.verify import verify_set

POSIX = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")


def _jpeg(seed: int, size: int = 24) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _failures(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.glob("0*.json")):
        for f in json.loads(p.read_text())["failures"]:
            out[f["source"]] = f["error"]
    return out


def _samples(folder: Path) -> list[dict]:
    return [s for p in complete_shards(folder) for s in iter_shard(p)]


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def flat(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_good.jpg").write_bytes(_jpeg(1))
    return src


# -- files that are not regular, or too big ------------------------------------------------------------------------


@POSIX
def test_fifo_and_dev_zero_are_recorded_under_a_memory_limit(tmp_path, flat):
    os.mkfifo(flat / "b_fifo.jpg")  # opening it for reading would wait for a writer forever
    (flat / "c_zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    out = tmp_path / "set"
    code = textwrap.dedent(f"""
        import json, resource
        import webdataset  # genaug's tar I/O; it imports torch, whose libraries map several GiB of address space
        from genaug.ingest.run import ingest
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        limit = mapped + (1 << 30)  # 1 GiB above what the imports mapped: /dev/zero read whole would blow it
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        s = ingest({str(flat)!r}, {str(out)!r}, workers=0, progress=False)
        print(json.dumps(s))
    """)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t < 60
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["images_written"] == 1 and s["images_failed"] == 2
    fails = _failures(out / "train")
    assert fails == {
        "b_fifo.jpg": "not a regular file (a FIFO): only regular image files are read",
        "c_zero.jpg": "not a regular file (a character device): only regular image files are read",
    }
    assert verify_set(str(out))[1] == []


@POSIX
def test_fifo_with_worker_processes_does_not_block(tmp_path, flat):
    fifo = flat / "b_fifo.jpg"
    os.mkfifo(fifo)
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(ingest(flat, tmp_path / "set", workers=1, progress=False)))
    t.daemon = True
    t.start()
    t.join(60)
    if t.is_alive():  # a regression blocks on the FIFO: unblock it so the suite goes on, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("ingest blocked on a FIFO")
    assert out["images_written"] == 1 and "FIFO" in _failures(tmp_path / "set" / "train")["b_fifo.jpg"]


def test_max_bytes_caps_files_and_tar_members(tmp_path, flat):
    big = _jpeg(2, size=200)
    (flat / "b_big.jpg").write_bytes(big)
    limit = len(big) - 1
    ingest(flat, tmp_path / "set", workers=0, progress=False, max_bytes=limit)
    assert f"over the limit of {limit} (--max-bytes)" in _failures(tmp_path / "set" / "train")["b_big.jpg"]
    tars = tmp_path / "tars"
    tars.mkdir()
    _tar(tars / "x.tar", [("k1.jpg", _jpeg(1)), ("k2.jpg", big)])
    s = ingest(tars, tmp_path / "wds", workers=0, progress=False, max_bytes=limit)
    assert s["images_written"] == 1
    (why,) = _failures(tmp_path / "wds" / "train").values()
    assert "--max-bytes" in why


# -- input WebDataset tars: duplicate keys, labels ------------------------------------------------------------------


def test_duplicate_keys_in_an_input_tar_are_recorded_never_merged(tmp_path):
    first_a, later_a, first_c = _jpeg(10), _jpeg(11), _jpeg(12)
    tars = tmp_path / "tars"
    tars.mkdir()
    _tar(
        tars / "in.tar",
        [
            ("a.jpg", first_a),
            ("a.cls", b"0"),
            ("b.jpg", _jpeg(13)),
            ("b.cls", b"1"),
            ("a.jpg", later_a),  # key `a` again, after `b`: a second sample with the same key
            ("a.cls", b"7"),
            ("c.jpg", first_c),
            ("c.jpg", _jpeg(14)),  # the same member name twice in a row: also a duplicate sample
        ],
    )
    s = ingest(tars, tmp_path / "set", workers=0, progress=False, order="sorted")  # the checks list input order
    folder = tmp_path / "set" / "train"
    got = _samples(folder)
    assert [x["json"]["source"] for x in got] == [f"in.tar:{k}" for k in "abc"]  # relative to the source folder
    assert [x.get("cls") for x in got] == [0, 1, None]
    raw = {m.name: m for m in tarfile.open(next(folder.glob("*.tar")))}
    stored = tarfile.open(next(folder.glob("*.tar")))
    assert stored.extractfile(raw["s000000r000000.jpg"]).read() == first_a  # the first `a`, not the later one
    fails = _failures(folder)
    assert s["images_failed"] == 2 and len(fails) == 2
    assert all("duplicate key" in e and "never merged" in e for e in fails.values())
    assert sorted(k.rsplit(":", 1)[1] for k in fails) == ["a", "c"]


def test_out_of_range_and_malformed_labels_are_failures(tmp_path):
    tars = tmp_path / "tars"
    tars.mkdir()
    labels = {
        "k0": b"3",
        "k1": b"-1",
        "k2": b"99999999999999999999",  # 20 digits
        "k3": b"2147483648",  # 2**31
        "k4": b"abc",
        "k5": b"2147483647",  # 2**31 - 1: the largest accepted
        "k6": b"\xff\xfe",
        "k7": b"1_000",  # int() would accept it
        "k8": b" 4\n",
    }
    _tar(
        tars / "in.tar",
        [m for i, (k, v) in enumerate(labels.items()) for m in ((f"{k}.jpg", _jpeg(i)), (f"{k}.cls", v))],
    )
    s = ingest(tars, tmp_path / "set", workers=0, progress=False, order="sorted")  # the checks list input order
    folder = tmp_path / "set" / "train"
    assert [(x["json"]["source"].rsplit(":", 1)[1], x["cls"]) for x in _samples(folder)] == [
        ("k0", 3),
        ("k5", 2**31 - 1),
        ("k8", 4),
    ]
    fails = {k.rsplit(":", 1)[1]: v for k, v in _failures(folder).items()}
    assert sorted(fails) == ["k1", "k2", "k3", "k4", "k6", "k7"] and s["images_failed"] == 6
    assert "negative" in fails["k1"] and "[0, 2147483648)" in fails["k2"] and "out of range" in fails["k3"]


def test_label_checks():
    assert parse_cls(b"12") == (12, None)
    assert parse_cls(b"-3")[0] is None and parse_cls(b"7" * 200)[0] is None
    assert check_label(2, 3) is None and check_label(0, None) is None
    assert "out of range [0, 3)" in check_label(3, 3)
    assert check_label(-1, None) and check_label(True, None) and check_label(2**31, None)


# -- --overwrite deletes only genaug's own files --------------------------------------------------------------------


def test_overwrite_leaves_unrelated_files_alone(tmp_path, flat):
    sset = tmp_path / "set"
    ingest(flat, sset, workers=0, progress=False)
    folder = sset / "train"
    keep = {
        "notes.txt": b"my notes",
        "000000.tar.bak": b"a backup of mine",
        "manifest.json.orig": b"{}",
        "README": b"hello",
    }
    for name, data in keep.items():
        (folder / name).write_bytes(data)
    (folder / "mine").mkdir()
    (folder / "mine" / "000001.tar").write_bytes(b"not genaug's")
    (folder / "000007.tar.tmp-otherhost-1").write_bytes(b"stale temp file of genaug")
    (folder / "000009.json").write_text("{}")  # stats of an old, longer plan: genaug's pattern
    code = main(["ingest", str(flat), "--shards", str(sset), "--quality", "50", "--overwrite", "--workers", "0"])
    assert code == 0
    for name, data in keep.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "mine" / "000001.tar").read_bytes() == b"not genaug's"
    assert not (folder / "000007.tar.tmp-otherhost-1").exists() and not (folder / "000009.json").exists()
    assert json.loads((folder / "manifest.json").read_text())["options"]["quality"] == 50
    assert verify_set(str(sset))[1] == []
    # the split's parent and the shard set root are never touched either
    (sset / "keep.txt").write_text("x")
    assert main(["ingest", str(flat), "--shards", str(sset), "--quality", "60", "--overwrite", "--workers", "0"]) == 0
    assert (sset / "keep.txt").read_text() == "x" and (folder / "notes.txt").exists()


# -- numeric flags ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--workers", "-1"),
        ("--max-pixels", "0"),
        ("--per-shard", "0"),
        ("--per-shard", "1000001"),
        ("--quality", "0"),
        ("--quality", "101"),
        ("--min-side", "0"),
        ("--max-bytes", "0"),
        ("--short-side", "-5"),
        ("--max-side", "0"),
    ],
)
def test_bad_numeric_flags_are_one_line_errors(tmp_path, flat, capsys, flag, value):
    code = main(["ingest", str(flat), "--shards", str(tmp_path / "set"), flag, value, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"genaug: error: {flag} ") and err.count("\n") == 1
    assert not (tmp_path / "set").exists()


# -- two ingests into one split ---------------------------------------------------------------------------------------


def test_second_concurrent_ingest_into_a_split_is_refused(tmp_path, flat, capsys, monkeypatch):
    import genaug.ingest.run as run

    started, release = threading.Event(), threading.Event()
    real_read = run.read_file

    def slow_read(path, max_bytes):
        started.set()
        assert release.wait(30)
        return real_read(path, max_bytes)

    monkeypatch.setattr(run, "read_file", slow_read)
    sset = tmp_path / "set"
    result: dict = {}
    first = threading.Thread(target=lambda: result.update(ingest(flat, sset, workers=0, progress=False)))
    first.start()
    try:
        assert started.wait(30)  # the first ingest holds the split and is mid-shard
        code = main(["ingest", str(flat), "--shards", str(sset), "--workers", "0", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"genaug: error: {sset / 'train'} is in use by another ingest: pid {os.getpid()}")
        # another split of the same set is independent
        monkeypatch.setattr(run, "read_file", real_read)
        assert main(["ingest", str(flat), "--shards", str(sset), "--split", "val", "--workers", "0", "--quiet"]) == 0
    finally:
        release.set()
        first.join(60)
    assert result["images_written"] == 1 and verify_set(str(sset))[1] == []


def test_cli_default_max_bytes_matches_the_library():
    from genaug.ingest import images
    from genaug.ingest.options import IngestOptions

    assert IngestOptions.model_fields["max_bytes"].default == images.DEFAULT_MAX_BYTES == 256 * 1024 * 1024
