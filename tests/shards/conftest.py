"""Fixtures of the shard tests: a real GCS emulator (fake-gcs-server, a subprocess on 127.0.0.1) and its buckets."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest


@pytest.fixture(scope="session")
def gcs_server():
    """A fake-gcs-server on a free 127.0.0.1 port for the whole session (a real subprocess); stopped at the end."""
    pytest.importorskip("gcsfs")
    from genaug.testing.servers import ServerUnavailable, start_fake_gcs, stop_server

    try:
        proc, url = start_fake_gcs()
    except ServerUnavailable as e:
        pytest.skip(str(e))
    yield url
    stop_server(proc)


def create_gcs_bucket(endpoint: str, name: str) -> None:
    """Create bucket `name` through the GCS JSON API of `endpoint` (as `gcloud storage buckets create` would)."""
    req = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    """STORAGE_EMULATOR_HOST pointing at the test server (the standard variable, no genaug flag), a fresh bucket."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    for k in ("GENAUG_STORAGE_OPTIONS", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(k, raising=False)
    bucket = f"b{uuid.uuid4().hex[:12]}"
    create_gcs_bucket(gcs_server, bucket)
    return bucket


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory):
    """A class-folder tree of 24 small random images in 2 classes (the source of the storage tests)."""
    from genaug.testing.shards import write_image_tree

    return write_image_tree(tmp_path_factory.mktemp("src") / "tree")


@pytest.fixture(params=["s3", "gs"])
def bucket_url(request) -> str:
    """A fresh, empty bucket on a real test server, as a URL prefix: s3://... (moto) or gs://... (fake-gcs-server)."""
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3')}"
    return f"gs://{request.getfixturevalue('gcs')}"
