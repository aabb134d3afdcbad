"""Read-ahead of remote shards (genaug.data.prefetch) against a real moto S3 server: bounded, same stream, same
failures; and the latency proxy the benchmark puts in front of the server."""

from __future__ import annotations

import os

import pytest

from genaug.data.prefetch import ShardPrefetcher
from genaug.data.stream import build_eval_loader, build_train_loader
from genaug.shards.storage import as_location, set_storage_options
from genaug.testing.shards import write_synthetic_split


@pytest.fixture
def remote_set(s3, tmp_path):
    """A split `train` of 6 shards x 4 images, on disk and copied to s3://<bucket>/set: (local root, url)."""
    local = tmp_path / "set"
    write_synthetic_split(local, "train", num_shards=6, per_shard=4, size=16, seed=5)
    as_location(f"s3://{s3}").fs.put(str(local / "train"), f"{s3}/set/train", recursive=True)
    return local, f"s3://{s3}/set"


def test_read_ahead_is_bounded_and_serves_the_same_bytes(remote_set):
    local, url = remote_set
    src = as_location(url) / "train"
    names = [f"{i:06d}.tar" for i in range(6)]
    pre = ShardPrefetcher([src], names, depth=2)
    try:
        for i, name in enumerate(names):
            pre.start(i)
            assert {n for _, n in pre.pending} == set(names[i : i + 3])  # this shard and the next two, no more
            data, stats = pre.fetch(src, name)
            assert data == (local / "train" / name).read_bytes() and stats["count"] == 4
        assert pre.fetch(src, names[0])[0] == (local / "train" / names[0]).read_bytes()  # not ahead: fetched now
    finally:
        pre.close()


def test_local_folders_start_no_threads(remote_set):
    local, _ = remote_set
    pre = ShardPrefetcher([local / "train"], ["000000.tar"], depth=4)
    pre.start(0)
    assert pre.pool is None and pre.pending == {} and pre.fetch(local / "train", "000000.tar")[0] is None


def _batches(shards, ahead):
    loader = build_train_loader(shards, batch_size=4, num_workers=0, seed=2, views_recipe=None, read_ahead=ahead)
    return [(b["key"], round(b["views"][0].double().sum().item(), 3)) for b in loader]


def test_stream_is_the_same_with_any_read_ahead(remote_set):
    local, url = remote_set
    ref = _batches(str(local), 1)
    assert _batches(url, 0) == ref and _batches(url, 3) == ref
    ev = [k for b in build_eval_loader(url, "train", batch_size=5, num_workers=0, views_recipe=None) for k in b["key"]]
    assert len(ev) == 24


def test_a_failed_fetch_ahead_is_handled_where_the_shard_is_read(remote_set, s3):
    """An object gone after the loader opened: with or without read-ahead the stream skips that shard alike."""
    _, url = remote_set
    loaders = {a: build_train_loader(url, batch_size=4, num_workers=0, seed=2, read_ahead=a) for a in (0, 2)}
    as_location(f"{url}/train/000002.tar").unlink()
    got = {}
    for ahead, loader in loaders.items():
        with pytest.warns(UserWarning, match="000002.tar"):
            got[ahead] = [b["key"] for b in loader]
    assert got[0] == got[2] and not any(k.startswith("s000002") for b in got[0] for k in b)


def test_stream_through_the_latency_proxy_equals_the_direct_one(remote_set, s3_server, monkeypatch):
    from genaug.testing.servers import start_latency_proxy, stop_server

    _, url = remote_set
    direct = _batches(url, 1)
    proc, far = start_latency_proxy(s3_server, delay_ms=5, mbps=20)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", far)
        set_storage_options(None)
        assert os.environ["AWS_ENDPOINT_URL"] == far and _batches(url, 1) == direct
    finally:
        stop_server(proc)
        set_storage_options(None)


def test_a_local_shard_gone_mid_run_is_skipped_not_fatal(remote_set):
    local, _ = remote_set
    loader = build_train_loader(str(local), batch_size=4, num_workers=0, seed=2)
    (local / "train" / "000004.tar").unlink()
    with pytest.warns(UserWarning, match="000004.tar is missing"):
        keys = [k for b in loader for k in b["key"]]
    assert len(keys) == 24 and not any(k.startswith("s000004") for k in keys)
