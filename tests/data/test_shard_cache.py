"""The machine's shard cache (genaug.shards.cache) against a real moto S3 server whose own request recorder counts
what it served: later epochs and runs fetch nothing, one download per object across processes, killed fills and
damaged entries never used, LRU under the limit, unusable cache dirs are one warning and no cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from stream_fixtures import write_gen_column  # noqa: E402

from genaug.core.errors import GenaugError  # noqa: E402
from genaug.data.prefetch import fetch_now  # noqa: E402
from genaug.data.stream import build_train_loader  # noqa: E402
from genaug.shards.cache import LAYOUT, ShardCache, open_cache, parse_size  # noqa: E402
from genaug.shards.storage import as_location  # noqa: E402
from genaug.testing.shards import write_synthetic_split  # noqa: E402

N_SHARDS = 4


@pytest.fixture(scope="module")
def recorded_s3(tmp_path_factory):
    """A moto server of this module whose request recorder counts what it serves: (endpoint, MotoRequestLog)."""
    pytest.importorskip("s3fs")
    from genaug.testing.request_log import start_recording_moto
    from genaug.testing.servers import ServerUnavailable, stop_server

    try:
        proc, url, log = start_recording_moto(tmp_path_factory.mktemp("moto"))
    except ServerUnavailable as e:
        pytest.skip(str(e))
    yield url, log
    stop_server(proc)


@pytest.fixture(scope="module")
def local_set(tmp_path_factory) -> Path:
    """A split `train` of 4 shards x 4 images and a generated column `g` (K = 2) on disk."""
    root = tmp_path_factory.mktemp("cacheset") / "set"
    write_synthetic_split(root, "train", num_shards=N_SHARDS, per_shard=4, size=16, seed=3)
    write_gen_column(root, "train", "g", k=2)
    return root


@pytest.fixture(scope="module")
def bucket_set(recorded_s3, local_set):
    """The set copied once to a bucket of the recording server (read only by the tests): (url, bucket)."""
    boto3 = pytest.importorskip("boto3")
    from genaug.shards.storage import set_storage_options
    from genaug.testing.servers import AWS_TEST_ENV

    endpoint, _ = recorded_s3
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ENDPOINT_URL": endpoint, **AWS_TEST_ENV}.items():
            mp.setenv(k, v)
        for k in ("GENAUG_STORAGE_OPTIONS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            mp.delenv(k, raising=False)
        set_storage_options(None)
        bucket = f"c{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        fs = as_location(f"s3://{bucket}").fs
        fs.put(str(local_set / "train"), f"{bucket}/set/train", recursive=True)
        fs.put(str(local_set / "gen"), f"{bucket}/set/gen", recursive=True)
    set_storage_options(None)
    return f"s3://{bucket}/set", bucket


@pytest.fixture
def remote(recorded_s3, local_set, bucket_set, monkeypatch, tmp_path):
    """The AWS variables pointing at the recording server: (local root, url, log, bucket, a fresh cache dir)."""
    from genaug.shards.storage import set_storage_options
    from genaug.testing.servers import AWS_TEST_ENV

    endpoint, log = recorded_s3
    for k, v in {"AWS_ENDPOINT_URL": endpoint, **AWS_TEST_ENV}.items():
        monkeypatch.setenv(k, v)
    for k in ("GENAUG_STORAGE_OPTIONS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "GENAUG_FAULT"):
        monkeypatch.delenv(k, raising=False)
    set_storage_options(None)
    return local_set, bucket_set[0], log, bucket_set[1], tmp_path / "cache"


def _objects(local: Path) -> dict[str, Path]:
    """Every shard and stats file of the set: {"train/000000.tar": path, ...} (source and the column)."""
    out = {}
    for folder in (local / "train", local / "gen" / "g" / "train"):
        for p in sorted(folder.glob("0*")):
            if not p.name.endswith(".idx.json"):  # member indexes: range reads only, never fetched through the cache
                out[str(p.relative_to(local))] = p
    return out


def _loader(url, cache=None, **kw):
    kw = {"gen_columns": ["g"], "p": 0.5, "batch_size": 4, "num_workers": 0, "seed": 1, **kw}
    return build_train_loader(url, cache_dir=cache, **kw)


def _epoch(loader) -> list:
    return [(b["key"], b["replaced"].tolist(), round(b["views"][0].double().sum().item(), 3)) for b in loader]


def _served(log, reqs, bucket: str) -> dict[str, int]:
    return {k[len(bucket) + 5 :]: n for k, n in log.get_bytes(reqs).items()}  # "set/train/..." -> "train/..."


def test_epoch_two_and_a_second_run_fetch_nothing_and_the_stream_is_unchanged(remote):
    local, url, log, bucket, cache = remote
    objs = _objects(local)
    tars = {k: p.stat().st_size for k, p in objs.items() if k.endswith(".tar")}
    ref = _epoch(_loader(url))  # no cache: what the stream must be
    loader = _loader(url, cache)
    log.start()
    first = _epoch(loader)
    served = _served(log, log.stop(), bucket)
    assert first == ref
    assert {k: n for k, n in served.items() if k.endswith(".tar")} == tars  # each tar once, whole
    assert loader.last_io["bytes_fetched"] == sum(served.values()) and loader.last_io["bytes_from_cache"] == 0
    log.start()
    second = _epoch(loader)
    assert log.stop() == []  # epoch 2: not one request (the stats were read when the split was opened)
    assert second == _epoch(_loader(url, epoch=1)) and second != first
    assert loader.last_io["bytes_fetched"] == 0 and loader.last_io["bytes_from_cache"] >= sum(tars.values())
    log.start()
    again = _loader(url, cache, p=0.9)  # a second run on this machine, another --p: opening it reads the manifests
    opened = log.get_bytes(log.stop())  # and stats, no tar
    assert opened and not any(k.endswith(".tar") for k in opened)
    log.start()
    assert len(_epoch(again)) == len(ref) and log.stop() == []
    assert again.last_io["bytes_fetched"] == 0 and again.last_io["bytes_from_cache"] >= sum(tars.values())


def test_local_sets_bypass_the_cache(local_set, tmp_path):
    loader = _loader(str(local_set), tmp_path / "cache")
    assert loader.stream.cache is None and _epoch(loader) == _epoch(_loader(str(local_set)))
    assert not (tmp_path / "cache").exists() and loader.last_io["bytes_from_cache"] == 0
    assert loader.last_io["bytes_fetched"] > 0  # local shards read whole count as fetched (from the local disk)


_FETCH_ALL = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from genaug.data.prefetch import fetch_now
    from genaug.shards.cache import open_cache
    from genaug.shards.storage import as_location
    url, cache, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    c = open_cache(cache)
    while not go.exists():
        time.sleep(0.01)
    for col in ("train", "gen/g/train"):
        for i in range(int(sys.argv[4])):
            data, stats = fetch_now(as_location(f"{url}/{col}"), f"{i:06d}.tar", c)
            print(col, i, __import__("hashlib").sha256(data).hexdigest() == stats["sha256"], flush=True)
    """
)


