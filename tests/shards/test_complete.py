"""The completion record (complete.json): one read opens a split and its columns, racing finishers keep it.

Store requests are counted at the server: a moto server of this module records every request it answers
(moto's own request recorder), so the counts do not rely on genaug's code at all."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path

import pytest
from PIL import Image

from genaug.shards.complete import finish_folder, load_record, read_record
from genaug.shards.layout import RECORD_NAME, make_key, shard_name
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.storage import as_location
from genaug.shards.writer import cleanup_shard, commit_shard, read_stats
from genaug.testing.servers import MotoRecorder

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value % 256, 3, 5)).save(buf, format="JPEG")
    return buf.getvalue()


JPG = _jpeg(7)


Recorder = MotoRecorder  # moto's own request log (genaug.testing.servers)


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory):
    """A moto S3 server of this module that records every request it answers into a file."""
    from genaug.testing.servers import ServerUnavailable, start_moto, stop_server

    log = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    try:
        proc, url = start_moto({"MOTO_RECORDER_FILEPATH": str(log)})
    except ServerUnavailable as e:
        pytest.skip(str(e))
    yield url, log
    stop_server(proc)


@pytest.fixture
def rec_s3(recording_server, monkeypatch):
    """The AWS variables pointing at the recording server, a fresh bucket, and its Recorder."""
    from genaug.testing.servers import AWS_TEST_ENV

    url, log = recording_server
    for k, v in {"AWS_ENDPOINT_URL": url, **AWS_TEST_ENV}.items():
        monkeypatch.setenv(k, v)
    for k in ("GENAUG_STORAGE_OPTIONS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    bucket = f"b{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket, Recorder(url, log)


def write_source(folder, n: int) -> None:
    """A source split of n one-image shards by the real commit path, finished as ingest finishes it."""
    folder = as_location(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, {"kind": "source", "split": folder.name, "shards": [shard_name(i) for i in range(n)]})
    for i in range(n):
        commit_shard(folder, i, [{"__key__": make_key(i, 0), "jpg": JPG, "json": "{}", "cls": "0"}], ("jpg",))
    assert finish_folder(folder) is not None


def write_column(root, name: str, split: str, n: int) -> None:
    """Generated column `name` (K = 1) of an n-shard split, committed and finished as generate does."""
    folder = as_location(root) / "gen" / name / split
    folder.mkdir(parents=True, exist_ok=True)
    shards = [shard_name(i) for i in range(n)]
    write_manifest(folder, {"kind": "generated", "recipe_hash": name, "k": 1, "source_split": split, "shards": shards})
    for i in range(n):
        sample = {"__key__": make_key(i, 0), "json": json.dumps({"failed": None}), "gen_0.jpg": JPG}
        commit_shard(folder, i, [sample], ("json", "gen_0.jpg"))
    assert finish_folder(folder) is not None


def open_cost(rec: Recorder, root: str, split: str) -> tuple[int, object]:
    from genaug.data.stream import open_columns

    return rec.count(lambda: open_columns(root, split, ["a", "b"]))


def _drop_records(bucket: str, root: str, split: str) -> None:
    c = boto3.client("s3", endpoint_url=_endpoint(), region_name="us-east-1")
    prefix = root.split(f"s3://{bucket}/", 1)[1]
    for key in (f"{prefix}/{split}", f"{prefix}/gen/a/{split}", f"{prefix}/gen/b/{split}"):
        c.delete_object(Bucket=bucket, Key=f"{key}/{RECORD_NAME}")


def _endpoint() -> str:
    import os

    return os.environ["AWS_ENDPOINT_URL"]


def _shard_set(bucket: str, name: str, n: int, local: Path) -> str:
    """Set `name`: an n-shard split `train` and its columns a, b, written and finished locally, uploaded as they are."""
    import s3fs

    write_source(local / name / "train", n)
    write_column(local / name, "a", "train", n)
    write_column(local / name, "b", "train", n)
    s3fs.S3FileSystem(endpoint_url=_endpoint()).put(f"{local / name}/", f"{bucket}/{name}/", recursive=True)
    return f"s3://{bucket}/{name}"


def test_open_cost_does_not_grow_with_the_shard_count(rec_s3, tmp_path):
    bucket, rec = rec_s3
    small_set, big_set = _shard_set(bucket, "small", 3, tmp_path), _shard_set(bucket, "big", 24, tmp_path)
    small, cols = open_cost(rec, small_set, "train")
    big, cols_big = open_cost(rec, big_set, "train")
    assert cols.counts == (1,) * 3 and cols_big.counts == (1,) * 24 and len(cols_big.gens) == 2
    assert big == small <= 10 * 3, (small, big)  # a handful per column, whatever the number of shards
    # an older set without records still opens, by one or more requests per shard per column
    _drop_records(bucket, small_set, "train")
    fallback, cols_old = open_cost(rec, small_set, "train")
    assert cols_old == cols and fallback >= small + 3 * 3, (small, fallback)
    # `genaug verify --write-records` gives the old set its records back: one read per column again
    from genaug.shards.verify import verify_set

    reports, problems = verify_set(small_set, write=True)
    assert problems == [] and sum(n.endswith(": written") for r in reports for n in r.notes) == 3
    again, _ = open_cost(rec, small_set, "train")
    assert again == small


@pytest.mark.slow
def test_open_cost_of_a_1000_shard_split(rec_s3, tmp_path):
    bucket, rec = rec_s3
    small_set, big_set = _shard_set(bucket, "small", 3, tmp_path), _shard_set(bucket, "big", 1000, tmp_path)
    small, _ = open_cost(rec, small_set, "train")
    big, cols = open_cost(rec, big_set, "train")
    assert cols.total == 1000 and big == small <= 10 * 3, (small, big)


def _race(folder, rounds_done: list) -> None:
    """Commit shards 0..3, then two threads commit shards 4 and 5 and finish the folder at the same moment."""
    folder = as_location(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, {"kind": "source", "split": "race", "shards": [shard_name(i) for i in range(6)]})
    for i in range(4):
        commit_shard(folder, i, [{"__key__": make_key(i, 0), "jpg": _jpeg(i), "json": "{}"}], ("jpg",))
    barrier, got, errors = threading.Barrier(2), [], []

    def writer(i: int) -> None:
        try:
            commit_shard(folder, i, [{"__key__": make_key(i, 0), "jpg": _jpeg(i), "json": "{}"}], ("jpg",))
            barrier.wait(timeout=60)
            got.append(finish_folder(folder))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in (4, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert any(d is not None for d in got)
    rounds_done.append(folder)


def _check_record(folder) -> None:
    folder = as_location(folder)
    man = read_manifest(folder)
    entries = read_record(folder, man)
    assert entries is not None and list(entries) == man["shards"]
    for name, e in entries.items():
        st = read_stats(folder, int(name[:6]))
        assert (e["count"], e["bytes"], e["sha256"]) == (st["count"], st["bytes"], st["sha256"])


@pytest.mark.parametrize("where", ["local", "s3"])
def test_racing_finishers_do_not_lose_the_record(where, tmp_path, request):
    if where == "s3":
        bucket, _ = request.getfixturevalue("rec_s3")
        base = f"s3://{bucket}/race"
    else:
        base = str(tmp_path)
    done: list = []
    for r in range(4 if where == "local" else 2):
        folder = f"{base}/r{r}"
        _race(folder, done)
        _check_record(folder)
        if where == "local":
            assert not [p.name for p in Path(folder).iterdir() if ".tmp-" in p.name]  # no temp file left behind
    assert len(done) == (4 if where == "local" else 2)


def test_redoing_a_shard_drops_the_record_and_a_stale_one_is_not_used(tmp_path):
    from genaug.data.stream import open_columns
    from genaug.shards.verify import verify_set

    root = tmp_path / "set"
    write_source(root / "train", 4)
    _check_record(root / "train")
    assert open_columns(root, "train").counts == (1, 1, 1, 1)
    # a record that no longer describes its folder: verify says so, the stream ignores it (with a warning)
    doc = load_record(root / "train")
    doc["shards"][2]["sha256"] = "0" * 64
    (root / "train" / RECORD_NAME).write_text(json.dumps(doc))
    _, problems = verify_set(str(root))
    assert any(RECORD_NAME in p and "sha256 of 000002.tar" in p for p in problems), problems
    man = read_manifest(root / "train")
    write_manifest(root / "train", {**man, "note": "edited"})
    with pytest.warns(UserWarning, match="another manifest.json"):
        assert open_columns(root, "train").counts == (1, 1, 1, 1)
    _, problems = verify_set(str(root), write=True)
    assert problems == []
    _check_record(root / "train")
    # a shard about to be redone takes the record with it; the writer's finish writes it again
    cleanup_shard(root / "train", 3)
    assert not (root / "train" / RECORD_NAME).exists()
    (root / "train" / "000001.json").unlink()
    cleanup_shard(root / "train", 1)
    assert not (root / "train" / "000001.tar").exists() and finish_folder(root / "train") is None
    commit_shard(root / "train", 1, [{"__key__": make_key(1, 0), "jpg": JPG, "json": "{}"}], ("jpg",))
    assert finish_folder(root / "train") is not None
    _check_record(root / "train")


def test_ingest_finishes_its_split_with_the_record(tmp_path):
    from genaug.testing.shards import ingest_quiet, write_image_tree

    tree = write_image_tree(tmp_path / "tree", classes=2, per_class=3, size=(8, 8))
    ingest_quiet(tree, str(tmp_path / "set"), per_shard=2)
    _check_record(tmp_path / "set" / "train")
    assert load_record(tmp_path / "set" / "train")["total"] == 6
