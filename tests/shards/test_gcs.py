"""Shard sets in Google Cloud Storage (gs://, gcsfs), against a real server: fake-gcs-server on 127.0.0.1."""

from __future__ import annotations

import os

import pytest
from cli_errors import one_line_error  # tests/shards/cli_errors.py

from genaug.testing.shards import ingest_quiet

pytest.importorskip("gcsfs")


def _store():
    """A gcsfs client of the test server of its own (not genaug's), to read and tamper with objects."""
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem(token="anon", endpoint_url=os.environ["STORAGE_EMULATOR_HOST"], skip_instance_cache=True)


def test_ingest_to_gcs_verify_and_flipped_byte(gcs, image_tree, tmp_path, capsys):
    from genaug.cli import main
    from genaug.shards.verify import verify_set

    url = f"gs://{gcs}/sets/demo"
    s = ingest_quiet(image_tree, url)
    assert s["shards_written"] == 4 and s["images_written"] == 24
    reports, problems = verify_set(url)
    assert problems == [] and reports[0].samples == 24
    local = tmp_path / "local"
    ingest_quiet(image_tree, str(local))
    store = _store()
    for p in (local / "train").glob("*.tar"):  # the same tar bytes, whichever the storage
        assert store.cat_file(f"{gcs}/sets/demo/train/{p.name}") == p.read_bytes()
    assert ingest_quiet(image_tree, url)["shards_skipped"] == 4  # a rerun resumes: everything is done

    key = f"{gcs}/sets/demo/train/000001.tar"
    data = bytearray(store.cat_file(key))
    data[700] ^= 0x01
    store.pipe_file(key, bytes(data))
    capsys.readouterr()
    assert main(["verify", "--shards", url]) == 1
    assert f"{url}/train/000001.tar: sha256 differs" in capsys.readouterr().out


def test_missing_bucket_is_one_line(gcs, image_tree, capsys):
    url = f"gs://{gcs}-missing/set"
    err = one_line_error(["ingest", str(image_tree), "--shards", url, "--workers", "0", "--quiet"], capsys)
    assert url in err and "does not exist" in err
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "does not exist" in err


def test_missing_set_in_existing_bucket_is_one_line(gcs, capsys):
    url = f"gs://{gcs}/nothing-here"
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "genaug ingest" in err


def test_storage_option_overrides_environment(gcs, image_tree, monkeypatch, capsys):
    """--storage-option endpoint_url=... wins over a wrong STORAGE_EMULATOR_HOST."""
    from genaug.cli import main

    good = os.environ["STORAGE_EMULATOR_HOST"]
    url = f"gs://{gcs}/opt"
    assert main(["ingest", str(image_tree), "--shards", url, "--workers", "0", "--quiet"]) == 0
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens there
    try:
        assert main(["verify", "--shards", url, "--storage-option", f"endpoint_url={good}"]) == 0
    finally:
        os.environ.pop("GENAUG_STORAGE_OPTIONS", None)


def test_unreadable_credentials_are_one_line(gcs, tmp_path, monkeypatch, capsys):
    """GOOGLE_APPLICATION_CREDENTIALS naming a file that does not load: one line naming the URL and the variable."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    url = f"gs://{gcs}/set"
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "GOOGLE_APPLICATION_CREDENTIALS" in err


def test_denied_access_is_one_line():
    """A 403 of the JSON API (gcsfs raises OSError 'Forbidden') and a 401 (HttpError) name the URL and the fix."""
    from gcsfs.retry import HttpError

    from genaug.shards.storage import store_error

    url = "gs://locked/set"
    for e in (OSError("Forbidden: b/locked/o\nanonymous caller does not have access"), HttpError({"code": 401})):
        msg = str(store_error(url, e))
        assert msg.startswith(f"{url}: access denied") and "GOOGLE_APPLICATION_CREDENTIALS" in msg and "\n" not in msg