def _run_fetch_all(url, cache, go, env=None):
    return subprocess.Popen(
        [sys.executable, "-c", _FETCH_ALL, url, str(cache), str(go), str(N_SHARDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_two_processes_download_each_object_once(remote, tmp_path):
    local, url, log, bucket, cache = remote
    assert open_cache(cache) is not None
    go = tmp_path / "go"
    log.start()
    procs = [_run_fetch_all(url, cache, go) for _ in range(2)]
    go.touch()  # both start fetching the same objects at once
    outs = [p.communicate(timeout=240) for p in procs]
    reqs = log.stop()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.count(" True") == 2 * N_SHARDS, out
    gets: dict[str, int] = {}
    for r in reqs:
        if r.method == "GET" and r.key:
            gets[r.key] = gets.get(r.key, 0) + 1
    assert gets == {f"set/{k}": 1 for k in _objects(local)}  # every tar and stats object: one GET on the machine


def test_kill_9_during_a_fill_leaves_nothing_used_and_nothing_lost(remote, tmp_path):
    local, url, log, bucket, cache = remote
    go = tmp_path / "go"
    go.touch()
    p = _run_fetch_all(url, cache, go, {"GENAUG_FAULT": "cache-fill"})
    p.communicate(timeout=240)
    assert p.returncode == -9  # killed with its first entry half written
    c = ShardCache(cache, None, lock_timeout=20)
    left = [f for f in (cache / LAYOUT / "objects").rglob("*") if f.is_file()]
    assert left and all(".tmp-" in f.name for f in left)  # only the torn temp file: no entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no damaged entry seen, no lock left behind by the dead process
        for col in ("train", "gen/g/train"):
            for i in range(N_SHARDS):
                data, stats = fetch_now(as_location(f"{url}/{col}"), f"{i:06d}.tar", c)
                assert data == (local / col / f"{i:06d}.tar").read_bytes()
    total, entries = c.usage()  # the scan removes the dead writer's temp file
    assert not [f for f in (cache / LAYOUT / "objects").rglob("*.tmp-*")]
    assert len(entries) == 4 * N_SHARDS and total == sum(e[1] for e in entries)


def test_a_damaged_entry_is_refetched_with_a_warning(remote):
    local, url, log, bucket, cache = remote
    c = open_cache(cache)
    src = as_location(url) / "train"
    fetch_now(src, "000001.tar", c)
    want = (local / "train" / "000001.tar").read_bytes()
    (entry,) = [f for f in (cache / LAYOUT / "objects").rglob("*") if f.is_file() and f.stat().st_size == len(want)]
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    entry.write_bytes(bytes(raw))
    log.start()
    with pytest.warns(UserWarning, match=r"cached copy of s3://.*000001\.tar .* is damaged .* fetching it again"):
        data, _ = fetch_now(src, "000001.tar", c)
    assert data == want and _served(log, log.stop(), bucket) == {"train/000001.tar": len(want)}
    assert entry.read_bytes() == want  # replaced by a good copy
    stats_entries = [f for f in (cache / LAYOUT / "objects").rglob("*") if f.is_file() and f != entry]
    stats_entries[0].write_bytes(stats_entries[0].read_bytes()[:-3] + b"xx\n")  # a damaged ETag-keyed entry
    with pytest.warns(UserWarning, match=r"000001\.json .* is damaged"):
        assert fetch_now(src, "000001.tar", c)[1]["sha256"] == hashlib.sha256(want).hexdigest()


def test_lru_eviction_keeps_the_cache_under_its_limit(remote):
    local, url, log, bucket, cache = remote
    src = as_location(url) / "train"
    sizes = [(local / "train" / f"{i:06d}.tar").stat().st_size for i in range(N_SHARDS)]
    limit = int(3.5 * max(sizes))  # three shards and their stats fit, not four
    c = open_cache(cache, str(limit))
    assert c.limit == limit
    for i in (0, 1, 0, 2, 3):  # 0 is used again after 1: 1 is the least recently used when room is needed
        data, _ = fetch_now(src, f"{i:06d}.tar", c)
        assert data == (local / "train" / f"{i:06d}.tar").read_bytes()
        assert c.usage()[0] <= limit
    log.start()
    for i in (3, 2, 0):  # not evicted: served from the cache
        fetch_now(src, f"{i:06d}.tar", c)
    assert _served(log, log.stop(), bucket) == {}
    log.start()
    fetch_now(src, "000001.tar", c)  # evicted (with its stats): fetched again
    served = _served(log, log.stop(), bucket)
    assert served["train/000001.tar"] == sizes[1] and set(served) == {"train/000001.tar", "train/000001.json"}
    tiny = ShardCache(cache, 100)  # an object over the limit is served, never cached
    assert fetch_now(src, "000002.tar", tiny)[0] == (local / "train" / "000002.tar").read_bytes()


def _unwritable(tmp_path: Path) -> Path:
    """A cache dir this process cannot write: a read-only folder (root writes anywhere: a path under /sys)."""
    if os.geteuid() == 0:
        return Path("/sys/genaug-cache-test")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d / "cache"


def test_a_read_only_cache_dir_warns_once_and_trains_on(remote, tmp_path):
    local, url, log, bucket, _ = remote
    ro = _unwritable(tmp_path)
    ref = _epoch(_loader(url))
    with pytest.warns(UserWarning) as rec:
        loader = _loader(url, ro)
    msgs = [str(w.message) for w in rec if "shard cache" in str(w.message)]
    assert len(msgs) == 1 and str(ro) in msgs[0] and "not writable" in msgs[0] and "--cache-dir" in msgs[0]
    assert loader.stream.cache is None and _epoch(loader) == ref


def test_a_full_cache_dir_warns_and_serves_the_right_bytes(remote, tmp_path):
    """A disk that fills up mid-run (RLIMIT_FSIZE makes writes past 1 KiB fail as a full disk would)."""
    local, url, log, bucket, cache = remote
    code = textwrap.dedent(
        """
        import resource, signal, sys, warnings
        from pathlib import Path
        from genaug.data.prefetch import fetch_now
        from genaug.shards.cache import open_cache
        from genaug.shards.storage import as_location
        c = open_cache(Path(sys.argv[2]))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for i in range(2):
                data, stats = fetch_now(as_location(sys.argv[1] + "/train"), f"{i:06d}.tar", c)
                print(__import__("hashlib").sha256(data).hexdigest() == stats["sha256"])
        print("\\n".join(str(x.message) for x in w))
        """
    )
    out = subprocess.run([sys.executable, "-c", code, url, str(cache)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["True", "True"]
    warned = [m for m in lines[2:] if "shard cache" in m]
    assert len(warned) == 1 and "is full" in warned[0] and "--cache-limit" in warned[0], lines


def test_a_lock_held_too_long_is_a_warning_and_a_direct_fetch(remote):
    import fcntl

    local, url, log, bucket, cache = remote
    c = open_cache(cache)
    c = ShardCache(c.root, None, lock_timeout=0.3)
    src = as_location(url) / "train"
    c.fetch(src / "000000.json")  # the stats are cached; the tar's lock is held by another process (or user):
    sha = json.loads((local / "train" / "000000.json").read_text())["sha256"]
    fd = os.open(c.lock_file(c.key(str(src / "000000.tar"), f"sha256:{sha}")), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.warns(UserWarning, match=r"held for more than 0\.3 s .* --cache-dir of their own"):
            data, stats = fetch_now(as_location(url) / "train", "000000.tar", c)
        assert data == (local / "train" / "000000.tar").read_bytes() and stats["count"] == 4
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_cache_dir_of_another_user_is_one_warning(tmp_path):
    d = tmp_path / "theirs"
    (d / LAYOUT).mkdir(parents=True)
    os.chown(d / LAYOUT, 12345, 12345)
    with pytest.warns(UserWarning, match=r"belongs to another user \(uid 12345\).*--cache-dir of their own"):
        assert open_cache(d) is None


def test_sizes_and_bad_limits():
    assert parse_size("500G") == 500 << 30 and parse_size("20M") == 20 << 20 and parse_size("1.5k") == 1536
    assert parse_size("2GiB") == 2 << 30 and parse_size(4096) == 4096 and parse_size(None) is None
    for bad in ("lots", "-1G", "0", "5X"):
        with pytest.raises(GenaugError, match="--cache-limit must be a positive size such as 500G"):
            parse_size(bad)


def test_train_writes_bytes_per_epoch_and_resumes_with_another_cache_dir(remote, tmp_path):
    from genaug.train.runner import train

    local, url, log, bucket, cache = remote
    tiny = {"views.preset": "small", "backbone.width": 4, "method_args.proj_hidden": 32, "method_args.proj_out": 16}
    kw = dict(backbone="tiny", image_size=16, workers=0, batch_size=4, log_every=4, progress_bar=False)
    res = train("simclr", shards=url, gen="g", p=0.5, out=tmp_path / "run", steps=12, stop_after=8,
                cache_dir=cache, cache_limit="1G", overrides=tiny, **kw)  # fmt: skip
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]  # 4 steps per epoch: one row ends each epoch
    assert rows[0]["bytes_fetched"] > 0 and rows[0]["bytes_from_cache"] == 0
    assert rows[1]["bytes_fetched"] == 0 and rows[1]["bytes_from_cache"] >= rows[0]["bytes_fetched"] - 4096
    assert res["step"] == 8
    more = train("simclr", shards=url, gen="g", p=0.5, out=tmp_path / "run", steps=12, cache_dir=tmp_path / "c2",
                 overrides=tiny, **kw)  # fmt: skip
    assert more["step"] == 12  # the cache dir and its limit may change on resume
    with pytest.raises(GenaugError, match=r"--cache-limit \(data.cache_limit\) must be a positive size"):
        train("simclr", shards=url, out=tmp_path / "bad", steps=1, cache_dir=cache, cache_limit="big",
              overrides=tiny, **kw)  # fmt: skip


def test_eval_reads_through_the_cache_set_by_its_flag(remote, monkeypatch):
    from genaug.data.evaluation import iter_encoded
    from genaug.shards.cache import ENV_DIR, ENV_LIMIT, set_cache_env

    local, url, log, bucket, cache = remote
    monkeypatch.delenv(ENV_DIR, raising=False)
    monkeypatch.delenv(ENV_LIMIT, raising=False)
    want = [(k, y) for k, y, _ in iter_encoded(local / "train")]
    set_cache_env(cache, "1G")  # what `genaug eval ... --cache-dir DIR --cache-limit 1G` does
    try:
        assert [(k, y) for k, y, _ in iter_encoded(as_location(url) / "train")] == want
        log.start()
        assert [(k, y) for k, y, _ in iter_encoded(as_location(url) / "train")] == want
        assert _served(log, log.stop(), bucket) == {}  # the second pass: every shard from the cache
    finally:
        set_cache_env(None)


def test_a_bad_cache_limit_flag_is_one_line(capsys, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "shards"))
    from cli_errors import one_line_error

    from genaug.shards.cache import ENV_DIR

    for argv in (
        ["train", "--shards", str(tmp_path), "--cache-dir", str(tmp_path / "c"), "--cache-limit", "lots"],
        ["eval", "knn", str(tmp_path), "--shards", str(tmp_path), "--cache-limit", "-3G"],
        ["inspect", "--shards", str(tmp_path), "--cache-limit", "0"],
    ):
        err = one_line_error(argv, capsys)
        assert "--cache-limit" in err and "must be a positive size such as 500G" in err
    assert ENV_DIR not in os.environ


def test_two_versions_of_a_shard_and_two_sets_never_share_an_entry(remote):
    local, url, log, bucket, cache = remote
    c = open_cache(cache)
    fs = as_location(url).fs
    a, b = (local / "train" / f"{i:06d}.tar" for i in (0, 1))
    where = f"{bucket}/versions/train"
    for tar in (a, b):  # the shard is rewritten between two reads: new tar, new stats
        fs.pipe_file(f"{where}/000000.tar", tar.read_bytes())
        fs.pipe_file(f"{where}/000000.json", tar.with_suffix(".json").read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert fetch_now(as_location(f"s3://{where}"), "000000.tar", c)[0] == tar.read_bytes()
    fs.pipe_file(f"{bucket}/other/train/000000.tar", b.read_bytes())  # another set holding the same bytes
    fs.pipe_file(f"{bucket}/other/train/000000.json", b.with_suffix(".json").read_bytes())
    assert fetch_now(as_location(f"s3://{bucket}/other/train"), "000000.tar", c)[0] == b.read_bytes()
    assert len(c.usage()[1]) == 6  # 3 tars and 3 stats: one entry per URL and version
