"""Shard sets in an S3-compatible object store, against a real server (moto_server on 127.0.0.1, a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_errors import one_line_error  # tests/shards/cli_errors.py

from genaug.testing.shards import ingest_quiet

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
VOLATILE_STATS = ("committed_at", "seconds", "images_per_s")


def _client():
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    c = _client()
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) :]] = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def _comparable(objs: dict[str, bytes]) -> dict:
    """Objects of a split with the volatile stats fields (timestamps, timings) and the manifest's source removed."""
    out = {}
    for name, data in objs.items():
        if name.endswith(".json"):
            doc = json.loads(data)
            for k in (*VOLATILE_STATS, "source"):
                doc.pop(k, None)
            out[name] = doc
        else:
            out[name] = data
    return out


def test_ingest_to_s3_verify_and_local_bytes_equal(s3, image_tree, tmp_path):
    from genaug.shards.verify import verify_set

    url = f"s3://{s3}/sets/demo"
    s = ingest_quiet(image_tree, url)
    assert s["shards_written"] == 4 and s["images_written"] == 24
    reports, problems = verify_set(url)
    assert problems == [] and reports[0].samples == 24
    local = tmp_path / "local"
    ingest_quiet(image_tree, str(local))
    remote = _objects(s3, "sets/demo/train/")
    assert sorted(k for k in remote if k.endswith(".tar")) == sorted(p.name for p in (local / "train").glob("*.tar"))
    for p in (local / "train").glob("*.tar"):  # the same tar bytes, whichever the storage
        assert remote[p.name] == p.read_bytes()
    again = ingest_quiet(image_tree, url)  # a rerun resumes: everything is done
    assert again["shards_written"] == 0 and again["shards_skipped"] == 4


def test_cli_verify_and_flipped_byte(s3, image_tree, capsys):
    from genaug.cli import main

    url = f"s3://{s3}/flip"
    assert main(["ingest", str(image_tree), "--shards", url, "--per-shard", "8", "--workers", "0", "--quiet"]) == 0
    assert main(["verify", "--shards", url]) == 0
    c = _client()
    key = "flip/train/000001.tar"
    data = bytearray(c.get_object(Bucket=s3, Key=key)["Body"].read())
    data[700] ^= 0x01
    c.put_object(Bucket=s3, Key=key, Body=bytes(data))
    capsys.readouterr()
    assert main(["verify", "--shards", url]) == 1
    out = capsys.readouterr().out
    assert f"{url}/train/000001.tar: sha256 differs" in out


def test_stream_refuses_damaged_object(s3, image_tree):
    from genaug.core.errors import GenaugError
    from genaug.data.stream import Columns, open_columns, zip_shard

    url = f"s3://{s3}/dmg"
    ingest_quiet(image_tree, url)
    c = _client()
    key = "dmg/train/000000.tar"
    data = bytearray(c.get_object(Bucket=s3, Key=key)["Body"].read())
    data[900] ^= 0xFF
    c.put_object(Bucket=s3, Key=key, Body=bytes(data))
    cols: Columns = open_columns(url, "train")
    with pytest.raises(GenaugError, match="does not match its recorded checksum"):
        list(zip_shard(cols, "000000.tar"))
    assert len(list(zip_shard(cols, "000001.tar"))) == 6


@pytest.mark.parametrize("point", ["tar-tmp-written:2", "tar-renamed:2"])
def test_kill9_during_upload_then_rerun_equals_uninterrupted(s3, image_tree, point):
    from genaug.shards.reader import complete_shards
    from genaug.shards.verify import verify_set

    crashed, clean = f"s3://{s3}/crashed", f"s3://{s3}/clean"
    code = (
        "from genaug.ingest.run import ingest; "
        f"ingest({str(image_tree)!r}, {crashed!r}, per_shard=6, workers=0, progress=False)"
    )
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GENAUG_FAULT": point}, timeout=300)
    assert r.returncode == -signal.SIGKILL
    objs = _objects(s3, "crashed/train/")
    if point.startswith("tar-renamed"):
        assert "000002.tar" in objs and "000002.json" not in objs  # the orphan: uploaded, never completed
    assert [p.name for p in complete_shards(f"{crashed}/train")] == ["000000.tar", "000001.tar"]
    assert verify_set(crashed)[1]  # incomplete, and verify says so
    s = ingest_quiet(image_tree, crashed)
    assert s["shards_skipped"] == 2 and s["shards_written"] == 2
    ingest_quiet(image_tree, clean)
    assert verify_set(crashed)[1] == []
    assert _comparable(_objects(s3, "crashed/train/")) == _comparable(_objects(s3, "clean/train/"))


def test_kill9_at_a_random_moment_then_rerun(s3, image_tree):
    """A real SIGKILL from outside while shards are being uploaded: the rerun's set equals an uninterrupted one."""
    from genaug.shards.verify import verify_set

    crashed, clean = f"s3://{s3}/rk", f"s3://{s3}/rk-clean"
    code = (
        "from genaug.ingest.run import ingest; "
        f"ingest({str(image_tree)!r}, {crashed!r}, per_shard=2, workers=0, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    c = _client()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        keys = [o["Key"] for o in c.list_objects_v2(Bucket=s3, Prefix="rk/train/").get("Contents", [])]
        if sum(k.endswith(".json") and "manifest" not in k for k in keys) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ingest_quiet(image_tree, crashed, per_shard=2)
    ingest_quiet(image_tree, clean, per_shard=2)
    assert verify_set(crashed)[1] == []
    assert _comparable(_objects(s3, "rk/train/")) == _comparable(_objects(s3, "rk-clean/train/"))


def test_missing_bucket_is_one_line(s3, image_tree, capsys):
    url = f"s3://{s3}-missing/set"
    err = one_line_error(["ingest", str(image_tree), "--shards", url, "--workers", "0", "--quiet"], capsys)
    assert url in err and "does not exist" in err
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "does not exist" in err


def test_missing_set_in_existing_bucket_is_one_line(s3, capsys):
    url = f"s3://{s3}/nothing-here"
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "genaug ingest" in err


def test_bad_credentials_is_one_line(image_tree, monkeypatch, capsys):
    """A server that checks signatures (moto with auth on) refuses unknown keys: one line naming the URL."""
    from genaug.testing.servers import start_moto, stop_server

    proc, endpoint = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.delenv("GENAUG_STORAGE_OPTIONS", raising=False)
        url = "s3://locked/set"
        err = one_line_error(["ingest", str(image_tree), "--shards", url, "--workers", "0", "--quiet"], capsys)
        assert url in err and "access denied" in err and "AWS_ACCESS_KEY_ID" in err
        err = one_line_error(["verify", "--shards", url], capsys)
        assert url in err and "access denied" in err
    finally:
        stop_server(proc)


def test_storage_option_overrides_environment(s3, image_tree, monkeypatch, capsys):
    """--storage-option endpoint_url=... wins over a wrong AWS_ENDPOINT_URL."""
    from genaug.cli import main

    good = os.environ["AWS_ENDPOINT_URL"]
    url = f"s3://{s3}/opt"
    assert main(["ingest", str(image_tree), "--shards", url, "--workers", "0", "--quiet"]) == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    try:
        assert main(["verify", "--shards", url, "--storage-option", f"endpoint_url={good}"]) == 0
    finally:
        os.environ.pop("GENAUG_STORAGE_OPTIONS", None)


def test_https_is_read_only():
    from genaug.core.errors import GenaugError
    from genaug.shards.storage import as_location

    with pytest.raises(GenaugError, match="read-only"):
        as_location("https://example.invalid/set/train/000000.tar").write_bytes(b"x")


def test_generate_tiny_to_s3_with_lease_dir(s3, image_tree, tmp_path):
    """generate reads its source from s3:// and commits its column there; leases live in --lease-dir."""
    from genaug.data.stream import build_train_loader
    from genaug.generate.dispatch import generate
    from genaug.shards.verify import verify_set

    url = f"s3://{s3}/gen-set"
    ingest_quiet(image_tree, url, per_shard=12)
    leases = tmp_path / "leases"
    out = generate(model="tiny", shards=url, column="tiny", k=2, batch_size=4, progress=False, lease_dir=leases)
    assert len(out["shards"]) == 2 and out["images"] == 48  # 24 sources x k=2
    assert any(leases.rglob(".leases")) and not [k for k in _objects(s3, "gen-set/") if ".leases" in k]
    assert verify_set(url)[1] == []
    again = generate(model="tiny", shards=url, column="tiny", k=2, batch_size=4, progress=False, lease_dir=leases)
    assert again["shards"] == []  # resumed: nothing left
    loader = build_train_loader(url, gen_columns=["tiny"], p=1.0, batch_size=4, num_workers=0, seed=0)
    batch = next(iter(loader))
    assert bool(batch["replaced"].all())


def test_eval_features_from_s3(s3, image_tree):
    import torch

    from genaug.evaluate.features import extract_features, split_folder

    url = f"s3://{s3}/feat"
    ingest_quiet(image_tree, url, split="val", per_shard=12)
    enc = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    fs = extract_features(enc, split_folder(url, "val"), device="cpu", batch_size=5)
    assert len(fs.keys) == 24 and sorted(set(fs.labels.tolist())) == [0, 1]


def test_s3_connections_default_to_a_wide_pool_and_a_storage_option_overrides_it(monkeypatch):
    """A range read sends ~50 requests at once: the s3 filesystem opens up to S3_CONNECTIONS connections, not
    botocore's 10; --storage-option config_kwargs.max_pool_connections=N replaces the number, keeping other keys."""
    from genaug.shards.storage import S3_CONNECTIONS, set_storage_options, storage_options

    monkeypatch.delenv("GENAUG_STORAGE_OPTIONS", raising=False)
    assert storage_options("s3")["config_kwargs"] == {"max_pool_connections": S3_CONNECTIONS}
    set_storage_options(["config_kwargs.max_pool_connections=8", "config_kwargs.connect_timeout=5"])
    try:
        assert storage_options("s3")["config_kwargs"] == {"max_pool_connections": 8, "connect_timeout": 5}
    finally:
        set_storage_options(None)
