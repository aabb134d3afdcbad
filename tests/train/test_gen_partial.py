"""`train --gen-partial`: training on a column still being generated, its progress record, coverage, exact resume.

The column here is committed shard by shard by the test itself between training sessions (the real commit and
progress-record code `generate`'s writer runs), so every epoch's shard set is known in advance;
test_gen_partial_live.py runs a real `genaug generate` and `genaug train` side by side.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gen_partial_helpers import (  # noqa: E402
    COUNTS,
    SPE,
    Recorder,
    column_folder,
    commit_column_shard,
    image_folder,
    ingest_source,
    losses,
    partial_state,
    set_record,
    start_column,
    train_flags,
)

from genaug.cli import main as cli_main  # noqa: E402
from genaug.data.stream import build_train_loader  # noqa: E402
from genaug.shards.layout import parse_key, shard_name  # noqa: E402
from genaug.shards.progress import PROGRESS_NAME, note_committed, read_progress  # noqa: E402
from genaug.shards.writer import read_stats  # noqa: E402
from genaug.train.runner import train  # noqa: E402

NAMES = [shard_name(i) for i in range(len(COUNTS))]


def _kw(shards: str, **extra) -> dict:
    return train_flags("flat", 4, shards=shards, **extra)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("partial-images"))


def _fresh(images: Path, shards: str) -> str:
    ingest_source(images, shards)
    start_column(shards)
    return shards


def _resumed_and_reference(shards: str, runs: Path) -> None:
    """Run A: stops mid-epoch 1 while a shard commits, resumes; run B: the same shard sets, stopped only at epoch
    boundaries. Both must train on the same batches, with coverage 6/20, 12/20, 18/20, 1 by epoch."""
    a, b = runs / "a", runs / "b"
    commit_column_shard(shards, 0)
    train(out=a, stop_after=SPE, **_kw(shards))  # epoch 0: shard 0 only
    commit_column_shard(shards, 1)
    train(out=a, stop_after=2, **_kw(shards))  # epoch 1 starts with shards 0, 1
    commit_column_shard(shards, 2)  # committed mid-epoch: it must not join epoch 1, even after a resume
    train(out=a, stop_after=SPE - 2 + SPE, **_kw(shards))  # the rest of epoch 1, then epoch 2 with shard 2
    commit_column_shard(shards, 3)  # the column is complete (its completion record is written)
    assert train(out=a, **_kw(shards))["step"] == 4 * SPE
    st = partial_state(a)
    assert st["sets"] == {0: NAMES[:1], 1: NAMES[:2], 2: NAMES[:3], 3: NAMES}
    assert st["coverage"] == {0: 6 / 20, 1: 12 / 20, 2: 18 / 20, 3: 1.0}  # by samples: shard 3 holds only 2
    # the reference: the same sets, each epoch run whole (the column's shards all on disk: the record decides)
    for committed in [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]:
        set_record(shards, committed)
        train(out=b, stop_after=SPE, **_kw(shards))
    got, want = losses(a), losses(b)
    assert len(got) == 4 * SPE and got == want  # same batches: bitwise equal losses, same coverage on every row
    assert [(r[3], r[4]) for r in got[::SPE]] == [(0, 0.3), (1, 0.6), (2, 0.9), (3, 1.0)]


def test_epochs_use_the_shards_committed_when_they_start_and_resume_exactly(images, tmp_path):
    shards = _fresh(images, str(tmp_path / "set"))
    _resumed_and_reference(shards, tmp_path)


def test_same_against_an_object_store(images, tmp_path, s3):
    shards = _fresh(images, f"s3://{s3}/set")
    _resumed_and_reference(shards, tmp_path)


def test_samples_of_uncommitted_shards_take_their_source_images_only(images, tmp_path):
    shards = _fresh(images, str(tmp_path / "set"))
    commit_column_shard(shards, 1)
    loader = build_train_loader(
        shards, gen_columns=["flat"], p=1.0, batch_size=4, num_workers=0, gen_partial=True, views_recipe={"size": 16}
    )
    seen = {}
    for batch in loader:
        for key, rep in zip(batch["key"], batch["replaced"].tolist(), strict=True):
            seen[parse_key(key)[0]] = seen.get(parse_key(key)[0], set()) | set(rep)
    assert seen[1] == {True}  # p = 1: every view of a committed shard's sample is a variant
    assert all(seen[i] == {False} for i in seen if i != 1) and len(seen) > 1  # the others: their source images
    assert loader.coverage_of(0) == 6 / 20


def test_the_progress_record_not_a_listing_decides(images, tmp_path):
    shards = _fresh(images, str(tmp_path / "set"))
    commit_column_shard(shards, 0)
    commit_column_shard(shards, 2)
    set_record(shards, [0])  # shard 2 is committed on disk, but the record (one GET) does not list it yet
    loader = build_train_loader(shards, gen_columns=["flat"], p=0.5, batch_size=4, num_workers=0, gen_partial=True)
    next(iter(loader))
    assert loader._sets[0] == (frozenset(NAMES[:1]),) and loader.coverage_of(0) == 6 / 20


def test_a_damaged_record_falls_back_to_the_shards_stats(images, tmp_path):
    shards = _fresh(images, str(tmp_path / "set"))
    commit_column_shard(shards, 0)
    commit_column_shard(shards, 2)
    folder = column_folder(shards)
    man = {"recipe_hash": "flat"}
    counts = dict(zip(NAMES, COUNTS, strict=True))
    for damage in (
        b'{"format": "genaug-progress/1", "recipe_hash": "fl',
        b'{"format": "genaug-progress/1", '
        b'"recipe_hash": "flat", "shards": {"000003.tar": {"count": 5, "bytes": 1, "sha256": "x"}}}',
    ):
        (folder / PROGRESS_NAME).write_bytes(damage)
        with pytest.warns(UserWarning, match="ignoring .*progress.json"):
            assert read_progress(folder, man, counts) is None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loader = build_train_loader(
                shards, gen_columns=["flat"], p=0.5, batch_size=4, num_workers=0, gen_partial=True
            )
            next(iter(loader))
        assert any("checking the column's shards one by one" in str(w.message) for w in caught)
        # the stats decide: shards 0 and 2, never shard 3 the damaged record names with a wrong count
        assert loader._sets[0] == (frozenset([NAMES[0], NAMES[2]]),)


def test_an_incomplete_column_without_the_flag_is_refused_naming_it(images, tmp_path, capsys):
    shards = _fresh(images, str(tmp_path / "set"))
    commit_column_shard(shards, 0)
    argv = ["train", "--shards", shards, "--gen", "flat", "--p", "0.5", "--steps", "1", "--out", str(tmp_path / "r")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gen-partial" in err[0] and "finish the column" in err[0]
    assert "--column flat --split train --status`" in err[0]  # a status command that runs


def test_concurrent_writers_lose_no_entry(tmp_path):
    folder = tmp_path / "col"
    folder.mkdir()
    _race(folder)
    got = read_progress(folder, {"recipe_hash": "rh"}, {f"{i:06d}.tar": 1 for i in range(N)})
    assert sorted(got) == [f"{i:06d}.tar" for i in range(N)]


def test_concurrent_writers_lose_no_entry_in_an_object_store(s3):
    from genaug.shards.storage import as_location

    folder = as_location(f"s3://{s3}/col")
    _race_processes(str(folder), 60, 3)  # processes: each merges what its own process noted, threads would mask
    got = read_progress(folder, {"recipe_hash": "rh"}, {f"{i:06d}.tar": 1 for i in range(60)})
    assert sorted(got) == [f"{i:06d}.tar" for i in range(60)]


N, WRITERS = 16, 4  # entries noted in a race, by this many writers at once (interleaved)


WRITER = """
import sys
from genaug.shards.progress import note_committed
folder, first, n, step = sys.argv[1], *map(int, sys.argv[2:])
stats = {"count": 1, "bytes": 10, "sha256": "ab"}
assert all([note_committed(folder, f"{i:06d}.tar", stats, "rh") for i in range(first, n, step)])
"""


def _race_processes(folder: str, n: int, writers: int) -> None:
    """`writers` processes note n / writers shards each into one record at the same time."""
    args = [str(n), str(writers)]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, folder, str(w), *args], stderr=subprocess.PIPE)
        for w in range(writers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()


def _race(folder) -> None:
    """WRITERS threads note N / WRITERS shards each into one record at the same time (each its own lock handle or
    conditional PUT, as separate processes would)."""
    from concurrent.futures import ThreadPoolExecutor

    def write(w: int) -> list[bool]:
        stats = {"count": 1, "bytes": 10, "sha256": "ab"}
        return [note_committed(folder, f"{i:06d}.tar", stats, "rh") for i in range(w, N, WRITERS)]

    with ThreadPoolExecutor(WRITERS) as pool:
        assert all(all(ok) for ok in pool.map(write, range(WRITERS)))


def test_note_keeps_the_stats_of_the_commit(images, tmp_path):
    shards = _fresh(images, str(tmp_path / "set"))
    doc = commit_column_shard(shards, 3)
    got = read_progress(column_folder(shards), {"recipe_hash": "flat"}, dict(zip(NAMES, COUNTS, strict=True)))
    assert got == {NAMES[3]: {"count": 2, "bytes": doc["bytes"], "sha256": doc["sha256"]}}
    assert read_stats(column_folder(shards), 3)["sha256"] == doc["sha256"]
    note_committed(column_folder(shards), NAMES[0], read_stats(column_folder(shards), 3), "other-recipe")
    got = read_progress(column_folder(shards), {"recipe_hash": "other-recipe"}, {NAMES[0]: 2})
    assert got is not None and list(got) == [NAMES[0]]  # a record of another recipe hash starts afresh


def test_progress_bar_shows_the_epochs_coverage(images, tmp_path, capsys):
    shards = _fresh(images, str(tmp_path / "set"))
    commit_column_shard(shards, 0)
    train(out=tmp_path / "run", **{**_kw(shards), "steps": 2, "progress_bar": True})
    assert "cover=30%" in capsys.readouterr().err


def test_elastic_resume_keeps_the_interrupted_epochs_set(images, tmp_path):
    shards = _fresh(images, str(tmp_path / "set"))
    commit_column_shard(shards, 0)
    kw = dict(gen_columns=["flat"], p=1.0, batch_size=2, num_workers=0, gen_partial=True, views_recipe={"size": 16})
    one = build_train_loader(shards, rank=0, world_size=1, **kw)
    it = iter(one)
    next(it), next(it)
    state = one.state_dict()
    commit_column_shard(shards, 1)  # committed after the checkpoint: not part of the interrupted epoch
    for rank in (0, 1):  # the rest of the epoch dealt over 2 ranks
        two = build_train_loader(shards, rank=rank, world_size=2, **kw)
        two.load_state_dict([state])
        for batch in two:
            for key, rep in zip(batch["key"], batch["replaced"].all(dim=1).tolist(), strict=True):
                assert rep == (parse_key(key)[0] == 0)  # p = 1: variants exactly for shard 0's samples
        assert two.coverage_of(0) == 6 / 20
        next(iter(two))
        assert two.epoch == 1 and two.coverage_of(1) == 12 / 20  # the next epoch looks again


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A moto S3 server of this module recording every request it answers, with a bucket."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    from genaug.testing.servers import AWS_TEST_ENV, ServerUnavailable, start_moto, stop_server

    log = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    try:
        proc, url = start_moto({"MOTO_RECORDER_FILEPATH": str(log)})
    except ServerUnavailable as e:
        pytest.skip(str(e))
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_keys(AWS_TEST_ENV)).create_bucket(Bucket="rec")
    yield url, Recorder(url, log)
    stop_server(proc)


def _keys(env: dict) -> dict:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}


def test_an_epochs_look_costs_the_same_requests_whatever_the_column_size(recording, monkeypatch):
    from genaug.data.partial import committed_shards
    from genaug.shards.layout import make_key
    from genaug.shards.manifest import write_manifest
    from genaug.shards.storage import as_location
    from genaug.shards.writer import commit_shard
    from genaug.testing.servers import AWS_TEST_ENV

    url, rec = recording
    for k, v in {"AWS_ENDPOINT_URL": url, **AWS_TEST_ENV}.items():
        monkeypatch.setenv(k, v)
    costs = {}
    for n in (2, 8):
        col = as_location(f"s3://rec/n{n}/gen/a/train")
        names = [shard_name(i) for i in range(n)]
        write_manifest(col, {"kind": "generated", "recipe_hash": "a", "k": 1, "shards": names})
        for i in range(0, n, 2):  # half the shards committed, each noted as generate's writer does
            doc = commit_shard(col, i, [{"__key__": make_key(i, 0), "json": "{}", "gen_0.jpg": b"x"}], ("json",))
            note_committed(col, doc["shard"], doc, "a")
        with_record, got = rec.count(lambda col=col, names=names, n=n: committed_shards(col, names, [1] * n))
        assert got == frozenset(names[::2])
        (col / PROGRESS_NAME).unlink()
        with pytest.warns(UserWarning, match="no progress record"):
            without, got = rec.count(lambda col=col, names=names, n=n: committed_shards(col, names, [1] * n))
        assert got == frozenset(names[::2])  # the per-shard fallback finds the same shards
        costs[n] = (with_record, without)
    assert costs[2][0] == costs[8][0] <= 6  # manifest, completion record, progress record: O(1)
    assert costs[8][1] >= costs[2][1] + 6  # shard by shard: grows with the column
