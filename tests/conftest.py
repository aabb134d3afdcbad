"""Shared fixtures: keep torch to one thread so the suite behaves on 2 cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import uuid  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on a free 127.0.0.1 port for the whole session (a real subprocess); stopped at the end."""
    pytest.importorskip("s3fs")
    from genaug.testing.servers import ServerUnavailable, start_moto, stop_server

    try:
        proc, url = start_moto()
    except ServerUnavailable as e:
        pytest.skip(str(e))
    yield url
    stop_server(proc)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The standard AWS variables pointing at the test server, and a fresh bucket: its name."""
    boto3 = pytest.importorskip("boto3")
    from genaug.testing.servers import AWS_TEST_ENV

    for k, v in {"AWS_ENDPOINT_URL": s3_server, **AWS_TEST_ENV}.items():
        monkeypatch.setenv(k, v)
    for k in ("GENAUG_STORAGE_OPTIONS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    bucket = f"b{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket
